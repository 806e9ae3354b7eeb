"""``parse_pipeline``: the strict validation that turns a loaded ``stageflow.yaml`` into a Pipeline.

It takes the YAML as plain Python containers (the adapter loads the file) and either returns a
``Pipeline`` or raises the first ``PipelineError`` it meets (see ``reader`` for the wording).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stageflow.domain.flags.model import LIFECYCLES
from stageflow.domain.hooks import parse_controller_hooks
from stageflow.domain.notify import NotifyTarget, parse_targets
from stageflow.domain.pipeline.cron import parse_cron
from stageflow.domain.pipeline.model import (
    App,
    FreezeWindow,
    Gates,
    MetricGate,
    Pipeline,
    Stage,
)
from stageflow.domain.pipeline.reader import KeyPath, LineOf, Reader, optional, quoted
from stageflow.domain.policies import parse_policy_settings

API_VERSION = "stageflow/v1"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CHECK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_METRIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_pipeline(
    data: object,
    *,
    line_of: LineOf = lambda path: None,
    source: str = "stageflow.yaml",
) -> Pipeline:
    """Validate the loaded ``stageflow.yaml`` and return it as a Pipeline."""
    reader = Reader(source, line_of)
    if data is None:
        reader.fail(
            (),
            "the file is empty",
            f"start it with apiVersion: {API_VERSION}, then list apps: and stages:",
        )
    top = reader.mapping(data, (), f"apiVersion: {API_VERSION} with apps: and stages: under it")
    reader.keys(top, (), ("apiVersion", "apps", "stages", "notify", "policies"))
    if "apiVersion" not in top:
        reader.fail(("apiVersion",), "is missing", f"add apiVersion: {API_VERSION} at the top")
    if top["apiVersion"] != API_VERSION:
        reader.fail(
            ("apiVersion",),
            f"{quoted(top['apiVersion'])} is not a supported apiVersion",
            f"write apiVersion: {API_VERSION}",
        )
    for key in ("apps", "stages"):
        if top.get(key) is None:
            reader.fail(
                (key,),
                "is missing" if key not in top else "is empty",
                f"add {key}: with at least one entry (see the starter stageflow.yaml)",
            )
    stages = _parse_stages(reader, top["stages"])
    apps = _parse_apps(reader, top["apps"], tuple(stage.name for stage in stages))
    notify = parse_targets(reader, top["notify"], ("notify",)) if top.get("notify") else ()
    policies = parse_policy_settings(top, [stage.name for stage in stages], reader.fail)
    return Pipeline(
        apps=apps,
        stages=stages,
        notify=notify + _stage_targets(reader, top),
        policies=policies,
    )


def _stage_targets(reader: Reader, top: Mapping[str, object]) -> tuple[NotifyTarget, ...]:
    """Each stage's own `notify:` targets (the stages are valid by now)."""
    found: tuple[NotifyTarget, ...] = ()
    for position, item in enumerate(reader.sequence(top["stages"], ("stages",), "")):
        stage = reader.mapping(item, ("stages", position), "")
        if stage.get("notify") is not None:
            path = ("stages", position, "notify")
            found += parse_targets(reader, stage["notify"], path, stage=str(stage["name"]))
    return found


def _parse_stages(reader: Reader, value: object) -> tuple[Stage, ...]:
    path: KeyPath = ("stages",)
    items = reader.sequence(value, path, "- name: development")
    if not items:
        reader.fail(path, "lists no stages", "add at least one stage, like - name: development")
    seen: dict[str, KeyPath] = {}
    stages = []
    for position, item in enumerate(items):
        stage = _parse_stage(reader, item, (*path, position))
        reader.unique(stage.name, seen, (*path, position, "name"), "stage")
        stages.append(stage)
    return tuple(stages)


_STAGE_KEYS = (
    "name",
    "namespace",
    "flags",
    "gates",
    "approvals",
    "auto_rollback",
    "auto_promote",
    "freeze_windows",
    "notify",
    "flag_events",
    "controller_hooks",
    "parity",
)


