"""Range-query answers (the dashboard's charts) reduced to one series, or to why there is none."""

from __future__ import annotations

from stageflow.adapters.prometheus import PrometheusHTTP, series_from_answer
from stageflow.domain.gates import MetricSeries


def matrix(*series: list[list[object]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": v} for v in series]},
    }


def test_the_first_series_is_kept_and_nan_points_are_dropped() -> None:
    answer = matrix([[10, "0.5"], [25, "NaN"], [40, "1e-3"]], [[10, "9"]])
    assert series_from_answer(answer) == MetricSeries(points=((10.0, 0.5), (40.0, 0.001)))


def test_no_series_is_no_data_and_errors_say_why() -> None:
    assert series_from_answer(matrix()) == MetricSeries()
    failed = series_from_answer({"status": "error", "errorType": "bad_data", "error": "parse"})
    assert failed.error == "Prometheus bad_data: parse"
    assert series_from_answer({"status": "success", "data": {"result": [{}]}}).error


def test_without_a_prometheus_there_is_no_data_and_a_hint() -> None:
    found = PrometheusHTTP(None).query_range("up", 0, 60, 15)
    assert found.points == () and "STAGEFLOW_PROMETHEUS_URL" in (found.error or "")
