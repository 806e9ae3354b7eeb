"""Metric gates read Prometheus over its HTTP API (instant queries; range queries for charts)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from stageflow.domain.gates import MetricReading, MetricSeries


class PrometheusHTTP:
    """The `MetricsSource` port over Prometheus's `/api/v1/query`."""

    def __init__(self, url: str | None, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout

    @property
    def configured(self) -> bool:
        return self.url is not None

    def query(self, promql: str) -> MetricReading:
        """Run one instant query and reduce the answer to a single value (or say why not)."""
        if self.url is None:
            return MetricReading(error="no Prometheus configured; set STAGEFLOW_PROMETHEUS_URL")
        answer = self._post("query", {"query": promql})
        if isinstance(answer, str):
            return MetricReading(error=answer)
        return reading_from_answer(answer)

    def query_range(self, promql: str, start: float, end: float, step: float) -> MetricSeries:
        """Run one range query (the dashboard's charts) and keep its first series."""
        if self.url is None:
            return MetricSeries(error="no Prometheus configured; set STAGEFLOW_PROMETHEUS_URL")
        answer = self._post(
            "query_range", {"query": promql, "start": start, "end": end, "step": step}
        )
        if isinstance(answer, str):
            return MetricSeries(error=answer)
        return series_from_answer(answer)

    def _post(self, endpoint: str, form: dict[str, object]) -> object:
        """POST a query form; return the JSON answer, or a sentence saying why there is none."""
        assert self.url is not None
        request = urllib.request.Request(
            f"{self.url}/api/v1/{endpoint}",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # Prometheus answers bad queries with 400/422 and a JSON error body.
            try:
                answer = json.loads(exc.read())
            except ValueError:
                return f"Prometheus answered HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"Prometheus at {self.url} is unreachable ({reason})"
        except ValueError:
            return "Prometheus answered something that is not JSON"
        return answer


def reading_from_answer(answer: object) -> MetricReading:
    """Turn a `/api/v1/query` JSON answer into a MetricReading."""
    if not isinstance(answer, dict):
        return MetricReading(error="unexpected answer from Prometheus")
    if answer.get("status") != "success":
        kind = answer.get("errorType", "error")
        return MetricReading(error=f"Prometheus {kind}: {answer.get('error', 'unknown error')}")
    data = answer.get("data") or {}
    result_type = data.get("resultType")
    result = data.get("result")
    try:
        if result_type == "scalar":
            return MetricReading(value=_number(result[1]), series=1)
        if result_type == "vector":
            if not result:
                return MetricReading(series=0)
            if len(result) > 1:
                return MetricReading(value=_number(result[0]["value"][1]), series=len(result))
            return MetricReading(value=_number(result[0]["value"][1]), series=1)
        if result_type == "matrix":
            return MetricReading(
                error="the query returns a range vector; use an instant query (drop the [range])"
            )
    except (TypeError, KeyError, IndexError, ValueError):
        return MetricReading(error="unexpected result shape from Prometheus")
    return MetricReading(error=f"unsupported result type {result_type!r}")


def series_from_answer(answer: object) -> MetricSeries:
    """Turn a `/api/v1/query_range` JSON answer into its first series (NaN points dropped)."""
    if not isinstance(answer, dict):
        return MetricSeries(error="unexpected answer from Prometheus")
    if answer.get("status") != "success":
        kind = answer.get("errorType", "error")
        return MetricSeries(error=f"Prometheus {kind}: {answer.get('error', 'unknown error')}")
    result = (answer.get("data") or {}).get("result")
    try:
        if not result:
            return MetricSeries()
        points = tuple(
            (float(at), value)
            for at, text in result[0]["values"]
            if not math.isnan(value := _number(text))
        )
    except (TypeError, KeyError, IndexError, ValueError):
        return MetricSeries(error="unexpected result shape from Prometheus")
    return MetricSeries(points=points)


def _number(text: object) -> float:
    value = float(str(text))
    return value if not math.isnan(value) else math.nan
