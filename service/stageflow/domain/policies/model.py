"""Manifest policies as values: what ``stageflow.yaml`` switches on, and what a check finds.

Everything here is plain data. The checks (``builtin``, ``admission``, ``parity``) read rendered
Kubernetes objects as the dicts ``kustomize build`` output parses into, so they can be tested
without a cluster, a renderer or a CEL library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stageflow.domain.errors import Invalid

ENFORCE, WARN = "enforce", "warn"
ACTIONS = (ENFORCE, WARN)
BUILTINS = (
    "namespace-isolation",
    "network-isolation",
    "pinned-images",
    "resources",
    "kubernetes-schema",
)
# The Kubernetes version schemas are checked against when a policy names none: the newest minor
# release with a year of upstream support at the time of writing; kubernetes-validate ships it.
DEFAULT_KUBERNETES_VERSION = "1.33"

Manifest = Mapping[str, Any]

# kustomize appends a content hash (10 characters) to generated ConfigMap and Secret names, so
# one flag change renames the object; comparisons see through it.
_GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{10}$")
_GENERATED_KINDS = frozenset({"ConfigMap", "Secret"})


class PolicyViolation(Invalid):
    """A write or promotion that breaks an ``enforce`` policy; ``details['violations']``."""

    code = "policy_violation"


class PolicyError(Invalid):
    """A policy that cannot be used (a ValidatingAdmissionPolicy that does not compile)."""

    code = "invalid_policy"


@dataclass(frozen=True)
class PolicySpec:
    """One entry of the top-level ``policies:`` list."""

    action: str
    builtin: str | None = None
    folder: str | None = None  # validatingAdmissionPolicies: a folder in the GitOps repo
    stages: frozenset[str] | None = None  # None: every stage
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def name(self) -> str:
        """Name the policy in violations: the built-in's name or the folder's."""
        return self.builtin or f"validatingAdmissionPolicies:{self.folder}"

    def applies_to(self, stage: str) -> bool:
        """Say whether this entry checks ``stage``."""
        return self.stages is None or stage in self.stages


@dataclass(frozen=True)
class ParitySpec:
    """``parity:`` of a stage: how far it may differ from the stage named in ``with``."""

    with_stage: str
    action: str = ENFORCE
    min_replica_ratio: float = 1.0
    # Resource requests may differ by this fraction of the other stage's before it counts.
    resource_tolerance: float = 0.5
    # Dotted paths (``spec.template.metadata.annotations``) left out of the comparison.
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySettings:
    """The policies of a pipeline: the ``policies:`` list and each stage's ``parity:``."""

    policies: tuple[PolicySpec, ...] = ()
    parity: Mapping[str, ParitySpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parity", MappingProxyType(dict(self.parity)))

    def for_stage(self, stage: str) -> tuple[PolicySpec, ...]:
        """Return the policies that check ``stage``, in the order written."""
        return tuple(policy for policy in self.policies if policy.applies_to(stage))

    @property
    def folders(self) -> tuple[str, ...]:
        """Return the ValidatingAdmissionPolicy folders the policies name."""
        return tuple(p.folder for p in self.policies if p.folder is not None)


@dataclass(frozen=True, order=True)
class Violation:
    """What one policy found wrong with one rendered object."""

    policy: str
    object: str  # kind/namespace/name (kind/name for cluster-wide objects)
    message: str
    action: str = ENFORCE
    stage: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "object": self.object,
            "message": self.message,
            "action": self.action,
            "stage": self.stage,
        }

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What two renders share when they break a rule the same way (hashes seen through)."""
        kind, _, rest = self.object.partition("/")
        if kind in _GENERATED_KINDS:
            rest = _GENERATED_SUFFIX.sub("", rest)
        return (self.stage, self.policy, f"{kind}/{rest}", self.message)


def object_id(obj: Manifest) -> str:
    """Name a rendered object the way violations do: ``kind/namespace/name``."""
    metadata = obj.get("metadata") or {}
    kind = str(obj.get("kind", "?"))
    name = str(metadata.get("name", "?")) if isinstance(metadata, Mapping) else "?"
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def generated_name(kind: str, name: str) -> str:
    """Drop the content hash kustomize gives generated ConfigMaps and Secrets."""
    return _GENERATED_SUFFIX.sub("", name) if kind in _GENERATED_KINDS else name
