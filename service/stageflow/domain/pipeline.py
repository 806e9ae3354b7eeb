"""The pipeline: ``stageflow.yaml`` as typed values, and the strict validation that produces them.

``parse_pipeline`` takes the YAML as plain Python containers (the adapter loads the file) and
either returns a ``Pipeline`` or raises the first ``PipelineError`` it meets. Every message names
the file, the line when known, the key path (``stages[1].gates.soak``), what is wrong and how to
fix it, because the people reading it edit the file by hand.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stageflow.domain.errors import NotFound, PipelineError
from stageflow.domain.policies import PolicySettings, parse_policy_settings

__all__ = [
    "API_VERSION",
    "LIFECYCLES",
    "App",
    "FreezeWindow",
    "Gates",
    "KeyPath",
    "MetricGate",
    "Pipeline",
    "Stage",
    "format_duration",
    "parse_duration",
    "parse_pipeline",
]

API_VERSION = "stageflow/v1"
LIFECYCLES = ("experimental", "beta", "stable")

KeyPath = tuple[str | int, ...]
LineOf = Callable[[KeyPath], int | None]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CHECK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_METRIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --- durations ---------------------------------------------------------------------------------


def parse_duration(text: str | int) -> timedelta:
    """Turn ``30s``, ``10m``, ``1h30m``, ``2d`` or a whole number of seconds into a timedelta."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is not a duration: it is negative")
        return timedelta(seconds=text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration")
    written = text.strip()
    if written.isdigit():
        return timedelta(seconds=int(written))
    match = _DURATION.match(written)
    if not written or match is None:
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 10m or 1h30m")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(td: timedelta) -> str:
    """Write a timedelta the way ``parse_duration`` reads it (whole seconds): ``1h30m``."""
    total = int(td.total_seconds())
    if total < 0:
        raise ValueError(f"{td!r} is negative; durations are never negative")
    if total == 0:
        return "0s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


# --- cron (freeze windows) ---------------------------------------------------------------------

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (field name, lowest, highest, names for lowest..): the classic five cron fields.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTH_NAMES),
    ("day of week", 0, 7, _DAY_NAMES),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...], what: str) -> int:
    lowered = text.lower()
    if names and lowered in names:
        return low + names.index(lowered)
    if not text.isdigit():
        raise ValueError(f"{what} field: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} field: {value} is outside {low}-{high}")
    return value


def _cron_field(
    text: str, low: int, high: int, names: tuple[str, ...], what: str
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{what} field: step {step_text!r} in {part!r} must be 1 or more")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _cron_value(first, low, high, names, what)
            end = _cron_value(last, low, high, names, what)
            if start > end:
                raise ValueError(f"{what} field: range {base!r} runs backwards")
        elif base:
            start = _cron_value(base, low, high, names, what)
            # "5/15" means "from 5 to the end, every 15", as Vixie cron and croniter read it.
            end = high if slash else start
        else:
            raise ValueError(f"{what} field: {part!r} is empty")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@lru_cache(maxsize=256)
def _parse_cron(cron: str) -> tuple[frozenset[int], ...]:
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"{cron!r} has {len(fields)} fields, not 5 (minute hour day-of-month month day-of-week)"
        )
    parsed = tuple(
        _cron_field(text, low, high, names, what)
        for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True)
    )
    # Day of week 7 is another way to say Sunday.
    if 7 in parsed[4]:
        parsed = (*parsed[:4], (parsed[4] - {7}) | {0})
    return parsed


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricGate:
    """A Prometheus query whose value must lie within ``[min, max]`` (either bound may be open)."""

    name: str
    query: str
    min: float | None = None
    max: float | None = None
    # A gate written down but switched off (the starter ships its metric gates this way, ready to
    # switch on once STAGEFLOW_PROMETHEUS_URL is set). A switched-on gate without a Prometheus is
    # inconclusive, and inconclusive blocks.
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ValueError(f"metric gate {self.name!r} needs min, max or both")


