"""Repositories of the promotion workflow: promotions, approvals, checks, deployments, freezes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Unpack

from sqlalchemy import and_, func, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stageflow.adapters.database.records import (
    ApprovalRecord,
    CheckRecord,
    DeploymentRecord,
    FreezeRecord,
    HoldRecord,
    LedgerVersionRecord,
    PromotionRecord,
    RejectionRecord,
    _aware,
    _utc,
)
from stageflow.domain.gates import CheckResult, CheckStatus, Deployment, Freeze, GateResult, Hold
from stageflow.domain.promotions import (
    Approval,
    Promotion,
    PromotionStatus,
    Rejection,
    Selection,
)
from stageflow.services.ports import PromotionQuery

# The LedgerVersionRecord row the app-state view compares (see SqlUnitOfWork.state_version).
APP_STATE_VERSION = "app_state"


def _move_app_state(session: Session) -> None:
    """Have this transaction move the app-state version when it commits (SqlUnitOfWork.commit).

    At commit and not now: the row lock is then taken last and held for an instant, so writers
    that lock promotions in another order cannot deadlock on it.
    """
    session.info[APP_STATE_VERSION] = True


def move_versions(session: Session) -> None:
    """Move the versions this transaction's writes asked for; called just before its commit."""
    if session.info.pop(APP_STATE_VERSION, False):
        session.execute(
            update(LedgerVersionRecord)
            .where(LedgerVersionRecord.name == APP_STATE_VERSION)
            .values(version=LedgerVersionRecord.version + 1)
        )


def _promotion(row: PromotionRecord, approvals: Sequence[Approval]) -> Promotion:
    """The domain promotion of a row and its approvals (oldest first)."""
    return Promotion(
        id=row.id,
        app=row.app,
        source=row.source,
        target=row.target,
        status=PromotionStatus(row.status),
        requested_by=row.requested_by,
        reason=row.reason,
        message=row.message,
        selection=Selection.from_json(row.selection or {}),
        plan=None,
        plan_json=row.plan or {},
        gates=tuple(GateResult.from_json(g) for g in row.gates or []),
        diff=row.diff,
        source_revision=row.source_revision,
        source_content=row.source_content,
        base_revision=row.base_revision,
        revision=row.revision,
        rolled_back_revision=row.rolled_back_revision,
        applier=row.applier,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        approvals=tuple(approvals),
    )


def _promotion_filter(query: PromotionQuery) -> list[Any]:
    """The WHERE clauses of a promotion query: one per key given."""
    equal = {"app": PromotionRecord.app, "target": PromotionRecord.target}
    equal["source"] = PromotionRecord.source
    within = {"apps": PromotionRecord.app, "targets": PromotionRecord.target}
    within["statuses"] = PromotionRecord.status
    clauses: list[Any] = [
        column == query.get(key) for key, column in equal.items() if query.get(key) is not None
    ]
    for key, column in within.items():
        values = query.get(key)
        if values:
            clauses.append(column.in_(list(values)))
    before_id = query.get("before_id")
    if before_id is not None:
        clauses.append(PromotionRecord.id < before_id)
    return clauses


