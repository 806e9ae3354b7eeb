"""What every use case is handed: the ports, built once by bootstrap, plus parse caches."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from stageflow.services.ports import (
    Codecs,
    ControllerNotifier,
    GitRepo,
    History,
    MetricsSource,
    Renderer,
    UnitOfWork,
)

V = TypeVar("V")


def utcnow() -> datetime:
    return datetime.now(UTC)


# What one byte of JSON source takes once parsed into Python objects (dicts, strings, frozen
# dataclasses): measured about 4x for a 5,000-flag flagd document, and 4.7x for flagd's evaluator.
PARSED_BYTES_PER_SOURCE_BYTE = 5
# The weight of an entry whose size nobody estimated: a small value (a flag, a proof, a tree id).
SMALL_ENTRY = 1024


class ParseCache:
    """Parsed documents keyed by what identifies their content (a blob SHA, a revision).

    Git objects never change, so an entry never goes stale; the bounds only cap memory. Entries
    are weighed (an estimate of the bytes they hold, see ``get_weighed``) and the least recently
    used go once the weights add up to more than ``max_weight`` or there are more than ``size``
    of them. A count alone is no bound: a 5,000-flag document parses into ~5 MiB, and a write
    makes a new one each time.
    """

    def __init__(self, size: int = 512, max_weight: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.max_weight = max_weight
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    @property
    def weight(self) -> int:
        """Return the summed weight of the entries held now."""
        return self._weight

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: Any, value: Any, weight: int = SMALL_ENTRY) -> None:
        with self._lock:
            self._store(key, value, weight)

    def get(self, key: Any, build: Callable[[], V]) -> V:
        """Return the entry under ``key``, built (and held with a small weight) when missing."""
        return self.get_weighed(key, lambda: (build(), SMALL_ENTRY))

    def get_weighed(self, key: Any, build: Callable[[], tuple[V, int]]) -> V:
        """Return the entry under ``key``; ``build`` returns the value and its weight."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]  # type: ignore[no-any-return]
        value, weight = build()
        with self._lock:
            self._store(key, value, weight)
        return value

    def _store(self, key: Any, value: Any, weight: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._weight -= old[1]
        self._items[key] = (value, weight)
        self._weight += weight
        # The newest entry stays even when it alone outweighs the bound: dropping it would parse
        # the same large document again on every request.
        while len(self._items) > 1 and (
            self._weight > self.max_weight or len(self._items) > self.size
        ):
            _, (_, dropped) = self._items.popitem(last=False)
            self._weight -= dropped


class Outage:
    """Whether the ledger just failed: callers that can do without it skip it meanwhile.

    After a failure, ``skip`` answers True for ``retry_after`` seconds; then it lets one caller
    try again (the others keep skipping). The settler probes the ledger far more often in the
    background and calls ``recovered`` as soon as it answers, so requests do not wait for a
    frozen database's timeout again and again, and the ledger is the truth again at once.
    """

    def __init__(self, retry_after: float = 30.0) -> None:
        self.retry_after = retry_after
        self._until = 0.0
        self._lock = threading.Lock()

    def skip(self) -> bool:
        if not self._until:
            return False
        with self._lock:
            now = time.monotonic()
            if now < self._until:
                return True
            self._until = now + self.retry_after  # this caller probes; the others skip
            return False

    @property
    def known(self) -> bool:
        """True while the last failure has not been followed by a success."""
        return bool(self._until)

    def failed(self) -> None:
        with self._lock:
            self._until = time.monotonic() + self.retry_after

    def recovered(self) -> None:
        self._until = 0.0


class InFlight:
    """What this process is working on now: promotions being applied, requests being served.

    The settler of this process leaves these alone; anything of this process that is *not*
    here (a request that died, a ledger write that failed after the push) it settles.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        with self._lock:
            self._counts[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[key] -= 1
                if not self._counts[key]:
                    del self._counts[key]

    def __contains__(self, key: object) -> bool:
        return key in self._counts


@dataclass
class Stageflow:
    """The composition the use cases run against (see ``bootstrap.build``)."""

    repo: GitRepo
    renderer: Renderer
    codecs: Codecs
    uow: Callable[[], UnitOfWork]
    metrics: MetricsSource | None = None
    clock: Callable[[], datetime] = utcnow
    cache: ParseCache = field(default_factory=ParseCache)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Authenticated tokens by secret hash (services.tokens); per instance, because a token's
    # secret means a different token in another database.
    token_cache: dict[str, Any] = field(default_factory=dict)
    # Failed authentications per client address (services.tokens); None: not limited.
    auth_failures: Any = None
    # While the ledger is unreachable, tokens verified within this many seconds still
    # authenticate (services.tokens); the outage state says when to ask the ledger again.
    token_outage_grace: float = 0.0
    ledger_outage: Outage = field(default_factory=Outage)
    # Tokens any process used lately, by secret hash, with when this process read them: what
    # it may serve during an outage even if it never saw them itself (services.tokens).
    token_fallback: dict[str, Any] = field(default_factory=dict)
    # Stageflow's commits with their trailers (the settler's truth); None: nothing to settle.
    history: History | None = None
    in_flight: InFlight = field(default_factory=InFlight)
    # Seconds after its last heartbeat that another host's process counts as gone.
    heartbeat_lease: float = 15.0
    # Seconds the settler leaves a new commit to its writer, whose ledger write follows the
    # push (bounded by the database timeout) before recording it from the trailers itself.
    record_grace: float = 6.0
    # Tells the stages' Argo CD / Flux of each pushed commit (services.hooks); None: nobody.
    controller_hooks: ControllerNotifier | None = None

    def close(self) -> None:
        """Release what the adapters hold (database pool, clone slot)."""
        for close in reversed(self.closers):
            close()
        self.closers.clear()