@dataclass(frozen=True)
class FreezeWindow:
    """A recurring freeze: it starts at each ``cron`` match in ``timezone``, lasts ``duration``."""

    name: str
    cron: str
    duration: timedelta
    timezone: str = "UTC"

    def occurrence_at(self, when: datetime) -> tuple[datetime, datetime] | None:
        """Return the (start, end) of the occurrence that covers ``when``, or None."""
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        if self.duration <= timedelta(0):
            return None
        minutes, hours, days, months, weekdays = _parse_cron(self.cron)
        zone = ZoneInfo(self.timezone)
        moment = when.astimezone(UTC)
        local_now = when.astimezone(zone)
        # Cron (Vixie semantics): when both day fields are restricted, either one may match.
        dom_any = self.cron.split()[2].startswith("*")
        dow_any = self.cron.split()[4].startswith("*")
        day = (local_now - self.duration).date() - timedelta(days=1)
        latest: tuple[datetime, datetime] | None = None
        while day <= local_now.date():
            dom_ok = day.day in days
            dow_ok = (day.isoweekday() % 7) in weekdays
            day_ok = (dom_ok and dow_ok) if dom_any or dow_any else (dom_ok or dow_ok)
            if day.month in months and day_ok:
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                        # Compare in UTC: a window lasts its duration in real time, also over a
                        # DST change, and aware datetimes sharing a tzinfo compare by wall clock.
                        start = local.astimezone(UTC)
                        end = start + self.duration
                        if start <= moment < end:
                            latest = (local, end.astimezone(zone))
            day += timedelta(days=1)
        return latest

    def active_at(self, when: datetime) -> bool:
        """Say whether the freeze holds at ``when`` (a timezone-aware datetime)."""
        return self.occurrence_at(when) is not None


@dataclass(frozen=True)
class Gates:
    """What must hold in a stage before its state moves on to the next stage."""

    checks: tuple[str, ...] = ()
    metrics: tuple[MetricGate, ...] = ()
    soak: timedelta | None = None


@dataclass(frozen=True)
class Stage:
    """One environment, in promotion order, with its policy."""

    name: str
    namespace: str
    allow: frozenset[str]
    gates: Gates = field(default_factory=Gates)
    approvals: int = 0
    auto_rollback: bool = False
    freeze_windows: tuple[FreezeWindow, ...] = ()

    def allows(self, lifecycle: str) -> bool:
        """Say whether a flag of this lifecycle may be ON in this stage."""
        return lifecycle in self.allow


@dataclass(frozen=True)
class App:
    """An application whose overlays live under ``path`` in the GitOps repo."""

    name: str
    path: str
    # stage name -> Flux Kustomization / Argo CD Application that deploys this app there.
    flux: Mapping[str, str] = field(default_factory=dict)
    argocd: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flux", MappingProxyType(dict(self.flux)))
        object.__setattr__(self, "argocd", MappingProxyType(dict(self.argocd)))

    def overlay_path(self, stage: str) -> str:
        """Return the repo-relative folder of this app's overlay for ``stage``."""
        return f"{self.path}/overlays/{stage}"

    @property
    def base_path(self) -> str:
        """Return the repo-relative folder of this app's base."""
        return f"{self.path}/base"


