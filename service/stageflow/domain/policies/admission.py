"""ValidatingAdmissionPolicy objects, evaluated against rendered objects before they are committed.

The CEL itself is compiled and run by a library the adapters hand in (``Compile``): the domain
reads the policy (match rules, variables, validations), decides which objects it matches, and
turns failed validations into violations, as the API server would for ``CREATE`` of each object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stageflow.domain.policies.model import Manifest, PolicyError, PolicySpec, Violation, object_id

KIND = "ValidatingAdmissionPolicy"
_GROUP = "admissionregistration.k8s.io"
# A written object reaches the API server as a create or an update.
_WRITES = {"*", "CREATE", "UPDATE"}
_PLURAL_ES = re.compile(r"(s|x|z|ch|sh)$")
_PLURAL_IES = re.compile(r"[^aeiou]y$")


class Program(Protocol):
    """One compiled CEL expression; raises on an evaluation error."""

    def __call__(self, activation: Mapping[str, Any]) -> Any: ...


# compile(expression): the program, or ValueError naming what does not parse
Compile = Callable[[str], Program]


def resource_of(kind: str) -> str:
    """Return the resource (plural, lowercase) the API server serves a kind as."""
    lower = kind.lower()
    if lower.endswith("endpoints") or lower.endswith("policies"):
        return lower
    if _PLURAL_IES.search(lower):
        return lower[:-1] + "ies"
    if _PLURAL_ES.search(lower):
        return lower + "es"
    return lower + "s"


@dataclass(frozen=True)
class ResourceRule:
    """One ``matchConstraints.resourceRules`` entry."""

    groups: frozenset[str]
    versions: frozenset[str]
    resources: frozenset[str]
    operations: frozenset[str]
    names: frozenset[str] = frozenset()

    def matches(self, obj: Manifest) -> bool:
        """Say whether writing ``obj`` falls under this rule."""
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        name = str((obj.get("metadata") or {}).get("name", ""))
        return (
            _any(self.groups, group)
            and _any(self.versions, version)
            and _any(self.resources, resource_of(str(obj.get("kind", ""))))
            and bool(self.operations & _WRITES)
            and (not self.names or name in self.names)
        )


def _any(allowed: frozenset[str], value: str) -> bool:
    return "*" in allowed or value in allowed


@dataclass(frozen=True)
class Validation:
    expression: str
    check: Program
    message: str | None
    message_expression: Program | None


@dataclass(frozen=True)
class AdmissionPolicy:
    """A compiled ValidatingAdmissionPolicy from the repo's policy folder."""

    name: str
    file: str
    rules: tuple[ResourceRule, ...]
    excluded: tuple[ResourceRule, ...]
    labels: Mapping[str, str]  # objectSelector.matchLabels
    variables: tuple[tuple[str, Program], ...]
    validations: tuple[Validation, ...]

    def matches(self, obj: Manifest) -> bool:
        """Say whether the policy applies to writing ``obj``."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return (
            any(rule.matches(obj) for rule in self.rules)
            and not any(rule.matches(obj) for rule in self.excluded)
            and all(labels.get(key) == value for key, value in self.labels.items())
        )

    @property
    def resources(self) -> frozenset[str]:
        """Return the resources the policy may match (``*`` for any)."""
        return frozenset().union(*(rule.resources for rule in self.rules))

    def check(self, obj: Manifest) -> list[str]:
        """Return the messages of the validations ``obj`` fails."""
        activation: dict[str, Any] = {
            "object": obj,
            "oldObject": None,
            "request": _request(obj),
            "variables": {},
        }
        try:
            for name, program in self.variables:
                activation["variables"] = {**activation["variables"], name: program(activation)}
        except Exception as exc:  # the CEL library raises its own errors (KeyError, ...)
            return [f"variable {name} could not be evaluated: {_error(exc)}"]
        return [m for v in self.validations if (m := _failed(v, activation)) is not None]


def _request(obj: Manifest) -> dict[str, Any]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    metadata = obj.get("metadata") or {}
    return {
        "operation": "CREATE",
        "kind": {"group": group, "version": version, "kind": obj.get("kind")},
        "resource": {
            "group": group,
            "version": version,
            "resource": resource_of(str(obj.get("kind"))),
        },
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
    }


def _error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0]!s}"
    return str(exc) or type(exc).__name__


def _failed(validation: Validation, activation: Mapping[str, Any]) -> str | None:
    try:
        passed = validation.check(activation)
    except Exception as exc:  # failurePolicy Fail: an error rejects, as in the cluster
        return f"{validation.expression!r} could not be evaluated: {_error(exc)}"
    if passed is True:
        return None
    if validation.message_expression is not None:
        try:
            return str(validation.message_expression(activation))
        except Exception:  # the API server falls back to message, then to the expression
            pass
    return validation.message or f"failed expression: {validation.expression}"


def check_admission(
    spec: PolicySpec, policies: Sequence[AdmissionPolicy], objects: Sequence[Manifest], stage: str
) -> list[Violation]:
    """Run the folder's policies over a stage's rendered objects."""
    found = []
    for policy in policies:
        for obj in objects:
            if policy.matches(obj):
                found += [
                    Violation(
                        f"{spec.name}/{policy.name}", object_id(obj), message, spec.action, stage
                    )
                    for message in policy.check(obj)
                ]
    return found


# -- reading the policy documents ----------------------------------------------------------


def is_admission_policy(document: object) -> bool:
    """Say whether a YAML document of the folder is a ValidatingAdmissionPolicy."""
    return (
        isinstance(document, Mapping)
        and document.get("kind") == KIND
        and str(document.get("apiVersion", "")).startswith(f"{_GROUP}/")
    )


def read_policy(document: Manifest, file: str, compile_cel: Compile) -> AdmissionPolicy:
    """Compile one ValidatingAdmissionPolicy document; PolicyError says what is wrong."""
    name = str((document.get("metadata") or {}).get("name") or "(unnamed)")
    where = f"{file}: ValidatingAdmissionPolicy {name}"
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise _invalid(where, "has no spec", file, name)
    if spec.get("paramKind"):
        raise _invalid(
            where,
            "uses paramKind, which Stageflow does not support (there is no cluster to read "
            "params from); write the values into the expressions",
            file,
            name,
        )
    constraints = spec.get("matchConstraints") or {}
    rules = tuple(_rules(constraints.get("resourceRules"), where, file, name))
    if not rules:
        raise _invalid(where, "has no matchConstraints.resourceRules", file, name)
    return AdmissionPolicy(
        name=name,
        file=file,
        rules=rules,
        excluded=tuple(_rules(constraints.get("excludeResourceRules"), where, file, name)),
        labels=dict((constraints.get("objectSelector") or {}).get("matchLabels") or {}),
        variables=tuple(
            (
                str(v.get("name")),
                _compile(
                    v.get("expression"),
                    compile_cel,
                    f"{where} variable {v.get('name')}",
                    file,
                    name,
                ),
            )
            for v in spec.get("variables") or []
        ),
        validations=tuple(_validations(spec.get("validations"), compile_cel, where, file, name)),
    )


def _rules(value: object, where: str, file: str, name: str) -> list[ResourceRule]:
    rules = []
    for rule in value if isinstance(value, list) else []:
        if not isinstance(rule, Mapping):
            raise _invalid(where, "has a resource rule that is not a mapping", file, name)
        rules.append(
            ResourceRule(
                groups=frozenset(rule.get("apiGroups") or ["*"]),
                versions=frozenset(rule.get("apiVersions") or ["*"]),
                resources=frozenset(rule.get("resources") or []),
                operations=frozenset(rule.get("operations") or ["*"]),
                names=frozenset(rule.get("resourceNames") or []),
            )
        )
    return rules


def _validations(
    value: object, compile_cel: Compile, where: str, file: str, name: str
) -> list[Validation]:
    if not isinstance(value, list) or not value:
        raise _invalid(where, "has no validations", file, name)
    found = []
    for index, entry in enumerate(value):
        item = entry if isinstance(entry, Mapping) else {}
        at = f"{where} validations[{index}]"
        expression = item.get("expression")
        message_expression = item.get("messageExpression")
        found.append(
            Validation(
                expression=str(expression),
                check=_compile(expression, compile_cel, at, file, name),
                message=str(item["message"]) if item.get("message") else None,
                message_expression=None
                if message_expression is None
                else _compile(
                    message_expression, compile_cel, f"{at}.messageExpression", file, name
                ),
            )
        )
    return found


def _compile(expression: object, compile_cel: Compile, where: str, file: str, name: str) -> Program:
    if not isinstance(expression, str) or not expression.strip():
        raise _invalid(where, "has no expression", file, name)
    try:
        return compile_cel(expression)
    except ValueError as exc:
        raise _invalid(where, f"does not compile: {exc}", file, name) from None


def _invalid(where: str, problem: str, file: str, name: str) -> PolicyError:
    return PolicyError(
        f"{where} {problem}; fix the policy in the GitOps repo",
        details={"file": file, "policy": name},
    )
