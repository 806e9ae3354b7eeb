"""Typed memos: one named family of cached values each, all sharing one bound and one LRU order.

A read parses each Git blob once and builds each view once per revision; what it keeps is held
here. Each family (flag documents by blob id, flag matrices by revision and app, ...) is a
``Memo[K, V]``: its keys and values are typed, so the type checker sees every caller, and two
families never meet even when their keys are equal (a blob id names a flag document in one and an
image list in the other). All memos of one Stageflow draw on one ``MemoBudget``: the least
recently used entry of any of them goes first once the summed weights or the count pass its
bounds, as it would in a single cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["SMALL_ENTRY", "Memo", "MemoBudget"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# The weight of an entry whose size nobody estimated: a small value (a flag, a proof, a tree id).
SMALL_ENTRY = 1024


class _Entry(Generic[V]):
    """A held value with its weight and when it was last used (a tick of its budget's clock)."""

    __slots__ = ("used", "value", "weight")

    def __init__(self, value: V, weight: int, used: int) -> None:
        self.value = value
        self.weight = weight
        self.used = used


class MemoBudget:
    """The bounds the memos of one Stageflow share: at most ``size`` entries, ``max_weight``.

    Git objects never change, so an entry never goes stale; the bounds only cap memory. Entries
    are weighed (an estimate of the bytes they hold) and the least recently used go once the
    weights add up to more than ``max_weight`` or there are more than ``size`` of them. A count
    alone is no bound: a 5,000-flag document parses into ~5 MiB, and a write makes a new one each
    time.

    Each memo keeps its own entries in use order; the budget's clock stamps every use, so the
    globally oldest entry is the oldest first entry among the memos (a dozen of them to compare,
    only when something must go).
    """

    def __init__(self, size: int = 512, max_weight: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.max_weight = max_weight
        self._memos: list[Memo[Any, Any]] = []
        self._count = 0
        self._weight = 0
        self._clock = 0
        self._lock = threading.Lock()

    @property
    def weight(self) -> int:
        """Return the summed weight of the entries held now."""
        return self._weight

    def __len__(self) -> int:
        return self._count

    def _join(self, memo: Memo[Any, Any]) -> None:
        with self._lock:
            self._memos.append(memo)

    def _tick(self) -> int:
        # Called under the lock.
        self._clock += 1
        return self._clock

    def _store(self, memo: Memo[K, V], key: K, value: V, weight: int) -> None:
        with self._lock:
            old = memo._items.pop(key, None)  # the budget keeps its memos' books
            if old is not None:
                self._weight -= old.weight
                self._count -= 1
            memo._items[key] = _Entry(value, weight, self._tick())
            self._weight += weight
            self._count += 1
            # The newest entry stays even when it alone outweighs the bound: dropping it would
            # parse the same large document again on every request.
            while self._count > 1 and (self._weight > self.max_weight or self._count > self.size):
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        # Called under the lock, with at least two entries held.
        oldest: OrderedDict[Any, _Entry[Any]] | None = None
        oldest_used = 0
        for memo in self._memos:
            items = memo._items
            if items:
                used = next(iter(items.values())).used
                if oldest is None or used < oldest_used:
                    oldest, oldest_used = items, used
        if oldest is not None:
            _, entry = oldest.popitem(last=False)
            self._weight -= entry.weight
            self._count -= 1


class Memo(Generic[K, V]):
    """One named family of values, held by key within a shared ``MemoBudget``.

    ``get`` and ``get_weighed`` build a missing value outside the lock (parsing a document takes
    milliseconds; two threads may then both build it, and the second store wins); a held value
    counts as used again. ``peek`` only looks.
    """

    __slots__ = ("_items", "budget", "name")

    def __init__(self, name: str, budget: MemoBudget) -> None:
        self.name = name
        self.budget = budget
        self._items: OrderedDict[K, _Entry[V]] = OrderedDict()
        budget._join(self)

    def __repr__(self) -> str:
        return f"Memo({self.name!r}, {len(self._items)} entries)"

    def __len__(self) -> int:
        return len(self._items)

    def _hit(self, key: K) -> _Entry[V] | None:
        budget = self.budget
        with budget._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                entry.used = budget._tick()
            return entry

    def peek(self, key: K) -> V | None:
        """Return the value under ``key`` without counting it as used, or None."""
        with self.budget._lock:
            entry = self._items.get(key)
        return None if entry is None else entry.value

    def put(self, key: K, value: V, weight: int = SMALL_ENTRY) -> None:
        """Hold ``value`` under ``key`` with this weight (an estimate of its bytes)."""
        self.budget._store(self, key, value, weight)

    def get(self, key: K, build: Callable[[], V]) -> V:
        """Return the value under ``key``, built (and held with a small weight) when missing."""
        entry = self._hit(key)
        if entry is not None:
            return entry.value
        value = build()
        self.budget._store(self, key, value, SMALL_ENTRY)
        return value

    def get_if_built(self, key: K, build: Callable[[], V | None]) -> V | None:
        """Like ``get``, but ``build`` may decline (None): nothing is held then, and the next
        call builds again (a value that depends on something unavailable for now)."""
        entry = self._hit(key)
        if entry is not None:
            return entry.value
        value = build()
        if value is not None:
            self.budget._store(self, key, value, SMALL_ENTRY)
        return value

    def get_weighed(self, key: K, build: Callable[[], tuple[V, int]]) -> V:
        """Return the value under ``key``; ``build`` returns a missing value and its weight."""
        entry = self._hit(key)
        if entry is not None:
            return entry.value
        value, weight = build()
        self.budget._store(self, key, value, weight)
        return value
