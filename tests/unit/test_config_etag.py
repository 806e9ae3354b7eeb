"""An event stream's flagConfigEtag asks for a fresh look at the remote, at most once a second."""

from __future__ import annotations

import pytest

from stageflow.services import evaluation

HEAD = "a" * 40


@pytest.fixture(autouse=True)
def _long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "_last_fresh", [0.0])


def test_a_newer_revision_looks_once_then_waits_a_second(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]
    monkeypatch.setattr(evaluation.time, "monotonic", lambda: clock[0])
    assert evaluation._refresh_for("b" * 40, HEAD)
    assert not evaluation._refresh_for("c" * 40, HEAD)  # a client naming others each time
    clock[0] += 1.5
    assert evaluation._refresh_for("c" * 40, HEAD)


@pytest.mark.parametrize("etag", [HEAD, "", "b" * 39, "not-a-revision" + "0" * 26, "B" * 40])
def test_the_cached_head_or_anything_but_a_revision_looks_at_nothing(etag: str):
    assert not evaluation._refresh_for(etag, HEAD)
