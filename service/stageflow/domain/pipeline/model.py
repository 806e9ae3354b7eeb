"""The pipeline as typed values: apps, the ordered stages and each stage's gates and freezes.

These are what ``parse_pipeline`` returns; everything else reads the pipeline through them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from stageflow.domain.errors import NotFound
from stageflow.domain.hooks import ControllerHook
from stageflow.domain.notify import NotifyTarget
from stageflow.domain.pipeline.cron import parse_cron, runs_on, times_of_day
from stageflow.domain.policies import PolicySettings


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
        parse_cron(self.cron)  # a bad schedule is reported before a bad zone, as it always was
        zone = ZoneInfo(self.timezone)
        moment = when.astimezone(UTC)
        local_now = when.astimezone(zone)
        day = (local_now - self.duration).date() - timedelta(days=1)
        latest: tuple[datetime, datetime] | None = None
        while day <= local_now.date():
            if runs_on(self.cron, day):
                for hour, minute in times_of_day(self.cron):
                    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    # Compare in UTC: a window lasts its duration in real time, also over a DST
                    # change, and aware datetimes sharing a tzinfo compare by wall clock.
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
    # Open (and apply, when its gates hold) a promotion into this stage by itself whenever the
    # stage before it runs a new state: `auto_promote: true` on the stage that *receives*.
    auto_promote: bool = False
    # when OFREP event streams tell clients to re-fetch: "commit" (the change is on the remote)
    # or "live" (a deployment report says the stage runs a revision with it)
    flag_events: str = "commit"
    controller_hooks: tuple[ControllerHook, ...] = ()  # domain.hooks: told of every commit

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
    # where events are sent (`notify:` at the top level and inside stages), flattened
    notify: tuple[NotifyTarget, ...] = ()
    policies: PolicySettings = field(default_factory=PolicySettings)  # domain.policies

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
