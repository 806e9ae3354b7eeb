"""The parse cache: bounded by the estimated weight of what it holds, not only by a count."""

from __future__ import annotations

from stageflow.services.context import SMALL_ENTRY, ParseCache


def test_entries_go_least_recently_used_first_once_the_weights_pass_the_bound():
    cache = ParseCache(size=100, max_weight=300)
    cache.put("a", "A", 100)
    cache.put("b", "B", 100)
    cache.put("c", "C", 100)
    assert cache.get("a", lambda: "rebuilt") == "A"  # a is now the most recently used

    cache.put("d", "D", 100)

    assert cache.peek("b") is None
    assert [cache.peek(key) for key in "acd"] == ["A", "C", "D"]
    assert cache.weight == 300 and len(cache) == 3


def test_a_built_entry_is_held_with_the_weight_its_builder_gives():
    cache = ParseCache(max_weight=1000)
    built = []

    def build() -> tuple[str, int]:
        built.append(1)
        return "value", 600

    assert cache.get_weighed("k", build) == "value"
    assert cache.get_weighed("k", build) == "value"
    assert built == [1]
    assert cache.weight == 600  # held with the weight build gave, once
    cache.get_weighed("other", lambda: ("other", 600))
    assert cache.peek("k") is None and cache.weight == 600


def test_replacing_an_entry_replaces_its_weight():
    cache = ParseCache(max_weight=1000)
    cache.put("k", 1, 700)
    cache.put("k", 2, 100)
    assert cache.weight == 100 and cache.peek("k") == 2


def test_one_entry_heavier_than_the_bound_is_still_held_alone():
    # Dropping it would parse the same large document again on every request.
    cache = ParseCache(max_weight=100)
    cache.put("small", 1)
    cache.put("huge", 2, 500)
    assert cache.peek("huge") == 2 and cache.peek("small") is None
    assert len(cache) == 1


def test_the_count_still_bounds_small_entries():
    cache = ParseCache(size=3)
    for key in range(5):
        cache.put(key, key)
    assert len(cache) == 3 and cache.weight == 3 * SMALL_ENTRY
    assert cache.peek(0) is None and cache.peek(4) == 4
