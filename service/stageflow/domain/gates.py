"""Gate verdicts: pure functions from recorded facts to passed / failed / pending / inconclusive.

Gates fail closed: anything that is not a clear pass (no data, NaN, an error, a missing report)
holds the promotion back and says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from stageflow.domain.pipeline import FreezeWindow, MetricGate, format_duration


class GateStatus(StrEnum):
    """A gate's verdict; only ``passed`` holds (gates fail closed)."""

    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"
    INCONCLUSIVE = "inconclusive"


PASSED, FAILED, PENDING, INCONCLUSIVE = (
    GateStatus.PASSED,
    GateStatus.FAILED,
    GateStatus.PENDING,
    GateStatus.INCONCLUSIVE,
)


class CheckStatus(StrEnum):
    """What a check (a smoke test, a scan) reported for a revision."""

    PASSED = "passed"
    FAILED = "failed"


class Verdict(StrEnum):
    """What the gates of a promotion decide together."""

    APPLY = "apply"
    PENDING_APPROVAL = "pending_approval"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class GateResult:
    name: str
    kind: str
    status: GateStatus
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status == PASSED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            name=data["name"],
            kind=data["kind"],
            status=GateStatus(data["status"]),
            message=data["message"],
            evidence=data.get("evidence") or {},
        )


@dataclass(frozen=True)
class Deployment:
    """What the cluster reported a stage runs: a revision and its health."""

    revision: str
    content: str
    health: str
    at: datetime
    source: str = "api"


@dataclass(frozen=True)
class CheckResult:
    kind: str
    revision: str
    content: str
    status: CheckStatus
    at: datetime
    summary: str | None = None
    url: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class MetricReading:
    """One instant query's answer, reduced to what the verdict needs."""

    value: float | None = None
    series: int = 0
    error: str | None = None


