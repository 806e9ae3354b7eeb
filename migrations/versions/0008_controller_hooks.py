"""restores: when each rollback's revert was pushed, its controller told, its stage healthy

Revision ID: 0008_controller_hooks
Revises: 0007_events
Create Date: 2026-12-01 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_controller_hooks"
down_revision = "0007_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restores",
        sa.Column("promotion_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("stage", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("controller_told_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("healthy_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("promotion_id", name=op.f("pk_restores")),
    )
    op.create_index("ix_restores_app_stage", "restores", ["app", "stage"])
    op.create_index(op.f("ix_restores_revision"), "restores", ["revision"])


def downgrade() -> None:
    op.drop_index(op.f("ix_restores_revision"), table_name="restores")
    op.drop_index("ix_restores_app_stage", table_name="restores")
    op.drop_table("restores")
