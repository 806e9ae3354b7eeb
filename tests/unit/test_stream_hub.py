"""The hub's fan-out rule: one notice per channel of those read together, the newest."""

from __future__ import annotations

from stageflow.domain.events import Refetch
from stageflow.streams.hub import newest_per_channel


def _notice(event_id: int, stage: str, app: str = "demo") -> Refetch:
    return Refetch(event_id, app, stage, f"rev{event_id}", 1_764_590_000 + event_id)


def test_a_burst_of_changes_is_one_notice_per_channel_the_newest() -> None:
    found = [
        _notice(7, "development"),
        _notice(8, "staging"),
        _notice(9, "development"),
        _notice(6, "development"),  # committed late (PostgreSQL): read after a higher id
        _notice(10, "development", app="other"),
    ]
    told = newest_per_channel(found)
    assert sorted((n.app, n.stage, n.id) for n in told) == [
        ("demo", "development", 9),
        ("demo", "staging", 8),
        ("other", "development", 10),
    ]
    assert newest_per_channel([]) == []
