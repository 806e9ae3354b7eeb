"""Ports of the systems a promotion asks or tells: Prometheus (metric gates) and the GitOps
controllers' hooks."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from stageflow.domain.gates import (
    MetricReading,
    MetricSeries,
)


class MetricsSource(Protocol):
    configured: bool

    def query(self, promql: str) -> MetricReading: ...

    def query_range(self, promql: str, start: float, end: float, step: float) -> MetricSeries:
        """The first series of a range query over ``[start, end]`` (unix seconds)."""
        ...


class ControllerNotifier(Protocol):
    """Tells the GitOps controllers (Argo CD, Flux) of the stages a commit changed, at once.

    ``pushed`` only queues: the delivery runs off the request path, and a controller that is
    down or slow neither delays nor fails the write that pushed.
    """

    def pushed(self, revision: str, at: datetime) -> None: ...
