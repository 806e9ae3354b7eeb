"""What every answer records: its request id, and the request count and latency metrics."""

from __future__ import annotations

import itertools
import os
import secrets

from prometheus_client import Counter, Histogram

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
