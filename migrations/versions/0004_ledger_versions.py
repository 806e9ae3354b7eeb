"""ledger versions: a counter that app-state readers compare instead of re-reading the ledger

Revision ID: 0004_ledger_versions
Revises: 0003_rejections
Create Date: 2026-11-27 18:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger_versions"
down_revision = "0003_rejections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = op.create_table(
        "ledger_versions",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ledger_versions")),
    )
    op.bulk_insert(versions, [{"name": "app_state", "version": 0}])


def downgrade() -> None:
    op.drop_table("ledger_versions")