class SqlPromotions:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _approvals(self, promotion_ids: Sequence[int]) -> dict[int, list[Approval]]:
        """The approvals of ``promotion_ids`` in one query (a list of 100 is not 101 queries)."""
        found: dict[int, list[Approval]] = {promotion_id: [] for promotion_id in promotion_ids}
        if not promotion_ids:
            return found
        rows = self.session.scalars(
            select(ApprovalRecord)
            .where(ApprovalRecord.promotion_id.in_(list(promotion_ids)))
            .order_by(ApprovalRecord.id)
        )
        for a in rows:
            found[a.promotion_id].append(
                Approval(approver=a.approver, at=_aware(a.at), comment=a.comment)
            )
        return found

    def _domain(self, row: PromotionRecord) -> Promotion:
        return self._domains([row])[0]

    def _domains(self, rows: Sequence[PromotionRecord]) -> list[Promotion]:
        approvals = self._approvals([row.id for row in rows])
        return [_promotion(row, approvals[row.id]) for row in rows]

    @staticmethod
    def _values(promotion: Promotion) -> dict[str, Any]:
        return {
            "app": promotion.app,
            "source": promotion.source,
            "target": promotion.target,
            "status": promotion.status,
            "requested_by": promotion.requested_by,
            "reason": promotion.reason,
            "message": promotion.message,
            "selection": promotion.selection.to_json(),
            "plan": dict(promotion.plan_json),
            "gates": [gate.to_json() for gate in promotion.gates],
            "diff": promotion.diff,
            "source_revision": promotion.source_revision,
            "source_content": promotion.source_content,
            "base_revision": promotion.base_revision,
            "revision": promotion.revision,
            "rolled_back_revision": promotion.rolled_back_revision,
            "applier": promotion.applier,
            "created_at": promotion.created_at,
            "updated_at": promotion.updated_at,
        }

    def add(self, promotion: Promotion) -> Promotion:
        row = PromotionRecord(**self._values(promotion))
        self.session.add(row)
        self.session.flush()
        return self._domain(row)

    def get(self, promotion_id: int, *, for_update: bool = False) -> Promotion | None:
        query = select(PromotionRecord).where(PromotionRecord.id == promotion_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return None if row is None else self._domain(row)

    def save(self, promotion: Promotion, *, expected_status: str | None = None) -> bool:
        """Write ``promotion``; with ``expected_status`` only if the row still has it (CAS)."""
        query = update(PromotionRecord).where(PromotionRecord.id == promotion.id)
        if expected_status is not None:
            query = query.where(PromotionRecord.status == expected_status)
        result = self.session.execute(query.values(**self._values(promotion)))
        return bool(getattr(result, "rowcount", 0))

    def list(self, **query: Unpack[PromotionQuery]) -> Sequence[Promotion]:
        select_rows = select(PromotionRecord).order_by(PromotionRecord.id.desc())
        select_rows = select_rows.limit(query.get("limit", 100)).where(*_promotion_filter(query))
        return self._domains(list(self.session.scalars(select_rows)))

    def add_approval(self, promotion_id: int, approval: Approval) -> bool:
        try:
            with self.session.begin_nested():
                self.session.add(
                    ApprovalRecord(
                        promotion_id=promotion_id,
                        approver=approval.approver,
                        comment=approval.comment,
                        at=approval.at,
                    )
                )
        except IntegrityError:
            return False
        return True


class SqlChecks:
    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _domain(row: CheckRecord) -> CheckResult:
        return CheckResult(
            id=row.id,
            kind=row.kind,
            revision=row.revision,
            content=row.content,
            status=CheckStatus(row.status),
            at=_aware(row.at),
            summary=row.summary,
            url=row.url,
        )

    def add(
        self, app: str, stage: str, check: CheckResult, details: Any, reported_by: str
    ) -> CheckResult:
        row = CheckRecord(
            app=app,
            stage=stage,
            kind=check.kind,
            revision=check.revision,
            content=check.content,
            status=check.status,
            summary=check.summary,
            url=check.url,
            details=details,
            reported_by=reported_by,
            at=check.at,
        )
        self.session.add(row)
        _move_app_state(self.session)
        self.session.flush()
        return self._domain(row)

    def for_content(self, app: str, stage: str, content: str) -> Sequence[CheckResult]:
        """Checks recorded for one state of a stage, newest first."""
        rows = self.session.scalars(
            select(CheckRecord)
            .where(
                CheckRecord.app == app, CheckRecord.stage == stage, CheckRecord.content == content
            )
            .order_by(CheckRecord.id.desc())
        )
        return [self._domain(row) for row in rows]

    def for_contents(
        self, app: str, contents: Mapping[str, str]
    ) -> Mapping[str, Sequence[CheckResult]]:
        """Checks recorded for one state of each of several stages (``{stage: content}``).

        Newest first per stage; one query for all of them.
        """
        found: dict[str, list[CheckResult]] = {stage: [] for stage in contents}
        if not contents:
            return found
        rows = self.session.scalars(
            select(CheckRecord)
            .where(
                CheckRecord.app == app,
                or_(
                    *(
                        and_(CheckRecord.stage == stage, CheckRecord.content == content)
                        for stage, content in contents.items()
                    )
                ),
            )
            .order_by(CheckRecord.id.desc())
        )
        for row in rows:
            found[row.stage].append(self._domain(row))
        return found

    def list(
        self,
        app: str,
        stage: str,
        *,
        revision: str | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[CheckResult, Any, str]]:
        query = (
            select(CheckRecord)
            .where(CheckRecord.app == app, CheckRecord.stage == stage)
            .order_by(CheckRecord.id.desc())
            .limit(limit)
        )
        if revision is not None:
            query = query.where(CheckRecord.revision == revision)
        if kind is not None:
            query = query.where(CheckRecord.kind == kind)
        if before_id is not None:
            query = query.where(CheckRecord.id < before_id)
        return [(self._domain(r), r.details, r.reported_by) for r in self.session.scalars(query)]


class SqlDeployments:
    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _domain(row: DeploymentRecord) -> Deployment:
        return Deployment(
            revision=row.revision,
            content=row.content,
            health=row.health,
            at=_aware(row.at),
            source=row.source,
        )

    def add(self, app: str, stage: str, deployment: Deployment, reported_by: str) -> int:
        row = DeploymentRecord(
            app=app,
            stage=stage,
            revision=deployment.revision,
            content=deployment.content,
            health=deployment.health,
            source=deployment.source,
            reported_by=reported_by,
            at=deployment.at,
        )
        self.session.add(row)
        _move_app_state(self.session)
        self.session.flush()
        return row.id

    def recent(self, app: str, stage: str, limit: int = 200) -> Sequence[Deployment]:
        """The latest reports for a stage, newest first."""
        rows = self.session.scalars(
            select(DeploymentRecord)
            .where(DeploymentRecord.app == app, DeploymentRecord.stage == stage)
            .order_by(DeploymentRecord.id.desc())
            .limit(limit)
        )
        return [self._domain(row) for row in rows]

    def latest(self, app: str, stages: Iterable[str]) -> Mapping[str, Deployment]:
        """The newest report of each of these stages that has one, in one query."""
        # One indexed max(id) per stage, not a GROUP BY that reads every report the app has.
        newest = [
            select(func.max(DeploymentRecord.id)).where(
                DeploymentRecord.app == app, DeploymentRecord.stage == stage
            )
            for stage in stages
        ]
        if not newest:
            return {}
        rows = self.session.scalars(
            select(DeploymentRecord).where(DeploymentRecord.id.in_(union_all(*newest)))
        )
        return {row.stage: self._domain(row) for row in rows}


def _release(session: Session, record: Any, *where: Any, by: str, at: datetime) -> int:
    """Mark the unreleased rows of ``record`` matching ``where`` released; return how many."""
    result = session.execute(
        update(record)
        .where(*where, record.released_at.is_(None))
        .values(released_at=at, released_by=by)
    )
    return int(getattr(result, "rowcount", 0))


class SqlFreezes:
    def __init__(self, session: Session) -> None:
        self.session = session

    def active(self, stage: str) -> Sequence[Freeze]:
        rows = self.session.scalars(
            select(FreezeRecord)
            .where(FreezeRecord.stage == stage, FreezeRecord.released_at.is_(None))
            .order_by(FreezeRecord.id.desc())
        )
        return [
            Freeze(
                stage=r.stage,
                reason=r.reason,
                by=r.by,
                until=_utc(r.until),
                at=_aware(r.at),
                id=r.id,
            )
            for r in rows
        ]

    def add(self, freeze: Freeze) -> None:
        self.session.add(
            FreezeRecord(
                stage=freeze.stage,
                reason=freeze.reason,
                by=freeze.by,
                until=freeze.until,
                at=freeze.at,
            )
        )

    def release(self, stage: str, by: str, at: datetime) -> int:
        return _release(self.session, FreezeRecord, FreezeRecord.stage == stage, by=by, at=at)


class SqlHolds:
    def __init__(self, session: Session) -> None:
        self.session = session

    def active(self, app: str, stage: str) -> Hold | None:
        return self.active_in(app).get(stage)

    def active_in(self, app: str) -> Mapping[str, Hold]:
        """The active hold of each stage of an app that has one (the newest), in one query."""
        rows = self.session.scalars(
            select(HoldRecord)
            .where(HoldRecord.app == app, HoldRecord.released_at.is_(None))
            .order_by(HoldRecord.id.desc())
        )
        found: dict[str, Hold] = {}
        for row in rows:
            found.setdefault(row.stage, self._domain(row))
        return found

    @staticmethod
    def _domain(row: HoldRecord) -> Hold:
        return Hold(
            app=row.app, stage=row.stage, reason=row.reason, by=row.by, at=_aware(row.at), id=row.id
        )

    def add(self, hold: Hold) -> None:
        self.session.add(
            HoldRecord(app=hold.app, stage=hold.stage, reason=hold.reason, by=hold.by, at=hold.at)
        )
        _move_app_state(self.session)

    def release(self, app: str, stage: str, by: str, at: datetime) -> int:
        released = _release(
            self.session, HoldRecord, HoldRecord.app == app, HoldRecord.stage == stage, by=by, at=at
        )
        if released:
            _move_app_state(self.session)
        return released


class SqlRejections:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, rejection: Rejection) -> None:
        self.session.add(
            RejectionRecord(
                app=rejection.app,
                image=rejection.image,
                tag=rejection.tag,
                digest=rejection.digest,
                reason=rejection.reason,
                promotion_id=rejection.promotion_id,
                by=rejection.by,
                at=rejection.at,
            )
        )

    def active(self, app: str) -> Sequence[Rejection]:
        rows = self.session.scalars(
            select(RejectionRecord)
            .where(RejectionRecord.app == app, RejectionRecord.released_at.is_(None))
            .order_by(RejectionRecord.id.desc())
        )
        return [
            Rejection(
                id=r.id,
                app=r.app,
                image=r.image,
                tag=r.tag,
                digest=r.digest,
                reason=r.reason,
                by=r.by,
                at=_aware(r.at),
                promotion_id=r.promotion_id,
            )
            for r in rows
        ]

    def release(self, rejection_id: int, app: str, by: str, at: datetime) -> int:
        return _release(
            self.session,
            RejectionRecord,
            RejectionRecord.id == rejection_id,
            RejectionRecord.app == app,
            by=by,
            at=at,
        )
