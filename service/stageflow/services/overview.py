"""Use cases of the dashboard: what every stage of an app runs and what a promotion would move.

Read-only compositions of the other services' reads (``state``, ``promotions``, ``reports``): the
pages show the same facts the API answers, computed the same way, and nothing here writes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from stageflow.domain.errors import StageflowError
from stageflow.domain.gates import GateResult, MetricSeries, metric_gate, soak_gate, verdict
from stageflow.domain.identity import Scope
from stageflow.domain.pipeline import App, MetricGate, Stage
from stageflow.domain.promotions import (
    WAITING,
    Promotion,
    Selection,
    carry_evaluators,
    plan_promotion,
)
from stageflow.services import promotions, state
from stageflow.services.context import Stageflow

# A chart shows this many points at most, whatever the window (Prometheus caps a range at 11,000).
CHART_POINTS = 120


@dataclass(frozen=True)
class Boundary:
    """Between two stages: what a promotion into ``target`` would move now, and its gates."""

    source: str
    target: str
    images: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    decision: str = "blocked"  # apply, pending_approval, blocked; "nothing" when nothing moves
    problem: str | None = None  # why no promotion can be opened (a conflict, a rejected image)
    waiting: Promotion | None = None  # the newest promotion into ``target`` waiting on its gates


@dataclass(frozen=True)
class MetricStatus:
    """A stage's metric gate: its last value against its bound (None while switched off)."""

    gate: MetricGate
    result: GateResult | None


@dataclass(frozen=True)
class StageColumn:
    """One stage of one app, as the pipeline page shows it."""

    stage: Stage
    view: dict[str, Any]  # the app state's part for this stage (state.app_view)
    flags_on: list[str]
    metrics: list[MetricStatus]
    soak: GateResult | None
    freezes: list[Any]


@dataclass(frozen=True)
class AppOverview:
    name: str
    revision: str
    columns: list[StageColumn]
    boundaries: list[Boundary | None]  # boundaries[i] sits between columns[i] and columns[i + 1]


def pipeline_overview(sf: Stageflow, scope: Scope, *, requester: str) -> list[AppOverview]:
    """Every app ``scope`` covers, with the stages of it that ``scope`` covers, in order."""
    snap = state.snapshot(sf)
    stages = [s for s in snap.pipeline.stages if scope.covers(stage=s.name)]
    with sf.uow() as uow:
        freezes = {s.name: list(uow.freezes.active(s.name)) for s in stages}
    found = []
    for app in snap.pipeline.apps.values():
        if not scope.covers(app.name):
            continue
        _, view = state.app_view(sf, app.name)
        parts = {part["stage"]: part for part in view["stages"]}
        columns = [_column(sf, snap, app, stage, parts[stage.name], freezes) for stage in stages]
        order = snap.pipeline.stage_names
        with sf.uow() as uow:  # ascending ids: the newest waiting promotion per target wins
            open_ = uow.promotions.list(app=app.name, statuses=WAITING, limit=50)
        waiting = {promotion.target: promotion for promotion in reversed(open_)}
        boundaries = [
            replace(
                boundary(sf, snap, app, source, target, requester=requester),
                waiting=waiting.get(target.name),
            )
            if order.index(target.name) == order.index(source.name) + 1
            else None  # a stage out of scope lies between: no promotion from here to there
            for source, target in itertools.pairwise(stages)
        ]
        found.append(AppOverview(app.name, snap.revision, columns, boundaries))
    return found


def stage_column(sf: Stageflow, app_name: str, stage_name: str) -> StageColumn:
    """One stage of one app, as its own page shows it (404 for an unknown app or stage)."""
    snap = state.snapshot(sf)
    app = snap.pipeline.app(app_name)
    stage = snap.pipeline.stage(stage_name)
    _, view = state.app_view(sf, app.name)
    part = next(part for part in view["stages"] if part["stage"] == stage.name)
    with sf.uow() as uow:
        freezes = {stage.name: list(uow.freezes.active(stage.name))}
    return _column(sf, snap, app, stage, part, freezes)


def _column(
    sf: Stageflow,
    snap: state.Snapshot,
    app: App,
    stage: Stage,
    part: dict[str, Any],
    freezes: dict[str, list[Any]],
) -> StageColumn:
    flags_on = sorted(key for key, flag in part["flags"].items() if flag["enabled"])
    soak = None
    if stage.gates.soak:
        with sf.uow() as uow:
            reports = uow.deployments.recent(app.name, stage.name)
        soak = soak_gate(
            stage.name, stage.gates.soak, snap.content(app, stage.name), reports, sf.clock()
        )
    return StageColumn(
        stage=stage,
        view=part,
        flags_on=flags_on,
        metrics=metric_statuses(sf, stage),
        soak=soak,
        freezes=freezes.get(stage.name, []),
    )


def metric_statuses(sf: Stageflow, stage: Stage) -> list[MetricStatus]:
    """Each metric gate of ``stage`` read now (as a promotion would), switched-off ones unread."""
    found = []
    metrics = sf.metrics
    configured = metrics is not None and metrics.configured
    for gate in stage.gates.metrics:
        if not gate.enabled:
            found.append(MetricStatus(gate, None))
            continue
        reading = metrics.query(gate.query) if metrics is not None and configured else None
        found.append(MetricStatus(gate, metric_gate(gate, reading, configured)))
    return found


def boundary(
    sf: Stageflow, snap: state.Snapshot, app: App, source: Stage, target: Stage, *, requester: str
) -> Boundary:
    """What a promotion of ``app`` from ``source`` into ``target`` would move now, and its gates.

    Planned from the snapshot without a render, as ``promotions.promote`` plans before it gates:
    the page shows what a click on Promote would open, and nothing is stored.
    """
    plan = plan_promotion(
        source_images=snap.images(app, source.name),
        target_images=snap.images(app, target.name),
        source_flags=snap.flags(app, source.name),
        target_flags=snap.flags(app, target.name),
        target=target,
        selection=Selection(),
    )
    if plan.empty:
        return Boundary(source.name, target.name, decision="nothing")
    problem = None
    try:
        carry_evaluators(
            snap.flags(app, target.name),
            snap.flags(app, source.name),
            [m.key for m in plan.flags],
        )
    except StageflowError as exc:
        problem = exc.message
    gates, _, _ = promotions.evaluate_gates(sf, snap, app, source, target, requester=requester)
    return Boundary(
        source.name,
        target.name,
        images=plan.to_json()["images"],
        flags=plan.to_json()["flags"],
        gates=gates,
        decision=verdict(gates),
        problem=problem,
    )


@dataclass(frozen=True)
class Chart:
    gate: MetricGate
    series: MetricSeries


def stage_charts(
    sf: Stageflow, app_name: str, stage_name: str, *, hours: float, now: float
) -> list[Chart]:
    """Each metric gate's series over the last ``hours`` (every gate, switched off or not)."""
    snap = state.snapshot(sf)
    snap.pipeline.app(app_name)
    stage = snap.pipeline.stage(stage_name)
    start = now - hours * 3600
    step = max(15.0, round(hours * 3600 / CHART_POINTS))
    charts = []
    for gate in stage.gates.metrics:
        if sf.metrics is None or not sf.metrics.configured:
            series = MetricSeries(error="no Prometheus configured; set STAGEFLOW_PROMETHEUS_URL")
        else:
            series = sf.metrics.query_range(gate.query, start, now, step)
        charts.append(Chart(gate, series))
    return charts
