"""events (the outbox) and evidence (settled promotions' records, chained by digest)

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


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("events")