def _parse_stage(reader: Reader, value: object, path: KeyPath) -> Stage:
    stage = reader.mapping(value, path, "{name: development, namespace: development}")
    reader.keys(stage, path, _STAGE_KEYS, required=("name",))
    name = reader.name(stage["name"], (*path, "name"), "stage", "staging")
    namespace = name
    if optional(stage, "namespace") is not None:
        namespace = reader.name(stage["namespace"], (*path, "namespace"), "namespace", name)
    # Read in the order of the keys above, so a file with several problems reports the same one.
    allow = _parse_allow(reader, optional(stage, "flags"), (*path, "flags"))
    gates = Gates()
    if optional(stage, "gates") is not None:
        gates = _parse_gates(reader, stage["gates"], (*path, "gates"))
    approvals = _parse_approvals(reader, optional(stage, "approvals"), (*path, "approvals"))
    auto_rollback = _switch(reader, stage, "auto_rollback", path)
    auto_promote = _switch(reader, stage, "auto_promote", path)
    flag_events = _parse_flag_events(reader, optional(stage, "flag_events"), (*path, "flag_events"))
    windows: tuple[FreezeWindow, ...] = ()
    if optional(stage, "freeze_windows") is not None:
        windows = _parse_freeze_windows(reader, stage["freeze_windows"], (*path, "freeze_windows"))
    return Stage(
        name=name,
        namespace=namespace,
        allow=allow,
        gates=gates,
        approvals=approvals,
        auto_rollback=auto_rollback,
        freeze_windows=windows,
        auto_promote=auto_promote,
        flag_events=flag_events,
        controller_hooks=parse_controller_hooks(
            reader, optional(stage, "controller_hooks"), (*path, "controller_hooks")
        ),
    )


def _parse_flag_events(reader: Reader, value: object, path: KeyPath) -> str:
    """A stage's ``flag_events: {on: commit | live}`` (absent: commit)."""
    if value is None:
        return "commit"
    spec = reader.mapping(value, path, "{on: live}")
    reader.keys(spec, path, ("on",), required=("on",))
    when = reader.string(spec["on"], (*path, "on"), "live")
    if when not in ("commit", "live"):
        reader.fail(
            (*path, "on"),
            f"{when!r} is not a moment",
            "use commit (tell clients once the change is pushed) or live (once the stage "
            "reports it runs it)",
        )
    return when


def _switch(reader: Reader, stage: Mapping[str, object], key: str, path: KeyPath) -> bool:
    """A stage's ``key: true`` (absent or empty: false)."""
    value = optional(stage, key)
    return False if value is None else reader.boolean(value, (*path, key), f"{key}: true")


def _parse_allow(reader: Reader, value: object, path: KeyPath) -> frozenset[str]:
    """Read a stage's ``flags: {allow: [...]}``: the lifecycles whose flags may be ON there."""
    if value is None:
        return frozenset(LIFECYCLES)
    flags = reader.mapping(value, path, "{allow: [beta, stable]}")
    reader.keys(flags, path, ("allow",))
    if optional(flags, "allow") is None:
        return frozenset(LIFECYCLES)
    allow_path = (*path, "allow")
    entries = reader.sequence(flags["allow"], allow_path, "[beta, stable]")
    for index, entry in enumerate(entries):
        if entry not in LIFECYCLES:
            close = (
                difflib.get_close_matches(entry, LIFECYCLES, n=1) if isinstance(entry, str) else []
            )
            hint = f"did you mean {close[0]!r}? " if close else ""
            reader.fail(
                (*allow_path, index),
                f"{quoted(entry)} is not a lifecycle",
                f"{hint}use {', '.join(LIFECYCLES[:-1])} or {LIFECYCLES[-1]}",
            )
    return frozenset(str(entry) for entry in entries)


def _parse_approvals(reader: Reader, value: object, path: KeyPath) -> int:
    """Read a stage's ``approvals:``, the number of people who must approve (0 by default)."""
    if value is None:
        return 0
    approvals = reader.integer(value, path, "approvals: 1")
    if approvals < 0:
        reader.fail(
            path,
            f"{approvals} is negative",
            "write 0 (no approvals) or the number of people who must approve",
        )
    return approvals


