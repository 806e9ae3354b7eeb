"""Gate verdicts: pure functions, fail closed."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stageflow.adapters.prometheus import reading_from_answer
from stageflow.domain.gates import (
    CheckResult,
    Deployment,
    Freeze,
    GateResult,
    MetricReading,
    approvals_gate,
    check_gate,
    deployment_gate,
    freeze_gate,
    metric_gate,
    running_since,
    soak_gate,
    verdict,
)
from stageflow.domain.pipeline import FreezeWindow, MetricGate

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"


def deployed(content: str, health: str = "healthy", minutes_ago: int = 0) -> Deployment:
    return Deployment(
        revision=content * 10,
        content=content,
        health=health,
        at=NOW - timedelta(minutes=minutes_ago),
    )


def test_deployment_gate_needs_the_latest_report_to_be_the_current_state():
    assert deployment_gate("dev", "a", []).status == "pending"
    assert deployment_gate("dev", "a", [deployed("a")]).status == "passed"
    assert deployment_gate("dev", "a", [deployed("a", "progressing")]).status == "pending"
    assert deployment_gate("dev", "a", [deployed("a", "degraded")]).status == "failed"
    # the stage went back to an older state after running this one
    older_now = deployment_gate("dev", "a", [deployed("b"), deployed("a")])
    assert older_now.status == "pending" and "older state" in older_now.message


def test_latest_check_per_kind_for_the_current_state_wins():
    def check(status: str, content: str = "a", kind: str = "smoke") -> CheckResult:
        return CheckResult(kind=kind, revision="f" * 40, content=content, status=status, at=NOW)

    assert check_gate("dev", "smoke", "a", []).status == "pending"
    assert check_gate("dev", "smoke", "a", [check("passed", "b")]).status == "pending"
    assert check_gate("dev", "smoke", "a", [check("failed"), check("passed")]).status == "failed"
    assert check_gate("dev", "smoke", "a", [check("passed"), check("failed")]).status == "passed"
    assert check_gate("dev", "smoke", "a", [check("passed", kind="load")]).status == "pending"


def test_soak_counts_from_the_first_healthy_report_of_the_unbroken_run():
    reports = [
        deployed("a", minutes_ago=1),
        deployed("a", minutes_ago=8),
        deployed("b", minutes_ago=30),
    ]
    assert running_since("a", reports) == NOW - timedelta(minutes=8)
    assert soak_gate("stg", timedelta(minutes=5), "a", reports, NOW).status == "passed"
    waiting = soak_gate("stg", timedelta(minutes=10), "a", reports, NOW)
    assert waiting.status == "pending" and "to go" in waiting.message
    degraded_between = [
        deployed("a", minutes_ago=1),
        deployed("a", "degraded", 5),
        deployed("a", minutes_ago=8),
    ]
    assert running_since("a", degraded_between) == NOW - timedelta(minutes=1)
    assert soak_gate("stg", timedelta(minutes=1), "a", [], NOW).status == "pending"


@pytest.mark.parametrize(
    ("reading", "status", "words"),
    [
        (MetricReading(value=0.004, series=1), "passed", "within"),
        (MetricReading(value=0.02, series=1), "failed", "outside"),
        (MetricReading(series=0), "inconclusive", "no data"),
        (MetricReading(value=1.0, series=3), "inconclusive", "3 series"),
        (MetricReading(value=math.nan, series=1), "inconclusive", "nan"),
        (MetricReading(error="timeout"), "inconclusive", "timeout"),
    ],
)
def test_metric_verdicts_fail_closed(reading, status, words):
    gate = MetricGate(name="error-rate", query="q", max=0.01)
    result = metric_gate(gate, reading, configured=True)
    assert result.status == status
    assert words in result.message
    assert metric_gate(gate, None, configured=False).status == "inconclusive"


def test_min_bound():
    gate = MetricGate(name="throughput", query="q", min=10)
    assert metric_gate(gate, MetricReading(value=5, series=1), True).status == "failed"
    assert metric_gate(gate, MetricReading(value=50, series=1), True).status == "passed"


@pytest.mark.parametrize(
    ("example", "value", "series", "error"),
    [
        ("prometheus-vector.json", "number", 1, None),
        ("prometheus-scalar.json", "number", 1, None),
        ("prometheus-empty.json", None, 0, None),
        ("prometheus-vector-nan.json", "nan", 1, None),
        ("prometheus-matrix.json", None, 0, "range vector"),
        ("prometheus-error.json", None, 0, "bad_data"),
        ("prometheus-error-timeout.json", None, 0, "timeout"),
        ("prometheus-error-execution.json", None, 0, "execution"),
    ],
)
def test_prometheus_answers_as_the_api_documents_them(example, value, series, error):
    reading = reading_from_answer(json.loads((DATA / example).read_text()))
    if error:
        assert reading.error is not None and error in reading.error
        return
    assert reading.error is None
    assert reading.series >= series
    if value == "nan":
        assert reading.value is not None and math.isnan(reading.value)
    elif value == "number":
        assert isinstance(reading.value, float) and not math.isnan(reading.value)


def test_approvals_never_count_the_requester():
    assert approvals_gate("prod", 1, ["alice"], "alice").status == "pending"
    assert approvals_gate("prod", 1, ["alice", "bob"], "alice").status == "passed"
    assert approvals_gate("prod", 2, ["bob", "bob"], "alice").status == "pending"


def test_freeze_by_hand_and_by_window():
    assert freeze_gate("prod", [], [], NOW).status == "passed"
    manual = Freeze(stage="prod", reason="release week", by="ops")
    assert freeze_gate("prod", [manual], [], NOW).status == "failed"
    expired = Freeze(stage="prod", reason="x", by="ops", until=NOW - timedelta(hours=1))
    assert freeze_gate("prod", [expired], [], NOW).status == "passed"
    friday = FreezeWindow(
        name="weekend", cron="0 18 * * 5", duration=timedelta(hours=62), timezone="UTC"
    )
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert freeze_gate("prod", [], [friday], saturday).status == "failed"
    assert freeze_gate("prod", [], [friday], NOW).status == "passed"  # a Friday noon


def test_verdict():
    ok = GateResult("a", "check", "passed", "")
    waiting_approval = GateResult("approvals", "approval", "pending", "")
    blocked = GateResult("b", "metric", "inconclusive", "")
    assert verdict([ok]) == "apply"
    assert verdict([ok, waiting_approval]) == "pending_approval"
    assert verdict([blocked, waiting_approval]) == "blocked"
