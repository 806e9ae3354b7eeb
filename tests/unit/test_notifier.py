"""The notifier over in-memory fakes: what is queued, in which order, retried, given up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stageflow.domain.events import CHECK_FAILED, ROLLBACK, Event
from stageflow.domain.notify import DeliveryFailed, NotifyTarget
from stageflow.services.notifier import Notifier, Options
from tests.fake_events import FakeEvents
from tests.fakes import FakeWorld, fake_stageflow, seed_files


class Sender:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.down = False

    def send(self, target: NotifyTarget, event: Event, link: str) -> None:
        if self.down:
            raise DeliveryFailed("the receiver answered HTTP 503")
        self.sent.append(event.id or 0)


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    text = (
        "notify:\n  - {name: team, kind: slack, url_env: TEAM_URL, on: [check_failed, rollback]}\n"
    )
    files = seed_files()
    files["stageflow.yaml"] = files["stageflow.yaml"].replace("stages:\n", text + "stages:\n", 1)
    return fake_stageflow(tmp_path, files)


def _event(world: FakeWorld, kind: str, stage: str = "production") -> None:
    with world.sf.uow() as uow:
        uow.events.add(Event(kind=kind, at=world.clock.now, actor="ci", app="demo", stage=stage))
        uow.commit()


def test_events_go_out_once_each_in_order_and_only_the_kinds_asked_for(world: FakeWorld):
    sender = Sender()
    notifier = Notifier(world.sf, sender, Options(backoff=0.01))
    _event(world, CHECK_FAILED)
    _event(world, "promotion_applied")  # not asked for
    _event(world, ROLLBACK)
    notifier.round()
    notifier.round()
    assert sender.sent == [1, 3]


def test_a_receiver_down_holds_later_events_behind_the_first_then_all_arrive(world: FakeWorld):
    sender = Sender()
    sender.down = True
    notifier = Notifier(world.sf, sender, Options(backoff=0.01))
    _event(world, CHECK_FAILED)
    _event(world, ROLLBACK)
    notifier.round()
    world.clock.now += timedelta(seconds=1)
    notifier.round()
    attempts = sorted((d.event_id, d.attempts) for d in world.ledger.notifications)
    assert attempts == [(1, 2), (2, 0)]
    sender.down = False
    world.clock.now += timedelta(seconds=1)
    notifier.round()
    assert sender.sent == [1, 2]


def test_an_event_committed_late_with_a_lower_id_is_still_sent_once(world: FakeWorld):
    sender = Sender()
    notifier = Notifier(world.sf, sender, Options(backoff=0.01))
    _event(world, CHECK_FAILED)
    _event(world, ROLLBACK)
    late = world.ledger.events.pop(0)  # id 1 commits after id 2 was read (PostgreSQL can)
    notifier.round()
    world.ledger.events.insert(0, late)
    notifier.round()
    notifier.round()
    assert sorted(sender.sent) == [1, 2]
    assert len(world.ledger.notifications) == 2


def test_after_the_last_attempt_it_is_failed_and_the_next_goes_out(world: FakeWorld):
    sender = Sender()
    sender.down = True
    notifier = Notifier(world.sf, sender, Options(backoff=0.01, max_attempts=2))
    _event(world, CHECK_FAILED)
    for _ in range(3):
        notifier.round()
        world.clock.now += timedelta(seconds=1)
    (first,) = world.ledger.notifications
    assert (first.status, first.attempts) == ("failed", 2)
    assert first.last_error == "the receiver answered HTTP 503"
    sender.down = False
    _event(world, ROLLBACK)
    notifier.round()
    assert sender.sent == [2]


def test_a_round_after_a_quiet_one_reads_no_events_until_one_is_added(
    world: FakeWorld, monkeypatch: pytest.MonkeyPatch
):
    sender = Sender()
    notifier = Notifier(world.sf, sender, Options(backoff=0.01))
    _event(world, CHECK_FAILED)
    _event(world, ROLLBACK)
    late = world.ledger.events.pop(0)
    notifier.round()  # sends 2, and the next round finds nothing: quiet from there on
    notifier.round()
    reads: list[int] = []
    real_after = FakeEvents.after

    def after(self: FakeEvents, after_id: int = 0, **query: Any) -> Sequence[Event]:
        reads.append(after_id)
        return real_after(self, after_id, **query)

    monkeypatch.setattr(FakeEvents, "after", after)
    notifier.round()
    notifier.round()
    assert reads == []
    world.ledger.events.insert(0, late)  # a lower id committed late: read again, sent once
    notifier.round()
    assert reads and sender.sent == [2, 1]
    reads.clear()
    notifier.round()
    assert reads == [0]  # the round that finds nothing new, then quiet again
    notifier.round()
    assert reads == [0]
    reads.clear()
    _event(world, "promotion_applied")  # not asked for, but new: the cursor moves past it
    notifier.round()
    assert len(reads) == 2  # the look without the lock, then the one holding it
    notifier.round()
    notifier.round()
    assert len(reads) == 3 and sender.sent == [2, 1]  # one round finds nothing, then quiet
    assert world.ledger.cursors["notify"] == 3