def _parse_gates(reader: Reader, value: object, path: KeyPath) -> Gates:
    gates = reader.mapping(value, path, "{checks: [smoke], soak: 10m}")
    reader.keys(gates, path, ("checks", "metrics", "soak"))

    checks: list[str] = []
    if optional(gates, "checks") is not None:
        checks_path = (*path, "checks")
        for index, entry in enumerate(
            reader.sequence(gates["checks"], checks_path, "[smoke, load]")
        ):
            check = reader.string(entry, (*checks_path, index), "smoke")
            if not _CHECK_NAME.match(check):
                reader.fail(
                    (*checks_path, index),
                    f"{json.dumps(check)} is not a valid check kind",
                    "use a lowercase name of letters, digits, '-' and '_' that starts with a "
                    "letter, like smoke or load",
                )
            if check in checks:
                reader.fail(
                    (*checks_path, index),
                    f"{json.dumps(check)} is listed twice",
                    "list every check kind once",
                )
            checks.append(check)

    metrics: list[MetricGate] = []
    if optional(gates, "metrics") is not None:
        metrics_path = (*path, "metrics")
        seen: dict[str, KeyPath] = {}
        entries = reader.sequence(gates["metrics"], metrics_path, "- {name: error-rate, ...}")
        for index, entry in enumerate(entries):
            metric = _parse_metric(reader, entry, (*metrics_path, index))
            reader.unique(metric.name, seen, (*metrics_path, index, "name"), "metric gate")
            metrics.append(metric)

    soak = None
    if optional(gates, "soak") is not None:
        soak = reader.duration(gates["soak"], (*path, "soak"))
    return Gates(checks=tuple(checks), metrics=tuple(metrics), soak=soak)


def _parse_metric(reader: Reader, value: object, path: KeyPath) -> MetricGate:
    metric = reader.mapping(value, path, "{name: error-rate, query: '...', max: 0.01}")
    reader.keys(
        metric, path, ("name", "query", "min", "max", "enabled"), required=("name", "query")
    )
    name = reader.string(metric["name"], (*path, "name"), "error-rate")
    if not _METRIC_NAME.match(name):
        reader.fail(
            (*path, "name"),
            f"{json.dumps(name)} is not a valid metric gate name",
            "use lowercase letters, digits, '-' and '_', like error-rate",
        )
    query = reader.string(metric["query"], (*path, "query"), "'sum(rate(http_requests_total[5m]))'")
    bounds: dict[str, float | None] = {"min": None, "max": None}
    for bound in bounds:
        if optional(metric, bound) is not None:
            bounds[bound] = reader.number(metric[bound], (*path, bound), f"{bound}: 0.01")
    low, high = bounds["min"], bounds["max"]
    if low is None and high is None:
        reader.fail(
            path,
            f"metric gate {json.dumps(name)} has neither min nor max",
            "add max: (the highest good value), min: (the lowest), or both",
        )
    if low is not None and high is not None and low > high:
        reader.fail(
            (*path, "min"),
            f"min {low:g} is greater than max {high:g}",
            "swap them or fix one of the bounds",
        )
    enabled = True
    if optional(metric, "enabled") is not None:
        enabled = reader.boolean(metric["enabled"], (*path, "enabled"), "enabled: true")
    return MetricGate(name=name, query=query, min=low, max=high, enabled=enabled)


