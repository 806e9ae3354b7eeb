"""The event log (outbox) and the evidence chain in the ledger database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from stageflow.adapters.database.records import (
    EventRecord,
    EvidenceRecord,
    NotificationRecord,
    OutboxCursorRecord,
    PromotionRecord,
    _aware,
    _utc,
)
from stageflow.domain.events import Event
from stageflow.domain.evidence import Evidence
from stageflow.domain.notify import PENDING, Delivery


def _event(record: EventRecord) -> Event:
    return Event(
        kind=record.kind,
        at=_aware(record.at),
        actor=record.actor,
        app=record.app,
        stage=record.stage,
        subject=record.subject,
        revision=record.revision,
        data=dict(record.data or {}),
        id=record.id,
    )


class SqlEvents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, event: Event) -> None:
        self.session.add(
            EventRecord(
                at=event.at,
                kind=event.kind,
                actor=event.actor,
                app=event.app,
                stage=event.stage,
                subject=event.subject,
                revision=event.revision,
                data=event.data or None,
            )
        )

    def after(
        self,
        after_id: int = 0,
        *,
        limit: int = 100,
        kinds: Sequence[str] = (),
        apps: Sequence[str] = (),
    ) -> Sequence[Event]:
        """Events with an id above ``after_id``, oldest first."""
        query = select(EventRecord).where(EventRecord.id > after_id)
        if kinds:
            query = query.where(EventRecord.kind.in_(kinds))
        if apps:
            query = query.where(EventRecord.app.in_(apps))
        query = query.order_by(EventRecord.id).limit(limit)
        return [_event(record) for record in self.session.scalars(query)]

    def get_many(self, ids: Sequence[int]) -> Sequence[Event]:
        if not ids:
            return []
        query = select(EventRecord).where(EventRecord.id.in_(ids)).order_by(EventRecord.id)
        return [_event(record) for record in self.session.scalars(query)]

    def last_id(self) -> int:
        return int(self.session.scalar(select(func.max(EventRecord.id))) or 0)

    def count_after(self, after_id: int) -> int:
        query = select(func.count()).select_from(EventRecord).where(EventRecord.id > after_id)
        return int(self.session.scalar(query) or 0)

    def since(
        self, at: datetime, *, kinds: Sequence[str], app: str, stage: str | None = None
    ) -> Sequence[Event]:
        """Events of ``kinds`` for ``app`` (and ``stage``) at or after ``at``, oldest first."""
        query = select(EventRecord).where(
            EventRecord.at >= at, EventRecord.kind.in_(kinds), EventRecord.app == app
        )
        if stage is not None:
            query = query.where(EventRecord.stage == stage)
        return [_event(record) for record in self.session.scalars(query.order_by(EventRecord.id))]

    def first_with_revision(self, kind: str, revisions: Sequence[str]) -> dict[str, datetime]:
        """When each of ``revisions`` first appeared in an event of ``kind``."""
        if not revisions:
            return {}
        query = (
            select(EventRecord.revision, func.min(EventRecord.at))
            .where(EventRecord.kind == kind, EventRecord.revision.in_(revisions))
            .group_by(EventRecord.revision)
        )
        return {revision: _aware(at) for revision, at in self.session.execute(query) if revision}


def _evidence(record: EvidenceRecord) -> Evidence:
    return Evidence(
        promotion_id=record.promotion_id,
        record=record.record,
        digest=record.digest,
        previous_digest=record.previous_digest,
        at=_aware(record.at),
        id=record.id,
    )


class SqlEvidence:
    def __init__(self, session: Session) -> None:
        self.session = session

    def tail(self) -> str | None:
        """The digest of the newest record (None for an empty chain)."""
        query = select(EvidenceRecord.digest).order_by(EvidenceRecord.id.desc()).limit(1)
        return self.session.scalar(query)

    def add(self, evidence: Evidence) -> None:
        self.session.add(
            EvidenceRecord(
                promotion_id=evidence.promotion_id,
                at=evidence.at,
                record=evidence.record,
                digest=evidence.digest,
                previous_digest=evidence.previous_digest,
            )
        )

    def get(self, promotion_id: int) -> Evidence | None:
        query = select(EvidenceRecord).where(EvidenceRecord.promotion_id == promotion_id)
        record = self.session.scalar(query)
        return None if record is None else _evidence(record)

    def chain(self, after_id: int = 0, limit: int = 500) -> Sequence[Evidence]:
        query = (
            select(EvidenceRecord)
            .where(EvidenceRecord.id > after_id)
            .order_by(EvidenceRecord.id)
            .limit(limit)
        )
        return [_evidence(record) for record in self.session.scalars(query)]

    def missing(self, statuses: Sequence[str], limit: int) -> Sequence[int]:
        """One query of ids: the usual answer is none, and the settler asks every few seconds."""
        newest = (
            select(PromotionRecord.id)
            .where(PromotionRecord.status.in_(statuses))
            .order_by(PromotionRecord.id.desc())
            .limit(limit)
            .subquery()
        )
        recorded = select(EvidenceRecord.id).where(EvidenceRecord.promotion_id == newest.c.id)
        query = select(newest.c.id).where(~recorded.exists()).order_by(newest.c.id)
        return list(self.session.scalars(query))


def _delivery(record: NotificationRecord) -> Delivery:
    return Delivery(
        event_id=record.event_id,
        target=record.target,
        kind=record.kind,
        app=record.app,
        stage=record.stage,
        status=record.status,
        attempts=record.attempts,
        created_at=_aware(record.created_at),
        next_at=_aware(record.next_at),
        delivered_at=_utc(record.delivered_at),
        last_error=record.last_error,
        id=record.id,
    )


class SqlNotifications:
    def __init__(self, session: Session) -> None:
        self.session = session

    def cursor(self, name: str) -> int:
        return int(
            self.session.scalar(
                select(OutboxCursorRecord.event_id).where(OutboxCursorRecord.name == name)
            )
            or 0
        )

    def move_cursor(self, name: str, event_id: int) -> None:
        found = self.session.get(OutboxCursorRecord, name)
        if found is None:
            self.session.add(OutboxCursorRecord(name=name, event_id=event_id))
        else:
            found.event_id = event_id

    def add(self, delivery: Delivery) -> None:
        self.session.add(
            NotificationRecord(
                event_id=delivery.event_id,
                target=delivery.target,
                kind=delivery.kind,
                app=delivery.app,
                stage=delivery.stage,
                status=delivery.status,
                attempts=delivery.attempts,
                created_at=delivery.created_at,
                next_at=delivery.next_at,
            )
        )

    def made(self, event_ids: Sequence[int]) -> set[tuple[int, str]]:
        if not event_ids:
            return set()
        query = select(NotificationRecord.event_id, NotificationRecord.target).where(
            NotificationRecord.event_id.in_(event_ids)
        )
        return {(event_id, target) for event_id, target in self.session.execute(query)}

    def heads(self, now: datetime, *, limit: int = 500) -> Sequence[Delivery]:
        """Each target's oldest pending delivery, when it is due and nobody holds it.

        A target's deliveries go out in event order: a later one waits behind an earlier one.
        """
        pending = self.session.scalars(
            select(NotificationRecord)
            .where(NotificationRecord.status == PENDING)
            .order_by(NotificationRecord.id)
            .limit(limit)
        )
        heads: dict[str, NotificationRecord] = {}
        for record in pending:
            heads.setdefault(record.target, record)
        return [
            _delivery(record)
            for record in heads.values()
            if _aware(record.next_at) <= now
            and (record.claimed_until is None or _aware(record.claimed_until) < now)
        ]

    def claim(self, delivery_id: int, holder: str, now: datetime, until: datetime) -> bool:
        """Take ``delivery_id`` for sending until ``until`` (False: another process has it)."""
        taken = self.session.execute(
            update(NotificationRecord)
            .where(
                NotificationRecord.id == delivery_id,
                NotificationRecord.status == PENDING,
                or_(
                    NotificationRecord.claimed_until.is_(None),
                    NotificationRecord.claimed_until < now,
                ),
            )
            .values(claimed_by=holder, claimed_until=until)
        )
        return bool(getattr(taken, "rowcount", 0))

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
        self.session.execute(
            update(NotificationRecord)
            .where(NotificationRecord.id == delivery_id)
            .values(
                status=status,
                attempts=attempts,
                next_at=next_at,
                delivered_at=delivered_at,
                last_error=error,
                claimed_by=None,
                claimed_until=None,
            )
        )

    def list(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]:
        query = select(NotificationRecord).order_by(NotificationRecord.id.desc()).limit(limit)
        if status:
            query = query.where(NotificationRecord.status == status)
        if target:
            query = query.where(NotificationRecord.target == target)
        if before_id:
            query = query.where(NotificationRecord.id < before_id)
        return [_delivery(record) for record in self.session.scalars(query)]
