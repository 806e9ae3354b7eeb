"""What every answer records: its request id, and the request count and latency metrics."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from stageflow.api.inputs import client_request_id

log = logging.getLogger("stageflow.http")
OFREP_PREFIX = "/ofrep/"

REQUESTS = Counter(
    "stageflow_http_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "stageflow_http_request_seconds",
    "Time to answer an HTTP request.",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_request_ids = itertools.count(1)
_request_prefix = secrets.token_hex(6)


def _new_request_prefix() -> None:
    global _request_prefix
    _request_prefix = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_request_prefix)  # each gunicorn worker has its own


def request_id() -> str:
    """Return an id unique across processes and restarts: a random prefix per process + a count.

    Not a UUID per request: reading the kernel's random source releases the GIL, and under load
    the thread then waits its turn to get it back — reads paid for that in their p99.
    """
    return f"{_request_prefix}-{next(_request_ids):x}"


def answer_request_id(given: str | None) -> str:
    """The id an answer carries: the client's ``X-Request-Id`` when usable, else a new one."""
    return client_request_id(given) or request_id()


@dataclass(frozen=True)
class Answered:
    """One answer as the metrics and the request log see it (Flask's or the fast path's)."""

    method: str
    endpoint: str  # the Flask rule, "unmatched" when none routed the request
    path: str
    status: int
    request_id: str | None
    seconds: float
    actor: str | None


def record(answered: Answered) -> None:
    """Count the answer, time it, and log it as loudly as ``log_level`` says."""
    count, latency = _series(answered.method, answered.endpoint, answered.status)
    count.inc()
    latency.observe(answered.seconds)
    level = log_level(answered.method, answered.path, answered.status)
    if level is not None and log.isEnabledFor(level):
        log.log(
            level,
            "%s %s %s",
            answered.method,
            answered.path,
            answered.status,
            extra={
                "request_id": answered.request_id,
                "status": answered.status,
                "seconds": round(answered.seconds, 4),
                "actor": answered.actor,
            },
        )


def log_level(method: str, path: str, status: int) -> int | None:
    """Errors and writes are logged at INFO; successful reads are not logged.

    Evaluations are reads sent as POST (the context is the body), at read rates: an INFO line
    each would cost a sixth of their time, mostly waiting on the handler, so they go at DEBUG.
    """
    if status >= 400:
        return logging.INFO
    if method == "GET":
        return None
    if method == "POST" and path.startswith(OFREP_PREFIX):
        return logging.DEBUG
    return logging.INFO


@functools.lru_cache(maxsize=4096)
def _series(method: str, endpoint: str, status: int) -> tuple[Any, Any]:
    """The metric children of a label set, looked up once (``labels`` takes a lock each call)."""
    return REQUESTS.labels(method, endpoint, status), LATENCY.labels(method, endpoint)
