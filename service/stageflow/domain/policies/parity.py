"""Parity: how far a stage's rendered objects differ from the stage it is meant to mirror.

Both renders are normalised first, so that what is meant to differ does not count: the
namespace, names with a stage suffix, the content hash of generated ConfigMaps, the flag
documents (each stage's flags are its own, by lifecycle), the tags of the images the promotion
moves and the paths listed under ``ignore``. Every other difference is reported; the rules below
decide which fail the gate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stageflow.domain.policies.builtin import image_pin
from stageflow.domain.policies.model import Manifest, ParitySpec, generated_name

_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
_MISSING = object()
_ENV_NAME = re.compile(r"\.env\[[^\]]*\]\.name$")


@dataclass(frozen=True)
class Side:
    """One stage's render as parity compares it."""

    stage: str
    namespace: str
    objects: Sequence[Manifest]


@dataclass(frozen=True)
class Difference:
    """One difference: ``kind/name: path: mirror value → reference value``."""

    object: str
    path: str
    mirror: str
    reference: str
    rule: str | None = None  # the rule it breaks; None: reported only

    @property
    def fails(self) -> bool:
        return self.rule is not None

    def describe(self) -> str:
        return f"{self.object}: {self.path}: {self.mirror} → {self.reference}"

    def to_json(self) -> dict[str, Any]:
        return {"difference": self.describe(), "rule": self.rule, "fails": self.fails}


def quantity(value: object) -> float | None:
    """Read a Kubernetes quantity (``50m``, ``64Mi``, ``2``) as a number, or None."""
    match = _QUANTITY.match(str(value))
    if match is None or match.group(2) not in _SUFFIXES:
        return None
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def compare(
    spec: ParitySpec, mirror: Side, reference: Side, moved_images: Collection[str] = ()
) -> list[Difference]:
    """List every difference of ``mirror`` (``with:``) from ``reference`` (the parity stage)."""
    ours = _index(mirror, spec, moved_images)
    theirs = _index(reference, spec, moved_images)
    found: list[Difference] = []
    for key in sorted(set(ours) | set(theirs)):
        name = "/".join(key)
        if key not in ours or key not in theirs:
            found.append(
                Difference(
                    name,
                    "(object)",
                    _presence(mirror, key in ours),
                    _presence(reference, key in theirs),
                    "missing",
                )
            )
            continue
        found += _differences(spec, name, ours[key], theirs[key])
    return found


def _presence(side: Side, present: bool) -> str:
    return "present" if present else f"missing in {side.stage}"


def _index(side: Side, spec: ParitySpec, moved: Collection[str]) -> dict[tuple[str, str], Any]:
    generated = {
        str((obj.get("metadata") or {}).get("name")): generated_name(
            str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))
        )
        for obj in side.objects
    }
    generated = {full: short for full, short in generated.items() if full != short}
    words = {side.namespace: "<namespace>", side.stage: "<stage>", **generated}
    index = {}
    for obj in side.objects:
        normal = _normalise(obj, words, side.stage, moved)
        for path in spec.ignore:
            _drop(normal, path.split("."))
        metadata = normal.get("metadata") or {}
        index[(str(normal.get("kind")), str(metadata.get("name")))] = normal
    return index


def _normalise(value: Any, words: Mapping[str, str], stage: str, moved: Collection[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key == "namespace" or (isinstance(key, str) and key.endswith("flags.json")):
                continue
            out[key] = _normalise(item, words, stage, moved)
        return out
    if isinstance(value, list):
        return [_normalise(item, words, stage, moved) for item in value]
    if isinstance(value, str):
        return _normal_string(value, words, stage, moved)
    return value


def _normal_string(value: str, words: Mapping[str, str], stage: str, moved: Collection[str]) -> str:
    if value in words:
        return words[value]
    name = value.partition("@")[0]
    tag, _ = image_pin(value)
    if tag is not None:
        name = name[: -len(tag) - 1] if name.endswith(f":{tag}") else name
    if name in moved:
        return name
    return value.removesuffix(f"-{stage}")


def _drop(value: Any, path: list[str]) -> None:
    if not isinstance(value, dict) or not path:
        return
    if len(path) == 1:
        value.pop(path[0], None)
        return
    _drop(value.get(path[0]), path[1:])


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(i, Mapping) and "name" in i for i in value)
    ):
        for item in value:
            yield from _leaves(item, f"{path}[{item['name']}]")
    else:
        yield path, value


def _differences(spec: ParitySpec, name: str, mirror: Any, reference: Any) -> list[Difference]:
    ours, theirs = dict(_leaves(mirror)), dict(_leaves(reference))
    found = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path, _MISSING), theirs.get(path, _MISSING)
        if a == b:
            continue
        found.append(Difference(name, path, _show(a), _show(b), _rule(spec, path, a, b)))
    return found


def _show(value: object) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value, sort_keys=True)


def _rule(spec: ParitySpec, path: str, mirror: object, reference: object) -> str | None:
    if path.endswith("spec.replicas") or path == "spec.replicas":
        return _replicas(spec, mirror, reference)
    if ".resources.requests." in f".{path}":
        return _requests(spec, mirror, reference)
    if _ENV_NAME.search(path) and _MISSING in (mirror, reference):
        return "env"
    return None


def _replicas(spec: ParitySpec, mirror: object, reference: object) -> str | None:
    ours = 1 if mirror is _MISSING else mirror
    theirs = 1 if reference is _MISSING else reference
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
        return "replicas"
    return "replicas" if ours < spec.min_replica_ratio * theirs else None


def _requests(spec: ParitySpec, mirror: object, reference: object) -> str | None:
    ours, theirs = quantity(mirror), quantity(reference)
    if ours is None or theirs is None:
        return "requests"
    if theirs == 0:
        return None if ours == 0 else "requests"
    return "requests" if abs(ours - theirs) / theirs > spec.resource_tolerance else None
