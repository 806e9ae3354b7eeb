"""The event log (outbox) and the evidence chain in the ledger database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stageflow.adapters.database.records import EventRecord, EvidenceRecord
from stageflow.domain.events import Event
from stageflow.domain.evidence import Evidence


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _event(record: EventRecord) -> Event:
    return Event(
        kind=record.kind,
        at=_utc(record.at),
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

    def last_id(self) -> int:
        return int(self.session.scalar(select(func.max(EventRecord.id))) or 0)

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
        return {revision: _utc(at) for revision, at in self.session.execute(query) if revision}


def _evidence(record: EvidenceRecord) -> Evidence:
    return Evidence(
        promotion_id=record.promotion_id,
        record=record.record,
        digest=record.digest,
        previous_digest=record.previous_digest,
        at=_utc(record.at),
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

    def recorded(self, promotion_ids: Sequence[int]) -> set[int]:
        """Which of ``promotion_ids`` have a record."""
        if not promotion_ids:
            return set()
        query = select(EvidenceRecord.promotion_id).where(
            EvidenceRecord.promotion_id.in_(promotion_ids)
        )
        return set(self.session.scalars(query))
