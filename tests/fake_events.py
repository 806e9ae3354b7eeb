"""In-memory fakes of the event log, the evidence chain and the notification deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from stageflow.domain.events import Event
from stageflow.domain.evidence import Evidence
from stageflow.domain.hooks import Restore
from stageflow.domain.notify import PENDING, Delivery

if TYPE_CHECKING:
    from tests.fake_ledger import FakeLedger


class FakeEvents:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, event: Event) -> None:
        self.ledger.events.append(replace(event, id=len(self.ledger.events) + 1))

    def after(
        self,
        after_id: int = 0,
        *,
        limit: int = 100,
        kinds: Sequence[str] = (),
        apps: Sequence[str] = (),
    ) -> Sequence[Event]:
        found = [
            e
            for e in self.ledger.events
            if (e.id or 0) > after_id
            and (not kinds or e.kind in kinds)
            and (not apps or e.app in apps)
        ]
        return found[:limit]

    def get_many(self, ids: Sequence[int]) -> Sequence[Event]:
        return [e for e in self.ledger.events if e.id in ids]

    def last_id(self) -> int:
        return len(self.ledger.events)

    def count_after(self, after_id: int) -> int:
        return sum(1 for e in self.ledger.events if (e.id or 0) > after_id)

    def since(
        self, at: datetime, *, kinds: Sequence[str], app: str, stage: str | None = None
    ) -> Sequence[Event]:
        return [
            e
            for e in self.ledger.events
            if e.at >= at and e.kind in kinds and e.app == app and stage in (None, e.stage)
        ]

    def first_with_revision(self, kind: str, revisions: Sequence[str]) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        for e in self.ledger.events:
            if e.kind == kind and e.revision and e.revision in revisions:
                found.setdefault(e.revision, e.at)
        return found


class FakeEvidence:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def tail(self) -> str | None:
        return self.ledger.evidence[-1].digest if self.ledger.evidence else None

    def add(self, evidence: Evidence) -> None:
        self.ledger.evidence.append(replace(evidence, id=len(self.ledger.evidence) + 1))

    def get(self, promotion_id: int) -> Evidence | None:
        return next((e for e in self.ledger.evidence if e.promotion_id == promotion_id), None)

    def chain(self, after_id: int = 0, limit: int = 500) -> Sequence[Evidence]:
        return [e for e in self.ledger.evidence if (e.id or 0) > after_id][:limit]

    def missing(self, statuses: Sequence[str], limit: int) -> Sequence[int]:
        settled = sorted(i for i, p in self.ledger.promotions.items() if p.status in statuses)
        have = {e.promotion_id for e in self.ledger.evidence}
        return [i for i in settled[-limit:] if i not in have]


class FakeNotifications:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def cursor(self, name: str) -> int:
        return self.ledger.cursors.get(name, 0)

    def move_cursor(self, name: str, event_id: int) -> None:
        self.ledger.cursors[name] = event_id

    def add(self, delivery: Delivery) -> None:
        self.ledger.notifications.append(replace(delivery, id=len(self.ledger.notifications) + 1))

    def made(self, event_ids: Sequence[int]) -> set[tuple[int, str]]:
        return {
            (d.event_id, d.target) for d in self.ledger.notifications if d.event_id in event_ids
        }

    def heads(self, now: datetime, *, limit: int = 500) -> Sequence[Delivery]:
        heads: dict[str, Delivery] = {}
        for d in self.ledger.notifications:
            if d.status == PENDING:
                heads.setdefault(d.target, d)
        return [d for d in heads.values() if d.next_at <= now]

    def claim(self, delivery_id: int, holder: str, now: datetime, until: datetime) -> bool:
        return True

    def settle(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_at: datetime,
        delivered_at: datetime | None,
        error: str | None,
    ) -> None:
        items = self.ledger.notifications
        index = next(i for i, d in enumerate(items) if d.id == delivery_id)
        items[index] = replace(
            items[index],
            status=status,
            attempts=attempts,
            next_at=next_at,
            delivered_at=delivered_at,
            last_error=error,
        )

    def list(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]:
        found = [
            d
            for d in reversed(self.ledger.notifications)
            if status in (None, d.status)
            and target in (None, d.target)
            and (before_id is None or (d.id or 0) < before_id)
        ]
        return found[:limit]


class FakeRestores:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    def add(self, restore: Restore) -> None:
        self.ledger.restores[restore.promotion_id] = restore

    def get(self, promotion_id: int) -> Restore | None:
        return self.ledger.restores.get(promotion_id)

    def told(self, revision: str, at: datetime) -> int:
        moved = 0
        for key, found in self.ledger.restores.items():
            if found.revision == revision and found.controller_told_at is None:
                self.ledger.restores[key] = replace(found, controller_told_at=at)
                moved += 1
        return moved

    def healthy(self, app: str, stage: str, content: str, at: datetime) -> int:
        moved = 0
        for key, found in self.ledger.restores.items():
            if (
                (found.app, found.stage, found.content) == (app, stage, content)
                and found.healthy_at is None
                and at >= found.pushed_at
            ):
                self.ledger.restores[key] = replace(found, healthy_at=at)
                moved += 1
        return moved
