"""replicas: heartbeats of the running processes; who holds each in-progress Idempotency-Key;
audit entries found by change id

Revision ID: 0006_replicas
Revises: 0005_token_last_used
Create Date: 2026-12-01 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_replicas"
down_revision = "0005_token_last_used"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
    # The settler asks which change ids of recent commits the audit log lacks.
    op.create_index(op.f("ix_audit_entries_change_id"), "audit_entries", ["change_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_entries_change_id"), table_name="audit_entries")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("replicas")
