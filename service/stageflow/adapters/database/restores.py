"""How long each rollback took to restore its stage (``domain.hooks.Restore``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from stageflow.adapters.database.records import Base, _utc
from stageflow.domain.hooks import Restore


class RestoreRecord(Base):
    """One rollback's revert: when it was pushed, its controller told, its stage healthy."""

    __tablename__ = "restores"

    promotion_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    app: Mapped[str] = mapped_column(String(63))
    stage: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str] = mapped_column(String(64), index=True)
    content: Mapped[str] = mapped_column(String(64))
    pushed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    controller_told_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    healthy_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_restores_app_stage", "app", "stage"),)


def _restore(row: RestoreRecord) -> Restore:
    pushed_at = _utc(row.pushed_at)
    assert pushed_at is not None
    return Restore(
        promotion_id=row.promotion_id,
        app=row.app,
        stage=row.stage,
        revision=row.revision,
        content=row.content,
        pushed_at=pushed_at,
        controller_told_at=_utc(row.controller_told_at),
        healthy_at=_utc(row.healthy_at),
    )


class SqlRestores:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, restore: Restore) -> None:
        self.session.merge(
            RestoreRecord(
                promotion_id=restore.promotion_id,
                app=restore.app,
                stage=restore.stage,
                revision=restore.revision,
                content=restore.content,
                pushed_at=restore.pushed_at,
                controller_told_at=restore.controller_told_at,
                healthy_at=restore.healthy_at,
            )
        )

    def get(self, promotion_id: int) -> Restore | None:
        row = self.session.get(RestoreRecord, promotion_id)
        return None if row is None else _restore(row)

    def told(self, revision: str, at: datetime) -> int:
        done = self.session.execute(
            update(RestoreRecord)
            .where(RestoreRecord.revision == revision, RestoreRecord.controller_told_at.is_(None))
            .values(controller_told_at=at)
        )
        return int(done.rowcount)  # type: ignore[attr-defined]  # CursorResult's, untyped here

    def healthy(self, app: str, stage: str, content: str, at: datetime) -> int:
        waiting = select(RestoreRecord).where(
            RestoreRecord.app == app,
            RestoreRecord.stage == stage,
            RestoreRecord.content == content,
            RestoreRecord.healthy_at.is_(None),
        )
        moved = 0
        for row in self.session.scalars(waiting):
            pushed_at = _utc(row.pushed_at)
            if pushed_at is not None and pushed_at <= at:  # an older report is not the restore
                row.healthy_at = at
                moved += 1
        return moved
