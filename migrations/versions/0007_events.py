"""events (the outbox), evidence (settled promotions' records, chained by digest),
notifications (deliveries of events to notification targets) and the outbox cursors

Revision ID: 0007_events
Revises: 0006_replicas
Create Date: 2026-12-01 10:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_events"
down_revision = "0006_replicas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("app", sa.String(length=63), nullable=True),
        sa.Column("stage", sa.String(length=63), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("promotion_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("previous_digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.UniqueConstraint("promotion_id", name=op.f("uq_evidence_promotion_id")),
        sa.UniqueConstraint("digest", name=op.f("uq_evidence_digest")),
        sa.UniqueConstraint("previous_digest", name=op.f("uq_evidence_previous_digest")),
    )
    op.create_table(
        "outbox_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_cursors")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("app", sa.String(length=63), nullable=True),
        sa.Column("stage", sa.String(length=63), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_id", "target", name="uq_notifications_event_id_target"),
    )
    op.create_index("ix_notifications_status_id", "notifications", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_status_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("outbox_cursors")
    op.drop_table("evidence")
    op.drop_table("events")
