"""Ledger tables. Flag and image state is never stored here: Git holds it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes even for timezone=True columns; all ours are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _aware(value: datetime) -> datetime:
    """``_utc`` of a column that is never null."""
    result = _utc(value)
    assert result is not None
    return result


# A naming convention makes constraint names stable across SQLite and PostgreSQL, so Alembic
# migrations can refer to them by name (warehouse does the same).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, Any: JSON}


class AuditRecord(Base):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    app: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    target: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[Any | None] = mapped_column(JSON)
    after: Mapped[Any | None] = mapped_column(JSON)
    revision: Mapped[str | None] = mapped_column(String(64))
    change_id: Mapped[str | None] = mapped_column(String(36), index=True)

    __table_args__ = (Index("ix_audit_entries_app_stage", "app", "stage"),)


class TokenRecord(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(128))
    roles: Mapped[list[str]] = mapped_column(JSON)
    scope_apps: Mapped[list[str]] = mapped_column(JSON)
    scope_stages: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[Any | None] = mapped_column(JSON)
    body_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The process (host:pid) serving the request while status is NULL; a key whose process is
    # gone is freed by the settler.
    claimed_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_keys_owner_key"),)


class PromotionRecord(Base):
    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    source: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    selection: Mapped[Any] = mapped_column(JSON)
    plan: Mapped[Any] = mapped_column(JSON)
    gates: Mapped[Any] = mapped_column(JSON)
    diff: Mapped[str] = mapped_column(Text)
    source_revision: Mapped[str | None] = mapped_column(String(64))
    source_content: Mapped[str | None] = mapped_column(String(64))
    base_revision: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[str | None] = mapped_column(String(64))
    rolled_back_revision: Mapped[str | None] = mapped_column(String(64))
    applier: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_promotions_app_target_status", "app", "target", "status"),
        Index("ix_promotions_status", "status"),
    )


class ApprovalRecord(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id", ondelete="CASCADE"))
    approver: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("promotion_id", "approver", name="uq_approvals_promotion_approver"),
    )


class CheckRecord(Base):
    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    stage: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(2048))
    details: Mapped[Any | None] = mapped_column(JSON)
    reported_by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_checks_app_stage_content", "app", "stage", "content"),)


class DeploymentRecord(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    stage: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    reported_by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_deployments_app_stage", "app", "stage"),)


class FreezeRecord(Base):
    __tablename__ = "freezes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(63), index=True)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(128))


class HoldRecord(Base):
    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    stage: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_holds_app_stage", "app", "stage"),)


class RejectionRecord(Base):
    """An image version that was rolled back: it may not be promoted again until released."""

    __tablename__ = "rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(63))
    image: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    promotion_id: Mapped[int | None] = mapped_column(Integer)
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_rejections_app_image", "app", "image"),)


class LedgerVersionRecord(Base):
    """Counters that writers move in their own transaction, so readers can tell what changed.

    ``app_state``: moved by every added check, deployment report and hold and every released
    hold (what the app-state view shows from the ledger). Writers update the row, so their
    commits take turns on it, and a reader that sees a value sees every change before it.
    """

    __tablename__ = "ledger_versions"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class ReplicaRecord(Base):
    """A running process (``host:pid``) and when it last said so (the settler's heartbeat).

    Another host cannot ask the kernel whether a process lives: a heartbeat that stopped is how
    it knows that a promotion's applier, or an Idempotency-Key's request, is gone.
    """

    __tablename__ = "replicas"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServerKeyRecord(Base):
    """A secret the processes of one Stageflow share, made by whichever needed it first.

    Every replica reads the same database, so a key kept here is the same for all of them
    without a setting to distribute: event-stream tickets (``services.stream_tickets``) are
    signed with one.
    """

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventRecord(Base):
    """The outbox: one row per event, written in the transaction of the change it describes."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    app: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    subject: Mapped[str | None] = mapped_column(String(255))
    revision: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[Any | None] = mapped_column(JSON)


class EvidenceRecord(Base):
    """A settled promotion's evidence, chained by digest to the record before it.

    ``previous_digest`` is unique: two processes appending at once cannot both link to the same
    record, so the chain never forks (the loser retries on the new tail).
    """

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    promotion_id: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    record: Mapped[str] = mapped_column(Text)  # the canonical JSON the digest covers, verbatim
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    previous_digest: Mapped[str] = mapped_column(String(64), unique=True)


class OutboxCursorRecord(Base):
    """How far a consumer of the event log has read (the last event id it handled)."""

    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(Integer)


class NotificationRecord(Base):
    """One event to send to one notification target, and how its delivery went."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(64))
    app: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("event_id", "target", name="uq_notifications_event_id_target"),
        Index("ix_notifications_status_id", "status", "id"),
    )