@dataclass(frozen=True)
class Pipeline:
    """The apps and the ordered stages every app moves through."""

    apps: Mapping[str, App]
    stages: tuple[Stage, ...]
    policies: PolicySettings = field(default_factory=PolicySettings)  # issue #17

    def __post_init__(self) -> None:
        object.__setattr__(self, "apps", MappingProxyType(dict(self.apps)))
        object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Return the stage names in promotion order."""
        return tuple(stage.name for stage in self.stages)

    @property
    def first_stage(self) -> Stage:
        """Return the stage new images and flags enter."""
        return self.stages[0]

    def index(self, name: str) -> int:
        """Return the position of stage ``name`` in promotion order."""
        for position, stage in enumerate(self.stages):
            if stage.name == name:
                return position
        raise NotFound(
            _not_found_message("stage", name, self.stage_names),
            details={"stage": name, "known": list(self.stage_names)},
        )

    def stage(self, name: str) -> Stage:
        """Return the stage called ``name``."""
        return self.stages[self.index(name)]

    def next_stage(self, name: str) -> Stage | None:
        """Return the stage after ``name``, or None for the last stage."""
        position = self.index(name)
        return self.stages[position + 1] if position + 1 < len(self.stages) else None

    def previous_stage(self, name: str) -> Stage | None:
        """Return the stage before ``name``, or None for the first stage."""
        position = self.index(name)
        return self.stages[position - 1] if position > 0 else None

    def app(self, name: str) -> App:
        """Return the app called ``name``."""
        try:
            return self.apps[name]
        except KeyError:
            known = tuple(self.apps)
            raise NotFound(
                _not_found_message("app", name, known), details={"app": name, "known": list(known)}
            ) from None


def _not_found_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    message = f"there is no {kind} {name!r}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return f"{message} (known {kind}s: {', '.join(known) or 'none'})"


# --- parsing -----------------------------------------------------------------------------------


def _dotted(path: KeyPath) -> str:
    """Write a key path the way people read it: ``stages[1].gates.soak``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _show(value: object) -> str:
    """Describe a YAML value in a message, the way it looks in the file."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {json.dumps(shown)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _quoted(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else _show(value)


class _Reader:
    """Walks the loaded document and raises the first problem as a ``PipelineError``."""

    def __init__(self, source: str, line_of: LineOf) -> None:
        self.source = source
        self.line_of = line_of

    def fail(self, path: KeyPath, problem: str, fix: str) -> NoReturn:
        where = _dotted(path)
        line = self.line_of(path)
        head = self.source if line is None else f"{self.source} line {line}"
        if where:
            head = f"{head}, {where}"
        raise PipelineError(f"{head}: {problem}; {fix}", details={"path": where, "line": line})

    # Types ---------------------------------------------------------------------------------

    def mapping(self, value: object, path: KeyPath, example: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, found {_show(value)}", f"write it like {example}")
        for key in value:
            if not isinstance(key, str):
                self.fail(
                    (*path, str(key)),
                    f"keys must be strings, found {_show(key)}",
                    "quote the key or fix its spelling",
                )
        return value

    def sequence(self, value: object, path: KeyPath, example: str) -> list[object]:
        if not isinstance(value, list | tuple):
            self.fail(path, f"expected a list, found {_show(value)}", f"write it like {example}")
        return list(value)

    def string(self, value: object, path: KeyPath, example: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, found {_show(value)}", f"write it like {example}")
        if not value.strip():
            self.fail(path, "is empty", f"write it like {example}")
        return value

    def integer(self, value: object, path: KeyPath, example: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(
                path, f"expected a whole number, found {_show(value)}", f"write it like {example}"
            )
        return value

    def number(self, value: object, path: KeyPath, example: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, found {_show(value)}", f"write it like {example}")
        if not math.isfinite(value):
            self.fail(path, f"{value} is not a finite number", f"write it like {example}")
        return float(value)

    def boolean(self, value: object, path: KeyPath, example: str) -> bool:
        if not isinstance(value, bool):
            self.fail(
                path, f"expected true or false, found {_show(value)}", f"write it like {example}"
            )
        return value

    def name(self, value: object, path: KeyPath, what: str, example: str) -> str:
        text = self.string(value, path, example)
        if len(text) > 63 or not _DNS_LABEL.match(text):
            self.fail(
                path,
                f"{json.dumps(text)} is not a valid {what} name",
                "use at most 63 lowercase letters, digits and '-', starting and ending with a "
                f"letter or digit, like {example}",
            )
        return text

    def duration(self, value: object, path: KeyPath) -> timedelta:
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(
                path,
                f"expected a duration, found {_show(value)}",
                "write it like 30s, 10m or 1h30m (or a whole number of seconds)",
            )
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(
                path,
                f"{_quoted(value)} is not a duration",
                "write it like 30s, 10m or 1h30m",
            )

    # Structure -----------------------------------------------------------------------------

    def keys(
        self,
        value: Mapping[str, object],
        path: KeyPath,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> None:
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(
                    (*path, key),
                    f"unknown key {json.dumps(key)}",
                    f"{hint}known keys here: {', '.join(allowed)}",
                )
        for key in required:
            if key not in value:
                where = _dotted(path) or "the top level"
                self.fail((*path, key), "is missing", f"add {key}: to {where}")

    def unique(self, name: str, seen: dict[str, KeyPath], path: KeyPath, what: str) -> None:
        if name in seen:
            self.fail(
                path,
                f"{json.dumps(name)} is already the name of {_dotted(seen[name])}",
                f"give every {what} a unique name",
            )
        seen[name] = path[:-1]


def _optional(mapping: Mapping[str, object], key: str) -> object:
    # An empty value (``gates:`` with nothing under it) means "use the default", like absence.
    return mapping.get(key)


def parse_pipeline(
    data: object,
    *,
    line_of: LineOf = lambda path: None,
    source: str = "stageflow.yaml",
) -> Pipeline:
    """Validate the loaded ``stageflow.yaml`` and return it as a Pipeline."""
    reader = _Reader(source, line_of)
    if data is None:
        reader.fail(
            (),
            "the file is empty",
            f"start it with apiVersion: {API_VERSION}, then list apps: and stages:",
        )
    top = reader.mapping(data, (), f"apiVersion: {API_VERSION} with apps: and stages: under it")
    reader.keys(top, (), ("apiVersion", "apps", "stages", "policies"))
    if "apiVersion" not in top:
        reader.fail(("apiVersion",), "is missing", f"add apiVersion: {API_VERSION} at the top")
    if top["apiVersion"] != API_VERSION:
        reader.fail(
            ("apiVersion",),
            f"{_quoted(top['apiVersion'])} is not a supported apiVersion",
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
    policies = parse_policy_settings(top, [stage.name for stage in stages], reader.fail)
    return Pipeline(apps=apps, stages=stages, policies=policies)


def _parse_stages(reader: _Reader, value: object) -> tuple[Stage, ...]:
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
    "freeze_windows",
    "parity",
)


def _parse_stage(reader: _Reader, value: object, path: KeyPath) -> Stage:
    stage = reader.mapping(value, path, "{name: development, namespace: development}")
    reader.keys(stage, path, _STAGE_KEYS, required=("name",))
    name = reader.name(stage["name"], (*path, "name"), "stage", "staging")
    namespace = name
    if _optional(stage, "namespace") is not None:
        namespace = reader.name(stage["namespace"], (*path, "namespace"), "namespace", name)

    allow = frozenset(LIFECYCLES)
    if _optional(stage, "flags") is not None:
        flags_path = (*path, "flags")
        flags = reader.mapping(stage["flags"], flags_path, "{allow: [beta, stable]}")
        reader.keys(flags, flags_path, ("allow",))
        if _optional(flags, "allow") is not None:
            allow_path = (*flags_path, "allow")
            entries = reader.sequence(flags["allow"], allow_path, "[beta, stable]")
            for index, entry in enumerate(entries):
                if entry not in LIFECYCLES:
                    close = (
                        difflib.get_close_matches(entry, LIFECYCLES, n=1)
                        if isinstance(entry, str)
                        else []
                    )
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    reader.fail(
                        (*allow_path, index),
                        f"{_quoted(entry)} is not a lifecycle",
                        f"{hint}use experimental, beta or stable",
                    )
            allow = frozenset(str(entry) for entry in entries)

    gates = Gates()
    if _optional(stage, "gates") is not None:
        gates = _parse_gates(reader, stage["gates"], (*path, "gates"))

    approvals = 0
    if _optional(stage, "approvals") is not None:
        approvals = reader.integer(stage["approvals"], (*path, "approvals"), "approvals: 1")
        if approvals < 0:
            reader.fail(
                (*path, "approvals"),
                f"{approvals} is negative",
                "write 0 (no approvals) or the number of people who must approve",
            )

    auto_rollback = False
    if _optional(stage, "auto_rollback") is not None:
        auto_rollback = reader.boolean(
            stage["auto_rollback"], (*path, "auto_rollback"), "auto_rollback: true"
        )

    windows: tuple[FreezeWindow, ...] = ()
    if _optional(stage, "freeze_windows") is not None:
        windows = _parse_freeze_windows(reader, stage["freeze_windows"], (*path, "freeze_windows"))

    return Stage(
        name=name,
        namespace=namespace,
        allow=allow,
        gates=gates,
        approvals=approvals,
        auto_rollback=auto_rollback,
        freeze_windows=windows,
    )


def _parse_gates(reader: _Reader, value: object, path: KeyPath) -> Gates:
    gates = reader.mapping(value, path, "{checks: [smoke], soak: 10m}")
    reader.keys(gates, path, ("checks", "metrics", "soak"))

    checks: list[str] = []
    if _optional(gates, "checks") is not None:
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
    if _optional(gates, "metrics") is not None:
        metrics_path = (*path, "metrics")
        seen: dict[str, KeyPath] = {}
        entries = reader.sequence(gates["metrics"], metrics_path, "- {name: error-rate, ...}")
        for index, entry in enumerate(entries):
            metric = _parse_metric(reader, entry, (*metrics_path, index))
            reader.unique(metric.name, seen, (*metrics_path, index, "name"), "metric gate")
            metrics.append(metric)

    soak = None
    if _optional(gates, "soak") is not None:
        soak = reader.duration(gates["soak"], (*path, "soak"))
    return Gates(checks=tuple(checks), metrics=tuple(metrics), soak=soak)


def _parse_metric(reader: _Reader, value: object, path: KeyPath) -> MetricGate:
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
        if _optional(metric, bound) is not None:
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
    if _optional(metric, "enabled") is not None:
        enabled = reader.boolean(metric["enabled"], (*path, "enabled"), "enabled: true")
    return MetricGate(name=name, query=query, min=low, max=high, enabled=enabled)


def _parse_freeze_windows(
    reader: _Reader, value: object, path: KeyPath
) -> tuple[FreezeWindow, ...]:
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
            _parse_cron(cron)
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
        if _optional(window, "timezone") is not None:
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


def _parse_apps(reader: _Reader, value: object, stage_names: tuple[str, ...]) -> dict[str, App]:
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
            if _optional(app, tool) is None:
                continue
            tool_path = (*app_path, tool)
            mapping = reader.mapping(app[tool], tool_path, f"{{{stage_names[0]}: {name}}}")
            for stage, target in mapping.items():
                if stage not in stage_names:
                    close = difflib.get_close_matches(stage, stage_names, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    reader.fail(
                        (*tool_path, stage),
                        f"there is no stage {json.dumps(stage)}",
                        f"{hint}known stages: {', '.join(stage_names)}",
                    )
                text = reader.string(target, (*tool_path, stage), f"{name}-{stage}")
                if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
                    reader.fail(
                        (*tool_path, stage),
                        f"{json.dumps(text)} is not a valid {what} name",
                        f"use lowercase letters, digits, '-' and '.', like {name}-{stage}",
                    )
                tools[tool][stage] = text
        apps[name] = App(name=name, path=folder, flux=tools["flux"], argocd=tools["argocd"])
    return apps


def _parse_app_folder(reader: _Reader, value: object, path: KeyPath, name: str) -> str:
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
