"""What every use case is handed: the ports, built once by bootstrap, plus parse caches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from stageflow.services.ports import Codecs, GitRepo, MetricsSource, Renderer, UnitOfWork

V = TypeVar("V")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ParseCache:
    """Parsed documents keyed by what identifies their content (a blob SHA or the text itself).

    Git objects never change, so an entry never goes stale; the bound only caps memory.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: Any) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key: Any, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
        value = build()
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


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

    def close(self) -> None:
        """Release what the adapters hold (database pool, clone slot)."""
        for close in reversed(self.closers):
            close()
        self.closers.clear()
