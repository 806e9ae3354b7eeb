"""Order statistics over timing samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) with linear interpolation, as numpy does."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(samples: Sequence[float]) -> dict[str, Any]:
    """Median, p95, p99, min and max of samples given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in samples]
    return {
        "n": len(ms),
        "median": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "min": min(ms) if ms else math.nan,
        "max": max(ms) if ms else math.nan,
    }
