"""The built-in policies, each a pure function from a stage's rendered objects to violations.

``kubernetes-schema`` is not here: it needs the OpenAPI schemas, which an adapter loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.domain.policies.model import Manifest, PolicySpec, Violation, object_id

# Kinds that live outside any namespace (core and common add-ons). An object of another kind
# without a namespace would land in the namespace of whoever applies it.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ClusterIssuer",
        "VolumeSnapshotClass",
    }
)
# Where each kind that runs pods keeps its pod template's spec.
_POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_NAMESPACE_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class StageFacts:
    """What the built-ins know of the stage they check: its namespace and the others'."""

    stage: str
    namespace: str
    others: Mapping[str, str]  # other stage's namespace -> that stage's name


def dig(value: object, path: Sequence[str | int]) -> object:
    """Return the value at ``path`` inside nested mappings and lists, or None."""
    for part in path:
        if isinstance(part, int) and isinstance(value, list) and -len(value) <= part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


def dig_list(value: object, path: Sequence[str | int]) -> list[Any]:
    """Return the list at ``path`` (an empty one when there is none)."""
    found = dig(value, path)
    return found if isinstance(found, list) else []


def pod_spec(obj: Manifest) -> Mapping[str, Any] | None:
    """Return the pod spec of an object that runs pods, or None."""
    path = _POD_SPEC_PATHS.get(str(obj.get("kind")))
    found = dig(obj, path) if path else None
    return found if isinstance(found, Mapping) else None


def containers(obj: Manifest) -> Iterator[Mapping[str, Any]]:
    """Yield every container (init, app and ephemeral) of an object that runs pods."""
    spec = pod_spec(obj)
    for key in _CONTAINER_LISTS:
        for container in (spec or {}).get(key) or []:
            if isinstance(container, Mapping):
                yield container


def _namespace_of(obj: Manifest) -> str | None:
    namespace = dig(obj, ("metadata", "namespace"))
    return namespace if isinstance(namespace, str) and namespace else None


Finding = tuple[str, str]  # (object as kind/namespace/name, what is wrong)


def namespace_isolation(
    spec: PolicySpec, objects: Sequence[Manifest], facts: StageFacts
) -> list[Finding]:
    """Every namespaced object renders into the stage's namespace; cluster-wide ones are listed."""
    listed = set(spec.options.get("cluster_wide") or ())
    found: list[Finding] = []
    for obj in objects:
        kind, name = str(obj.get("kind")), str(dig(obj, ("metadata", "name")))
        if kind in CLUSTER_SCOPED:
            own = kind == "Namespace" and name == facts.namespace
            if not own and not {kind, f"{kind}/{name}"} & listed:
                found.append((object_id(obj), _cluster_wide(facts, kind, name)))
            continue
        namespace = _namespace_of(obj)
        if namespace != facts.namespace:
            found.append((object_id(obj), _misplaced(facts, namespace)))
    return found


def _cluster_wide(facts: StageFacts, kind: str, name: str) -> str:
    return (
        f"is cluster-wide, outside stage {facts.stage}'s namespace {facts.namespace}; list it "
        f"under cluster_wide: [{kind}/{name}] if the stage is meant to own it"
    )


def _misplaced(facts: StageFacts, namespace: str | None) -> str:
    if namespace is None:
        why = "has no namespace (it would land wherever it is applied)"
    elif namespace in facts.others:
        why = f"renders into {namespace}, the namespace of stage {facts.others[namespace]}"
    else:
        why = f"renders into namespace {namespace}, not {facts.namespace}"
    return f"{why}; set namespace: {facts.namespace} in the overlay"


def network_isolation(
    spec: PolicySpec, objects: Sequence[Manifest], facts: StageFacts
) -> list[Finding]:
    """The namespace denies ingress by default, and no rule admits another stage's namespace."""
    policies = [obj for obj in objects if obj.get("kind") == "NetworkPolicy"]
    found: list[Finding] = []
    if not any(_default_deny(obj, facts.namespace) for obj in policies):
        found.append(
            (
                f"Namespace/{facts.namespace}",
                "has no NetworkPolicy that selects every pod (podSelector: {}) with Ingress in "
                "policyTypes; add a default-deny ingress policy to the stage",
            )
        )
    for obj in policies:
        for index, rule in enumerate(dig_list(obj, ("spec", "ingress"))):
            why = _admits_other(rule, facts)
            if why:
                found.append((object_id(obj), f"ingress[{index}] {why}"))
    return found


