"""The notifier: sends the event log to the `notify:` targets, at least once, in order.

Each round (every ``STAGEFLOW_NOTIFY_INTERVAL`` in every worker and replica):

1. **Enqueue**: one process at a time (a database lock) reads the events after the notify cursor,
   writes a delivery for each target that wants one, and moves the cursor, in one transaction.
2. **Deliver**: every target's oldest pending delivery that is due is claimed (an update that
   only one process wins), sent, and settled: delivered, or retried later with exponential
   backoff, or failed after ``STAGEFLOW_NOTIFY_MAX_ATTEMPTS``. A target's later events wait
   behind its earlier ones, so a receiver sees them in order; a claim that outlives its holder
   (a crash mid-send) lapses and the delivery is sent again (at least once: receivers tolerate
   duplicates by the event id in every message).

Nothing here runs on a request: a write only adds its event rows, in its own transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stageflow.domain.events import Event
from stageflow.domain.notify import (
    DELIVERED,
    FAILED,
    PENDING,
    Delivery,
    DeliveryFailed,
    NotifyTarget,
    backoff,
    link_of,
)
from stageflow.services import replicas
from stageflow.services.context import Stageflow
from stageflow.services.ports import NotificationSender, UnitOfWork
from stageflow.services.state import snapshot

log = logging.getLogger(__name__)

CURSOR = "notify"
_LOCK = "stageflow-notify-enqueue"
_CLAIM = timedelta(seconds=60)  # longer than a send's timeout
LOOK_BACK = 50  # event ids re-read each round (see _enqueue)


@dataclass(frozen=True)
class Options:
    base_url: str = "http://127.0.0.1:8080"  # links in messages point at this dashboard
    backoff: float = 1.0  # seconds before the second attempt; doubles each time, capped at 5 min
    max_attempts: int = 20
    batch: int = 500


@dataclass
class Round:
    enqueued: int = 0
    delivered: list[int] = field(default_factory=list)  # event ids
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


class Notifier:
    def __init__(
        self, sf: Stageflow, sender: NotificationSender, options: Options | None = None
    ) -> None:
        self.sf = sf
        self.sender = sender
        self.options = options or Options()
        # (cursor, events in the look-back window, targets) of the last round with nothing new
        self._quiet: tuple[int, int, tuple[NotifyTarget, ...]] | None = None

    def round(self) -> Round:
        done = Round()
        targets = {t.name: t for t in snapshot(self.sf).pipeline.notify}
        done.enqueued = self._enqueue(list(targets.values()))
        if targets:
            # a target's next event goes out in the same round once the one before it arrived
            while self._deliver(targets, done):
                pass
        return done

    def _enqueue(self, targets: list[NotifyTarget]) -> int:
        """Write a delivery for each new (event, target) pair and move the cursor past them.

        Read first, without the lock: the usual round finds nothing new and writes nothing.
        """
        if self._quiet_since_last_round(targets):
            return 0
        with self.sf.uow() as uow:
            uow.serialize(_LOCK)
            pairs, cursor = self._unsent(uow, targets)
            now = self.sf.clock()
            for event, target in pairs:
                uow.notifications.add(_pending(event, target, now))
            if cursor:  # another process may have done it meanwhile
                uow.notifications.move_cursor(CURSOR, cursor)
            uow.commit()
        return len(pairs)

    def _quiet_since_last_round(self, targets: list[NotifyTarget]) -> bool:
        """Whether there is nothing to enqueue, read with two numbers when nothing happened.

        Events are only ever added and deliveries never removed: with the same cursor, the
        same number of events in the look-back window and the same targets as a round that
        found nothing, there is still nothing (a late lower id raises the number).
        """
        with self.sf.uow() as uow:
            cursor = uow.notifications.cursor(CURSOR)
            seen = (cursor, uow.events.count_after(_window(cursor)), tuple(targets))
            if seen == self._quiet:
                return True
            quiet = not self._unsent(uow, targets)[1]
        self._quiet = seen if quiet else None
        return quiet

    def _unsent(
        self, uow: UnitOfWork, targets: list[NotifyTarget]
    ) -> tuple[list[tuple[Event, NotifyTarget]], int]:
        """The (event, target) pairs with no delivery yet, and where the cursor goes next (0
        when it stays: nothing to do).

        PostgreSQL may commit a lower event id after a higher one was read: the last
        ``LOOK_BACK`` ids are read again each round, and the deliveries made say what is new.
        """
        cursor = uow.notifications.cursor(CURSOR)
        events = uow.events.after(_window(cursor), limit=self.options.batch)
        made = uow.notifications.made([e.id for e in events if e.id is not None])
        pairs = [
            (event, target)
            for event in events
            for target in targets
            if target.wants(event) and (event.id, target.name) not in made
        ]
        newest = max([cursor, *(e.id or 0 for e in events)])
        return pairs, (newest if pairs or newest > cursor else 0)

    def _deliver(self, targets: dict[str, NotifyTarget], done: Round) -> bool:
        """Send each target's next due delivery; True when any arrived (there may be more)."""
        sf = self.sf
        now = sf.clock()
        me = replicas.me()
        with sf.uow() as uow:
            heads = uow.notifications.heads(now)
            mine = [d for d in heads if uow.notifications.claim(d.id or 0, me, now, now + _CLAIM)]
            events = {e.id: e for e in uow.events.get_many([d.event_id for d in mine])}
            uow.commit()
        progress = False
        for delivery in mine:
            event = events.get(delivery.event_id)
            target = targets.get(delivery.target)
            progress |= self._send(delivery, event, target, done)
        return progress

    def _send(
        self, delivery: Delivery, event: Event | None, target: NotifyTarget | None, done: Round
    ) -> bool:
        error = None
        if target is None:
            error = f"the target {delivery.target} is no longer in stageflow.yaml"
        elif event is None:
            error = f"event {delivery.event_id} is gone"
        else:
            try:
                self.sender.send(target, event, link_of(event, self.options.base_url))
            except DeliveryFailed as exc:
                error = str(exc)
        self._settle(delivery, error, final=target is None or event is None)
        if error is None:
            done.delivered.append(delivery.event_id)
            return True
        (
            done.failed if delivery.attempts + 1 >= self.options.max_attempts else done.retried
        ).append(delivery.event_id)
        return False

    def _settle(self, delivery: Delivery, error: str | None, *, final: bool) -> None:
        now = self.sf.clock()
        attempts = delivery.attempts + 1
        if error is None:
            status = DELIVERED
        elif final or attempts >= self.options.max_attempts:
            status = FAILED
            log.warning(
                "notification %s to %s failed for good: %s", delivery.id, delivery.target, error
            )
        else:
            status = PENDING
        with self.sf.uow() as uow:
            uow.notifications.settle(
                delivery.id or 0,
                status=status,
                attempts=attempts,
                next_at=now + backoff(attempts, self.options.backoff),
                delivered_at=now if error is None else None,
                error=error,
            )
            uow.commit()


def _window(cursor: int) -> int:
    """The event id after which a round reads (see ``Notifier._unsent``)."""
    return max(0, cursor - LOOK_BACK)


def _pending(event: Event, target: NotifyTarget, now: datetime) -> Delivery:
    assert event.id is not None
    return Delivery(
        event_id=event.id,
        target=target.name,
        kind=event.kind,
        app=event.app,
        stage=event.stage,
        status=PENDING,
        attempts=0,
        created_at=now,
        next_at=now,
    )