def _parse_freeze_windows(reader: Reader, value: object, path: KeyPath) -> tuple[FreezeWindow, ...]:
    example = '- {name: weekend, cron: "0 18 * * 5", duration: 62h, timezone: Europe/Berlin}'
    seen: dict[str, KeyPath] = {}
    windows = []
    for index, entry in enumerate(reader.sequence(value, path, example)):
        item_path = (*path, index)
        window = reader.mapping(entry, item_path, example[2:])
        reader.keys(
            window,
            item_path,
            ("name", "cron", "duration", "timezone"),
            required=("name", "cron", "duration"),
        )
        name = reader.name(window["name"], (*item_path, "name"), "freeze window", "weekend")
        reader.unique(name, seen, (*item_path, "name"), "freeze window")
        cron = reader.string(window["cron"], (*item_path, "cron"), '"0 18 * * 5"')
        try:
            parse_cron(cron)
        except ValueError as error:
            reader.fail(
                (*item_path, "cron"),
                f"{json.dumps(cron)} is not a cron schedule: {error}",
                'write five fields (minute hour day-of-month month day-of-week) like "0 18 * * 5"',
            )
        duration = reader.duration(window["duration"], (*item_path, "duration"))
        if duration <= timedelta(0):
            reader.fail(
                (*item_path, "duration"),
                "a freeze window must last longer than 0s",
                "write how long it lasts, like 62h",
            )
        timezone = "UTC"
        if optional(window, "timezone") is not None:
            timezone = reader.string(window["timezone"], (*item_path, "timezone"), "Europe/Berlin")
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                reader.fail(
                    (*item_path, "timezone"),
                    f"{json.dumps(timezone)} is not a known time zone",
                    "use an IANA name like UTC, Europe/Berlin or America/New_York",
                )
        windows.append(FreezeWindow(name=name, cron=cron, duration=duration, timezone=timezone))
    return tuple(windows)


def _parse_apps(reader: Reader, value: object, stage_names: tuple[str, ...]) -> dict[str, App]:
    path: KeyPath = ("apps",)
    apps_map = reader.mapping(value, path, "{demo: {path: apps/demo}}")
    if not apps_map:
        reader.fail(path, "lists no apps", "add at least one app, like demo: {path: apps/demo}")
    apps = {}
    for name, entry in apps_map.items():
        app_path = (*path, name)
        reader.name(name, app_path, "app", "demo")
        app = reader.mapping(entry, app_path, f"{{path: apps/{name}}}")
        reader.keys(app, app_path, ("path", "flux", "argocd"), required=("path",))
        folder = _parse_app_folder(reader, app["path"], (*app_path, "path"), name)
        tools: dict[str, dict[str, str]] = {"flux": {}, "argocd": {}}
        for tool, what in (("flux", "Flux Kustomization"), ("argocd", "Argo CD Application")):
            if optional(app, tool) is not None:
                tool_path = (*app_path, tool)
                tools[tool] = _parse_deployed_by(
                    reader, app[tool], tool_path, name, what, stage_names
                )
        apps[name] = App(name=name, path=folder, flux=tools["flux"], argocd=tools["argocd"])
    return apps


def _parse_deployed_by(
    reader: Reader,
    value: object,
    path: KeyPath,
    name: str,
    what: str,
    stage_names: tuple[str, ...],
) -> dict[str, str]:
    """Read an app's ``flux:`` or ``argocd:``: ``{stage: the object that deploys it there}``.

    ``what`` names the object kind in messages ("Flux Kustomization", "Argo CD Application").
    """
    mapping = reader.mapping(value, path, f"{{{stage_names[0]}: {name}}}")
    found: dict[str, str] = {}
    for stage, entry in mapping.items():
        if stage not in stage_names:
            close = difflib.get_close_matches(stage, stage_names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            reader.fail(
                (*path, stage),
                f"there is no stage {json.dumps(stage)}",
                f"{hint}known stages: {', '.join(stage_names)}",
            )
        text = reader.string(entry, (*path, stage), f"{name}-{stage}")
        if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
            reader.fail(
                (*path, stage),
                f"{json.dumps(text)} is not a valid {what} name",
                f"use lowercase letters, digits, '-' and '.', like {name}-{stage}",
            )
        found[stage] = text
    return found


def _parse_app_folder(reader: Reader, value: object, path: KeyPath, name: str) -> str:
    folder = reader.string(value, path, f"apps/{name}")
    fix = f"write a folder relative to the repository root, like apps/{name}"
    if folder.startswith("/") or "\\" in folder:
        reader.fail(path, f"{json.dumps(folder)} is not a relative path", fix)
    folder = folder.rstrip("/")
    segments = folder.split("/")
    if ".." in segments:
        reader.fail(path, f"{json.dumps(folder)} leaves the repository with '..'", fix)
    if any(segment in ("", ".") for segment in segments):
        reader.fail(path, f"{json.dumps(folder)} has an empty or '.' segment", fix)
    return folder
