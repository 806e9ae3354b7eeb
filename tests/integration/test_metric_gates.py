"""Metric gates against a real Prometheus: pass, fail, no data, unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow import bootstrap
from stageflow.adapters.prometheus import PrometheusHTTP
from stageflow.config import Settings
from stageflow.services import promotions
from stageflow.services.changes import Actor
from stageflow.services.state import snapshot
from tests.builders import third_party_commit
from tests.conftest import git
from tests.integration.conftest import free_port


@pytest.fixture
def gated(settings: Settings, gitops_remote: Path, prometheus: str):
    """The starter pipeline with its metric gates switched on, and a Stageflow that reads them."""
    text = git("--git-dir", str(gitops_remote), "show", "main:stageflow.yaml")
    third_party_commit(
        gitops_remote,
        "stageflow.yaml",
        text.replace("enabled: false", "enabled: true"),
        "switch the metric gates on",
    )
    settings = settings.with_overrides(prometheus_url=prometheus)
    bootstrap.prepare(settings)
    sf, _ = bootstrap.build(settings)
    yield sf
    sf.close()


def _gates(sf, to: str) -> dict[str, dict]:
    snap = snapshot(sf)
    app = snap.pipeline.app("demo")
    target = snap.pipeline.stage(to)
    source = snap.pipeline.previous_stage(to)
    gates, _, _ = promotions.evaluate_gates(sf, snap, app, source, target, requester="alice")
    return {gate.name: gate.to_json() for gate in gates}


def test_passing_error_rate_and_failing_p95(gated):
    gates = _gates(gated, "staging")

    error_rate = gates["metric:error-rate"]
    assert error_rate["status"] == "passed"
    assert error_rate["evidence"]["value"] == pytest.approx(0.005, rel=0.05)
    assert "within <= 0.01" in error_rate["message"]
    latency = gates["metric:p95-latency-ms"]
    assert latency["status"] == "failed"
    assert 800 < latency["evidence"]["value"] < 950
    assert "outside <= 500" in latency["message"]


def test_empty_result_is_inconclusive_and_blocks(gated):
    # staging serves no traffic in the backfilled data
    promotion = promotions.promote(
        gated, "demo", to="production", actor=Actor("alice"), dry_run=True
    )
    gates = {gate.name: gate for gate in promotion.gates}
    assert gates["metric:error-rate"].status == "inconclusive"
    assert "no data" in gates["metric:error-rate"].message
    assert promotion.status == "blocked"


def test_unreachable_prometheus_is_inconclusive(gated):
    gated.metrics = PrometheusHTTP(f"http://127.0.0.1:{free_port()}", timeout=2)

    gates = _gates(gated, "staging")

    assert gates["metric:error-rate"]["status"] == "inconclusive"
    assert "unreachable" in gates["metric:error-rate"]["message"]


def test_no_prometheus_configured_says_what_to_set(gated):
    gated.metrics = PrometheusHTTP(None)

    gates = _gates(gated, "staging")

    assert gates["metric:p95-latency-ms"]["status"] == "inconclusive"
    assert "STAGEFLOW_PROMETHEUS_URL" in gates["metric:p95-latency-ms"]["message"]


def test_a_bad_query_is_inconclusive_with_prometheus_words(gated, prometheus):
    from stageflow.domain.gates import metric_gate
    from stageflow.domain.pipeline import MetricGate

    gate = MetricGate(name="broken", query="sum(rate(x[5m]", max=1)
    result = metric_gate(gate, PrometheusHTTP(prometheus).query(gate.query), True)

    assert result.status == "inconclusive"
    assert "bad_data" in result.message or "parse error" in result.message
