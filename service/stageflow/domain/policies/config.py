"""Read ``policies:`` (top level) and each stage's ``parity:`` from ``stageflow.yaml``.

The pipeline parser hands over the loaded document and its ``fail``: errors name the key path,
the line and the fix exactly as every other ``stageflow.yaml`` error does.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from stageflow.domain.policies.model import (
    ACTIONS,
    BUILTINS,
    DEFAULT_KUBERNETES_VERSION,
    ENFORCE,
    ParitySpec,
    PolicySettings,
    PolicySpec,
)

KeyPath = tuple[str | int, ...]
# fail(path, problem, fix): raises the pipeline's error for the key at ``path``
Fail = Callable[[KeyPath, str, str], NoReturn]

_VERSION = re.compile(r"^v?1\.\d{1,2}(\.\d+)?$")
_BUILTIN_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "namespace-isolation": ("cluster_wide",),
    "network-isolation": (),
    "pinned-images": ("digest",),
    "resources": (),
    "kubernetes-schema": ("version", "strict"),
}
_COMMON_KEYS = ("action", "stages")
_PARITY_KEYS = ("with", "action", "min_replica_ratio", "resource_tolerance", "ignore")
_EXAMPLE = "- {builtin: namespace-isolation, action: enforce}"


class _Keys:
    """Small typed reads of one mapping, failing with the pipeline's messages."""

    def __init__(self, fail: Fail) -> None:
        self.fail = fail

    def mapping(self, value: object, path: KeyPath, example: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping", f"write it like {example}")
        return value

    def strings(self, value: object, path: KeyPath, example: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(path, "must be a list of names", f"write it like {example}")
        return list(value)

    def choice(self, value: object, path: KeyPath, choices: Sequence[str]) -> str:
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(
                path, f"{json.dumps(value)} is not known", f"{hint}use {' or '.join(choices)}"
            )
        return str(value)

    def fraction(self, value: object, path: KeyPath, example: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.fail(path, f"{json.dumps(value)} is not a number of 0 or more", example)
        return float(value)

    def only(self, value: Mapping[str, Any], path: KeyPath, allowed: Sequence[str]) -> None:
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(
                    (*path, key),
                    f"unknown key {json.dumps(key)}",
                    f"{hint}known keys here: {', '.join(allowed)}",
                )

    def stage(self, value: object, path: KeyPath, stages: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in stages:
            close = difflib.get_close_matches(str(value), stages, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(
                path, f"there is no stage {json.dumps(value)}", f"{hint}known: {', '.join(stages)}"
            )
        return value


def parse_policy_settings(
    top: Mapping[str, Any], stage_names: Sequence[str], fail: Fail
) -> PolicySettings:
    """Return the policies of a loaded ``stageflow.yaml`` whose stages parsed already."""
    keys = _Keys(fail)
    policies: tuple[PolicySpec, ...] = ()
    if top.get("policies") is not None:
        entries = top["policies"]
        if not isinstance(entries, list):
            fail(("policies",), "must be a list", f"write it like {_EXAMPLE}")
        policies = tuple(
            _parse_policy(keys, entry, ("policies", index), stage_names)
            for index, entry in enumerate(entries)
        )
    parity: dict[str, ParitySpec] = {}
    for index, stage in enumerate(top.get("stages") or []):
        if isinstance(stage, Mapping) and stage.get("parity") is not None:
            path: KeyPath = ("stages", index, "parity")
            parity[str(stage["name"])] = _parse_parity(keys, stage, path, stage_names)
    return PolicySettings(policies=policies, parity=parity)


def _parse_policy(
    keys: _Keys, value: object, path: KeyPath, stage_names: Sequence[str]
) -> PolicySpec:
    entry = keys.mapping(value, path, _EXAMPLE[2:])
    if "builtin" in entry and "validatingAdmissionPolicies" in entry:
        keys.fail(path, "names both a builtin and a folder", "write one of them per entry")
    if "validatingAdmissionPolicies" in entry:
        keys.only(entry, path, ("validatingAdmissionPolicies", *_COMMON_KEYS))
        folder = _folder(
            keys, entry["validatingAdmissionPolicies"], (*path, "validatingAdmissionPolicies")
        )
        return PolicySpec(folder=folder, **_common(keys, entry, path, stage_names))
    if "builtin" not in entry:
        keys.fail(path, "names no policy", "add builtin: (one of the built-ins) or a folder")
    builtin = keys.choice(entry["builtin"], (*path, "builtin"), BUILTINS)
    keys.only(entry, path, ("builtin", *_COMMON_KEYS, *_BUILTIN_OPTIONS[builtin]))
    options = {name: entry[name] for name in _BUILTIN_OPTIONS[builtin] if name in entry}
    options = _check_options(keys, builtin, options, path)
    return PolicySpec(builtin=builtin, options=options, **_common(keys, entry, path, stage_names))


def _common(
    keys: _Keys, entry: Mapping[str, Any], path: KeyPath, stage_names: Sequence[str]
) -> dict[str, Any]:
    action = ENFORCE
    if entry.get("action") is not None:
        action = keys.choice(entry["action"], (*path, "action"), ACTIONS)
    stages = None
    if entry.get("stages") is not None:
        listed = keys.strings(entry["stages"], (*path, "stages"), "[staging, production]")
        for index, name in enumerate(listed):
            keys.stage(name, (*path, "stages", index), stage_names)
        stages = frozenset(listed)
    return {"action": action, "stages": stages}


def _folder(keys: _Keys, value: object, path: KeyPath) -> str:
    fix = "write a folder relative to the repository root, like policies/"
    if not isinstance(value, str) or not value.strip("/"):
        keys.fail(path, "must name a folder", fix)
    folder = value.strip("/")
    if value.startswith("/") or ".." in folder.split("/") or "\\" in folder:
        keys.fail(path, f"{json.dumps(value)} is not a folder inside the repository", fix)
    return folder


def _check_options(
    keys: _Keys, builtin: str, options: dict[str, Any], path: KeyPath
) -> dict[str, Any]:
    if "digest" in options:
        keys.choice(options["digest"], (*path, "digest"), ("required", "optional"))
    if "cluster_wide" in options:
        keys.strings(options["cluster_wide"], (*path, "cluster_wide"), "[ClusterRole/demo-reader]")
    if "strict" in options and not isinstance(options["strict"], bool):
        keys.fail((*path, "strict"), "must be true or false", "write strict: true")
    if builtin == "kubernetes-schema":
        version = str(options.get("version", DEFAULT_KUBERNETES_VERSION))
        if not _VERSION.match(version):
            keys.fail(
                (*path, "version"),
                f"{json.dumps(version)} is not a Kubernetes version",
                'write it like "1.33" (quoted, or YAML reads 1.30 as 1.3)',
            )
        options["version"] = version.removeprefix("v")
    return options


def _parse_parity(
    keys: _Keys, stage: Mapping[str, Any], path: KeyPath, stage_names: Sequence[str]
) -> ParitySpec:
    entry = keys.mapping(stage["parity"], path, "{with: staging, min_replica_ratio: 0.5}")
    keys.only(entry, path, _PARITY_KEYS)
    if "with" not in entry:
        keys.fail((*path, "with"), "is missing", "name the stage to compare with: with: staging")
    other = keys.stage(entry["with"], (*path, "with"), stage_names)
    if other == stage.get("name"):
        keys.fail((*path, "with"), "names the stage itself", "name another stage")
    action = ENFORCE
    if entry.get("action") is not None:
        action = keys.choice(entry["action"], (*path, "action"), ACTIONS)
    values: dict[str, Any] = {"with_stage": other, "action": action}
    for key in ("min_replica_ratio", "resource_tolerance"):
        if entry.get(key) is not None:
            values[key] = keys.fraction(entry[key], (*path, key), f"write it like {key}: 0.5")
    if entry.get("ignore") is not None:
        values["ignore"] = tuple(
            keys.strings(entry["ignore"], (*path, "ignore"), "[spec.replicas]")
        )
    return ParitySpec(**values)
