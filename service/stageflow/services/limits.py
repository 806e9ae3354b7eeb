"""Request rate limits: a token bucket per client, for OFREP evaluations and failed logins.

Its own module because two use cases share it: ``api.ofrep`` limits each API token's evaluations,
and ``services.tokens`` slows down guessing by limiting failed authentications per address.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket per API token: ``rate`` requests a second, in bursts of up to ``rate``.

    Per process: with several workers, each allows ``rate``. ``rate`` 0 turns it off.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        burst: float | None = None,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, who: str) -> int:
        """The seconds ``who`` must wait before its bucket has a request again (0: none)."""
        if self.rate <= 0:
            return 0
        with self._lock:
            found = self._buckets.get(who)
        if found is None:
            return 0
        tokens = min(self.burst, found[0] + (self.clock() - found[1]) * self.rate)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def acquire(self, who: str) -> int:
        """Take one request from ``who``'s bucket; return 0, or the seconds to wait (>= 1)."""
        if self.rate <= 0:
            return 0
        now = self.clock()
        with self._lock:
            tokens, since = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - since) * self.rate)
            if tokens >= 1:
                self._buckets[who] = (tokens - 1, now)
                return 0
            self._buckets[who] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.rate))