def _default_deny(obj: Manifest, namespace: str) -> bool:
    selects_all = dig(obj, ("spec", "podSelector")) in ({}, None) and isinstance(
        dig(obj, ("spec",)), Mapping
    )
    types = dig(obj, ("spec", "policyTypes"))
    # Without policyTypes a NetworkPolicy restricts ingress (Kubernetes' default).
    ingress = types is None or (isinstance(types, list) and "Ingress" in types)
    return _namespace_of(obj) == namespace and selects_all and ingress


def _admits_other(rule: object, facts: StageFacts) -> str | None:
    sources = dig(rule, ("from",))
    if not sources:
        return "admits traffic from everywhere (no from:); name the pods it admits"
    for peer in sources if isinstance(sources, list) else []:
        selector = dig(peer, ("namespaceSelector",))
        if selector is None:
            continue
        if not selector:
            return "admits every namespace (namespaceSelector: {}), other stages' too"
        for namespace in _selected_namespaces(selector):
            if namespace in facts.others:
                return f"admits namespace {namespace} of stage {facts.others[namespace]}"
    return None


def _selected_namespaces(selector: object) -> set[str]:
    names: set[str] = set()
    label = dig(selector, ("matchLabels", _NAMESPACE_LABEL))
    if isinstance(label, str):
        names.add(label)
    for expression in dig_list(selector, ("matchExpressions",)):
        if dig(expression, ("key",)) == _NAMESPACE_LABEL and dig(expression, ("operator",)) == "In":
            names.update(str(value) for value in dig_list(expression, ("values",)))
    return names


def image_pin(image: str) -> tuple[str | None, str | None]:
    """Split an image reference into its tag and digest (either may be None)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else None
    return tag or None, digest or None


def pinned_images(
    spec: PolicySpec, objects: Sequence[Manifest], facts: StageFacts
) -> list[Finding]:
    """No ``latest`` or untagged images; with ``digest: required``, every image by digest."""
    need_digest = spec.options.get("digest") == "required"
    found: list[Finding] = []
    for obj in objects:
        for container in containers(obj):
            image = str(container.get("image") or "")
            tag, digest = image_pin(image)
            where = f"container {container.get('name')} image {image or '(none)'}"
            if not tag and not digest:
                found.append(
                    (object_id(obj), f"{where} has no tag (it means latest); pin a version")
                )
            elif tag == "latest" and not digest:
                found.append((object_id(obj), f"{where} uses latest; pin a version"))
            elif need_digest and not digest:
                found.append(
                    (
                        object_id(obj),
                        f"{where} has no digest; stage {facts.stage} requires @sha256:...",
                    )
                )
    return found


_REQUIRED_RESOURCES = (("requests", "cpu"), ("requests", "memory"), ("limits", "memory"))


def resources(spec: PolicySpec, objects: Sequence[Manifest], facts: StageFacts) -> list[Finding]:
    """Every container has CPU and memory requests and a memory limit."""
    found: list[Finding] = []
    for obj in objects:
        for container in containers(obj):
            missing = [
                f"{group}.{name}"
                for group, name in _REQUIRED_RESOURCES
                if dig(container, ("resources", group, name)) in (None, "")
            ]
            if missing:
                found.append(
                    (
                        object_id(obj),
                        f"container {container.get('name')} has no resources."
                        f"{', resources.'.join(missing)}; set them",
                    )
                )
    return found


Check = Callable[[PolicySpec, Sequence[Manifest], StageFacts], list[Finding]]
CHECKS: Mapping[str, Check] = {
    "namespace-isolation": namespace_isolation,
    "network-isolation": network_isolation,
    "pinned-images": pinned_images,
    "resources": resources,
}


def check_builtin(
    spec: PolicySpec, objects: Sequence[Manifest], facts: StageFacts
) -> list[Violation]:
    """Run one built-in policy over a stage's rendered objects."""
    check = CHECKS[spec.builtin or ""]
    return [
        Violation(spec.name, obj, message, spec.action, facts.stage)
        for obj, message in check(spec, objects, facts)
    ]
