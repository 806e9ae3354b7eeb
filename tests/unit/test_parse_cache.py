"""The memos: typed families of cached values, bounded together by the estimated weight of what
they hold, not only by a count."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from stageflow.services.context import SMALL_ENTRY, ParseCache
from stageflow.services.memos import Memo, MemoBudget


def one_memo(**bounds: int) -> Memo[str, str]:
    return Memo("test", MemoBudget(**bounds))


def test_entries_go_least_recently_used_first_once_the_weights_pass_the_bound():
    memo = one_memo(size=100, max_weight=300)
    memo.put("a", "A", 100)
    memo.put("b", "B", 100)
    memo.put("c", "C", 100)
    assert memo.get("a", lambda: "rebuilt") == "A"  # a is now the most recently used

    memo.put("d", "D", 100)

    assert memo.peek("b") is None
    assert [memo.peek(key) for key in "acd"] == ["A", "C", "D"]
    assert memo.budget.weight == 300 and len(memo.budget) == 3 and len(memo) == 3


def test_a_built_entry_is_held_with_the_weight_its_builder_gives():
    memo = one_memo(max_weight=1000)
    built = []

    def build() -> tuple[str, int]:
        built.append(1)
        return "value", 600

    assert memo.get_weighed("k", build) == "value"
    assert memo.get_weighed("k", build) == "value"
    assert built == [1]
    assert memo.budget.weight == 600  # held with the weight build gave, once
    memo.get_weighed("other", lambda: ("other", 600))
    assert memo.peek("k") is None and memo.budget.weight == 600


def test_replacing_an_entry_replaces_its_weight():
    memo = one_memo(max_weight=1000)
    memo.put("k", "1", 700)
    memo.put("k", "2", 100)
    assert memo.budget.weight == 100 and memo.peek("k") == "2"


def test_one_entry_heavier_than_the_bound_is_still_held_alone():
    # Dropping it would parse the same large document again on every request.
    memo = one_memo(max_weight=100)
    memo.put("small", "1")
    memo.put("huge", "2", 500)
    assert memo.peek("huge") == "2" and memo.peek("small") is None
    assert len(memo.budget) == 1


def test_the_count_still_bounds_small_entries():
    memo: Memo[int, int] = Memo("numbers", budget := MemoBudget(size=3))
    for key in range(5):
        memo.put(key, key)
    assert len(budget) == 3 and budget.weight == 3 * SMALL_ENTRY
    assert memo.peek(0) is None and memo.peek(4) == 4


def test_memos_share_one_budget_and_one_least_recently_used_order():
    budget = MemoBudget(size=100, max_weight=300)
    documents: Memo[str, str] = Memo("documents", budget)
    proofs: Memo[tuple[str, int], bool] = Memo("proofs", budget)
    proofs.put(("overlay", 1), True, 100)
    documents.put("old", "OLD", 100)
    documents.put("new", "NEW", 100)
    assert proofs.get(("overlay", 1), lambda: False) is True  # used again: now the newest

    documents.put("newest", "NEWEST", 100)  # over the bound: the oldest of all goes

    assert documents.peek("old") is None
    assert proofs.peek(("overlay", 1)) is True
    assert documents.peek("new") == "NEW" and documents.peek("newest") == "NEWEST"
    assert budget.weight == 300 and len(budget) == 3
    assert (len(documents), len(proofs)) == (2, 1)


def test_equal_keys_in_two_families_are_two_entries():
    # A blob id names a flag document in one family and an image list in another; a key of one
    # never answers for the other.
    cache = ParseCache()
    cache.images.put("abc123", [])
    assert cache.flags.peek("abc123") is None
    assert cache.flags.get("abc123", lambda: "parsed") == "parsed"
    assert cache.images.peek("abc123") == []
    assert len(cache) == 2


def test_peek_does_not_count_as_a_use():
    memo = one_memo(size=2)
    memo.put("a", "A")
    memo.put("b", "B")
    assert memo.peek("a") == "A"
    memo.put("c", "C")
    assert memo.peek("a") is None and memo.peek("b") == "B"


def test_a_builder_that_declines_leaves_nothing_held():
    memo = one_memo(size=2)
    assert memo.get_if_built("a", lambda: None) is None
    assert memo.peek("a") is None  # built again next time: the key may be readable then
    assert memo.get_if_built("a", lambda: "made") == "made"
    assert memo.get_if_built("a", lambda: "not asked") == "made"


def test_the_type_checker_sees_each_callers_key_and_value(tmp_path: Path):
    # What the memos are for: a key or value of the wrong family is an error before it runs.
    caller = tmp_path / "caller.py"
    caller.write_text(
        textwrap.dedent(
            """
            from stageflow.services.context import ParseCache

            def read(cache: ParseCache) -> None:
                cache.flags.get(("flags", "abc123"), lambda: None)
                cache.matrices.put("abc123", {})
                text: str = cache.app_state_json.get(("tag", "demo"), lambda: b"{}")
            """
        )
    )
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-incremental",
            "--ignore-missing-imports",
            str(caller),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert any("caller.py:5:" in line and '"get" of "Memo"' in line for line in errors), errors
    assert any("caller.py:6:" in line and '"put" of "Memo"' in line for line in errors), errors
    assert any("caller.py:7:" in line for line in errors), errors
