"""The gates of a promotion, evaluated from the ledger, Prometheus and the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, NotRequired, TypedDict, Unpack

from stageflow.domain.gates import (
    Deployment,
    GateResult,
    Verdict,
    approvals_gate,
    check_gate,
    deployment_gate,
    freeze_gate,
    hold_gate,
    metric_gate,
    soak_gate,
)
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import Selection
from stageflow.services.context import Stageflow
from stageflow.services.policy_gates import policy_gates
from stageflow.services.ports import MetricsSource
from stageflow.services.state import Snapshot


class Gating(NamedTuple):
    """Every gate of a promotion, the source state they were evaluated for, and its revision."""

    gates: list[GateResult]
    content: str
    # the revision the source reported running its state at (None: it has not reported it)
    running: str | None


class People(TypedDict):
    """Who asked for a promotion and who approved it (the approvals gate counts them)."""

    requester: str
    approvers: NotRequired[Sequence[str]]
    # what the promotion moves: its policy and parity gates render the result (none: no render)
    selection: NotRequired[Selection | None]


def evaluate_gates(
    sf: Stageflow, snap: Snapshot, app: App, source: Stage, target: Stage, **people: Unpack[People]
) -> Gating:
    """Evaluate every gate of ``source`` -> ``target``; return gates, source state, revision."""
    requester, approvers = people["requester"], people.get("approvers", ())
    content = snap.content(app, source.name)
    with sf.uow() as uow:
        reports = uow.deployments.recent(app.name, source.name)
        checks = uow.checks.for_content(app.name, source.name, content)
        freezes = uow.freezes.active(target.name)
        hold = uow.holds.active(app.name, target.name)
    now = sf.clock()
    gates = [deployment_gate(source.name, content, reports)]
    gates += [check_gate(source.name, kind, content, checks) for kind in source.gates.checks]
    gates += metric_gates(sf.metrics, source)
    gates += _soak(source, content, reports, now)
    gates.append(freeze_gate(target.name, freezes, target.freeze_windows, now))
    gates.append(hold_gate(app.name, target.name, hold))
    gates += policy_gates(sf, snap, app, source, target, people.get("selection"))
    if target.approvals:
        gates.append(approvals_gate(target.name, target.approvals, approvers, requester))
    running = next((r.revision for r in reports if r.content == content), None)
    return Gating(gates, content, running)


def metric_gates(metrics: MetricsSource | None, source: Stage) -> list[GateResult]:
    """The source's enabled metric gates (inconclusive when no Prometheus is configured)."""
    configured = metrics is not None and metrics.configured
    gates = []
    for metric in source.gates.metrics:
        if not metric.enabled:
            continue
        reading = metrics.query(metric.query) if metrics is not None and configured else None
        gates.append(metric_gate(metric, reading, configured))
    return gates


def _soak(
    source: Stage, content: str, reports: Sequence[Deployment], now: datetime
) -> list[GateResult]:
    if not source.gates.soak:
        return []
    return [soak_gate(source.name, source.gates.soak, content, reports, now)]


def summary(decision: str, gates: Sequence[GateResult]) -> str:
    """The promotion's message: that every gate holds, or what each open gate waits for."""
    if decision == Verdict.APPLY:
        return "every gate holds"
    open_gates = [gate for gate in gates if not gate.holds]
    return "; ".join(f"{gate.name}: {gate.message}" for gate in open_gates)
