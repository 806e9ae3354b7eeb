"""What the policy step keeps between writes, in a bounded memo of its own per Stageflow.

Renders (text and parsed objects), verdicts, compiled admission policies and the kustomization
edits of played promotions (``promotion_plans``: the apply writes what its gates' play wrote)
are held here, not in ``Stageflow.cache``: they are larger and shorter-lived than the parses the
reads share, and a budget of their own keeps a burst of promotions from pushing the reads'
parses out (and the other way round). Values are keyed by what they are computed from, so they
never go stale; the bound only caps memory, least recently used first.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from stageflow.services.context import Stageflow

V = TypeVar("V")

# Enough for the renders and verdicts of a few dozen stages of the starter's size, or of two
# stages with 5,000-flag documents (each render embeds the flag document in its ConfigMap).
MAX_WEIGHT = 32 * 1024 * 1024
SMALL = 1024


class PolicyMemo:
    """A thread-safe LRU of weighed values (``weight``: an estimate of the bytes held)."""

    def __init__(self, max_weight: int = MAX_WEIGHT) -> None:
        self.max_weight = max_weight
        self.weight = 0
        self._held: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def peek(self, key: Hashable) -> Any:
        """Return the value held under ``key`` (None when there is none), as used again."""
        with self._lock:
            if key not in self._held:
                return None
            self._held.move_to_end(key)
            return self._held[key][0]

    def put(self, key: Hashable, value: Any, weight: int = SMALL) -> None:
        """Hold ``value``; the least recently used values go while over the bound."""
        with self._lock:
            if key in self._held:
                self.weight -= self._held.pop(key)[1]
            self._held[key] = (value, weight)
            self.weight += weight
            while self.weight > self.max_weight and len(self._held) > 1:
                _, (_, gone) = self._held.popitem(last=False)
                self.weight -= gone

    def get(self, key: Hashable, build: Callable[[], V], weight: Callable[[V], int]) -> V:
        """Return the value under ``key``, built (outside the lock) and held when missing."""
        found = self.peek(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        value = build()
        self.put(key, value, weight(value))
        return value


_MEMOS: weakref.WeakKeyDictionary[Any, PolicyMemo] = weakref.WeakKeyDictionary()
_MEMOS_LOCK = threading.Lock()


def memo(sf: Stageflow) -> PolicyMemo:
    """Return the policy memo of ``sf`` (one per Stageflow, made on first use).

    Keyed by the Stageflow's parse cache, which lives as long as it does: a Stageflow itself is
    a mutable dataclass and cannot be a key.
    """
    with _MEMOS_LOCK:
        found = _MEMOS.get(sf.cache)
        if found is None:
            found = _MEMOS[sf.cache] = PolicyMemo()
        return found
