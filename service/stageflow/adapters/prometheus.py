"""Metric gates read Prometheus over its HTTP API (instant queries)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from stageflow.domain.gates import MetricReading


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
        body = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=body,
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
                return MetricReading(error=f"Prometheus answered HTTP {exc.code}")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return MetricReading(error=f"Prometheus at {self.url} is unreachable ({reason})")
        except ValueError:
            return MetricReading(error="Prometheus answered something that is not JSON")
        return reading_from_answer(answer)


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


def _number(text: object) -> float:
    value = float(str(text))
    return value if not math.isnan(value) else math.nan