@dataclass(frozen=True)
class MetricSeries:
    """One range query's answer: (unix time, value) points of a single series, or why none."""

    points: tuple[tuple[float, float], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Freeze:
    stage: str
    reason: str
    by: str
    until: datetime | None = None
    at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class Hold:
    app: str
    stage: str
    reason: str
    by: str
    at: datetime | None = None
    id: int | None = None


def deployment_gate(stage: str, content: str, reports: Sequence[Deployment]) -> GateResult:
    """The stage has synced, and is healthy, at a revision that holds its current overlay."""
    name = "deployment"
    latest = reports[0] if reports else None
    if latest is None or latest.content != content:
        message = f"{stage} has not reported running its current state yet" + (
            f" (latest report: {latest.revision[:12]}, an older state)" if latest else ""
        )
        return GateResult(
            name,
            "deployment",
            PENDING,
            message + "; Argo CD / Flux (or POST .../deployments) report it once synced",
            {"content": content, "latest": _deployment_json(latest)},
        )
    evidence = {"content": content, "latest": _deployment_json(latest)}
    if latest.health == "healthy":
        return GateResult(
            name,
            "deployment",
            PASSED,
            f"{stage} runs {latest.revision[:12]} and is healthy",
            evidence,
        )
    if latest.health == "progressing":
        return GateResult(
            name,
            "deployment",
            PENDING,
            f"{stage} is still rolling out {latest.revision[:12]}",
            evidence,
        )
    return GateResult(
        name,
        "deployment",
        FAILED,
        f"{stage} reports {latest.health} at {latest.revision[:12]}",
        evidence,
    )


def _deployment_json(report: Deployment | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "revision": report.revision,
        "health": report.health,
        "at": report.at.isoformat(),
        "source": report.source,
    }


def check_gate(stage: str, kind: str, content: str, results: Sequence[CheckResult]) -> GateResult:
    """The latest ``kind`` check for the stage's current state passed (newest first input)."""
    name = f"check:{kind}"
    for result in results:
        if result.kind != kind or result.content != content:
            continue
        evidence = {
            "check_id": result.id,
            "revision": result.revision,
            "status": result.status,
            "at": result.at.isoformat(),
            "summary": result.summary,
            "url": result.url,
        }
        if result.status == CheckStatus.PASSED:
            return GateResult(
                name, "check", PASSED, f"{kind} passed for {result.revision[:12]}", evidence
            )
        return GateResult(
            name,
            "check",
            FAILED,
            f"{kind} failed for {result.revision[:12]}"
            + (f": {result.summary}" if result.summary else "")
            + "; a new passed result for this state clears it",
            evidence,
        )
    return GateResult(
        name,
        "check",
        PENDING,
        f"no {kind} result recorded for {stage}'s current state; POST "
        f".../stages/{stage}/checks {{kind: {kind}, revision, status}}",
        {"content": content},
    )


def soak_gate(
    stage: str, soak: timedelta, content: str, reports: Sequence[Deployment], now: datetime
) -> GateResult:
    """The stage has run its current state, healthy, for at least ``soak``."""
    since = running_since(content, reports)
    evidence: dict[str, Any] = {"soak": format_duration(soak), "since": None}
    if since is None:
        return GateResult(
            "soak", "soak", PENDING, f"{stage} has not run its current state healthy yet", evidence
        )
    ran = now - since
    evidence.update(since=since.isoformat(), ran_seconds=int(ran.total_seconds()))
    if ran >= soak:
        return GateResult(
            "soak",
            "soak",
            PASSED,
            f"{stage} has run this state for {format_duration(_whole(ran))} "
            f"(at least {format_duration(soak)})",
            evidence,
        )
    return GateResult(
        "soak",
        "soak",
        PENDING,
        f"{stage} has run this state for {format_duration(_whole(ran))} of "
        f"{format_duration(soak)}; {format_duration(_whole(soak - ran) + timedelta(seconds=1))} "
        "to go",
        evidence,
    )


def _whole(delta: timedelta) -> timedelta:
    return timedelta(seconds=int(delta.total_seconds()))


def running_since(content: str, reports: Sequence[Deployment]) -> datetime | None:
    """When the stage started running ``content`` healthy, in the latest unbroken run of it."""
    since: datetime | None = None
    for report in reports:  # newest first
        if report.content != content:
            break
        if report.health == "healthy":
            since = report.at
        elif report.health == "degraded":
            break
    return since


def metric_gate(gate: MetricGate, reading: MetricReading | None, configured: bool) -> GateResult:
    """A single value within the gate's bounds; anything else is inconclusive (and blocks)."""
    name = f"metric:{gate.name}"
    evidence: dict[str, Any] = {"query": gate.query, "min": gate.min, "max": gate.max}
    bounds = _bounds(gate)
    if not configured or reading is None:
        return GateResult(
            name,
            "metric",
            INCONCLUSIVE,
            f"{gate.name} cannot be checked: no Prometheus is configured; set "
            "STAGEFLOW_PROMETHEUS_URL (or switch the gate off with `enabled: false`)",
            evidence,
        )
    evidence["value"] = reading.value
    if reading.error is not None:
        return GateResult(
            name,
            "metric",
            INCONCLUSIVE,
            f"{gate.name} is inconclusive: {reading.error}",
            {**evidence, "error": reading.error},
        )
    if reading.series == 0 or reading.value is None:
        return GateResult(
            name,
            "metric",
            INCONCLUSIVE,
            f"{gate.name} is inconclusive: the query returned no data (is the stage serving "
            "traffic, and are the metric and label names right?)",
            evidence,
        )
    if reading.series > 1:
        return GateResult(
            name,
            "metric",
            INCONCLUSIVE,
            f"{gate.name} is inconclusive: the query returned {reading.series} series; "
            "aggregate it to one value (e.g. wrap it in sum(...))",
            {**evidence, "series": reading.series},
        )
    value = reading.value
    if math.isnan(value) or math.isinf(value):
        return GateResult(
            name,
            "metric",
            INCONCLUSIVE,
            f"{gate.name} is inconclusive: the value is {value} (often a division by zero "
            "when there was no traffic)",
            {**evidence, "value": str(value)},
        )
    too_low = gate.min is not None and value < gate.min
    too_high = gate.max is not None and value > gate.max
    if too_low or too_high:
        return GateResult(
            name,
            "metric",
            FAILED,
            f"{gate.name} is {value:g}, outside {bounds}",
            evidence,
        )
    return GateResult(
        name, "metric", PASSED, f"{gate.name} is {value:g}, within {bounds}", evidence
    )


def _bounds(gate: MetricGate) -> str:
    if gate.min is not None and gate.max is not None:
        return f"[{gate.min:g}, {gate.max:g}]"
    if gate.max is not None:
        return f"<= {gate.max:g}"
    return f">= {gate.min:g}"


def approvals_gate(
    target: str, required: int, approvers: Iterable[str], requester: str
) -> GateResult:
    """``required`` approvals by distinct people, none of them the requester."""
    people = sorted({person for person in approvers if person != requester})
    evidence = {"required": required, "approvers": people, "requester": requester}
    if len(people) >= required:
        return GateResult(
            "approvals",
            "approval",
            PASSED,
            f"{len(people)} of {required} approvals ({', '.join(people) or 'none needed'})",
            evidence,
        )
    return GateResult(
        "approvals",
        "approval",
        PENDING,
        f"{len(people)} of {required} approvals for {target}; someone other than {requester} "
        "must approve (POST /api/v1/promotions/{id}/approvals)",
        evidence,
    )


def freeze_gate(
    target: str, freezes: Sequence[Freeze], windows: Sequence[FreezeWindow], now: datetime
) -> GateResult:
    """The target stage is not frozen, by hand or by a recurring window."""
    for freeze in freezes:
        if freeze.until is None or now < freeze.until:
            until = f" until {freeze.until.isoformat()}" if freeze.until else ""
            return GateResult(
                "freeze",
                "freeze",
                FAILED,
                f"{target} is frozen{until} by {freeze.by}: {freeze.reason}; "
                f"DELETE /api/v1/stages/{target}/freeze thaws it",
                {
                    "reason": freeze.reason,
                    "by": freeze.by,
                    "until": freeze.until.isoformat() if freeze.until else None,
                },
            )
    for window in windows:
        occurrence = window.occurrence_at(now)
        if occurrence is not None:
            start, end = occurrence
            return GateResult(
                "freeze",
                "freeze",
                FAILED,
                f"{target} is in the freeze window {window.name} until {end.isoformat()} "
                f"({window.cron}, {window.timezone})",
                {"window": window.name, "start": start.isoformat(), "end": end.isoformat()},
            )
    return GateResult("freeze", "freeze", PASSED, f"{target} is not frozen")


def hold_gate(app: str, target: str, hold: Hold | None) -> GateResult:
    if hold is None:
        return GateResult("hold", "hold", PASSED, f"{app} is not on hold in {target}")
    return GateResult(
        "hold",
        "hold",
        FAILED,
        f"{app} is on hold in {target} ({hold.reason}, by {hold.by}); a person releases it "
        f"with DELETE /api/v1/apps/{app}/stages/{target}/hold",
        {"reason": hold.reason, "by": hold.by},
    )


def verdict(gates: Sequence[GateResult]) -> Verdict:
    """``apply`` when every gate holds; else ``pending_approval`` or ``blocked``."""
    others = [gate for gate in gates if gate.kind != "approval"]
    if any(not gate.holds for gate in others):
        return Verdict.BLOCKED
    if any(not gate.holds for gate in gates):
        return Verdict.PENDING_APPROVAL
    return Verdict.APPLY
