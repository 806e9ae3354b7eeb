"""Use cases of promotions: open, apply, approve, re-evaluate, cancel, settle.

Planning and the dry run's read-only preview are in ``promotion_plans``; the gates are in
``promotion_gates``. The names other layers use from here stay here (``evaluate_gates``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypedDict, Unpack

from stageflow.domain import actors
from stageflow.domain.errors import Conflict, Forbidden, NotFound, StageflowError, Unavailable
from stageflow.domain.gates import Verdict, verdict
from stageflow.domain.identity import Scope
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import (
    WAITING,
    Approval,
    Promotion,
    PromotionPlan,
    PromotionStatus,
    Selection,
    carry_evaluators,
    plan_promotion,
    source_stage,
)
from stageflow.services import evidence, replicas
from stageflow.services.changes import Actor, commit_change, recorded_later
from stageflow.services.context import Stageflow
from stageflow.services.ports import UnitOfWork
from stageflow.services.promotion_gates import Gating, evaluate_gates, summary
from stageflow.services.promotion_plans import (
    Planned,
    PromotionWrite,
    SourceChanged,
    active_rejections,
    nothing_to_promote,
    preview,
    refuse_rejected,
)
from stageflow.services.state import Snapshot, snapshot

__all__ = [
    "Gating",
    "ListQuery",
    "PromoteOptions",
    "SourceChanged",
    "approve",
    "cancel",
    "evaluate",
    "evaluate_gates",
    "find_promotion",
    "finish",
    "finish_once",
    "get_promotion",
    "list_promotions",
    "promote",
    "reevaluate_waiting",
    "settle",
    "settle_all",
]

log = logging.getLogger(__name__)
Status = PromotionStatus


def _applier() -> str:
    return replicas.me()


def _audit(
    uow: UnitOfWork, sf: Stageflow, actor: str, action: str, promotion: Promotion, **extra: Any
) -> None:
    uow.audit.add(
        AuditEntry(
            actor=actor,
            action=action,
            app=promotion.app,
            stage=promotion.target,
            target=str(promotion.id),
            before=extra.get("before"),
            after=extra.get("after", promotion.audit_after()),
            revision=promotion.revision,
            at=sf.clock(),
        )
    )


class PromoteOptions(TypedDict, total=False):
    """What a request to promote may add to its app, target and actor."""

    from_: str | None  # the source stage, when the caller names it (it must be the one before)
    selection: Selection | None  # default: every image, and the eligible flags
    dry_run: bool  # plan, render and gate; store nothing
    reason: str | None


def promote(
    sf: Stageflow, app_name: str, *, to: str, actor: Actor, **options: Unpack[PromoteOptions]
) -> Promotion:
    """Open a promotion of ``app`` into ``to``: plan, gate, and apply when every gate holds."""
    selection = options.get("selection") or Selection()
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    target = snap.pipeline.stage(to)
    source = source_stage(snap.pipeline, target.name, options.get("from_"))
    plan = _planned_from(sf, snap, app, source, target, selection)
    gating = evaluate_gates(
        sf, snap, app, source, target, requester=actor.name, selection=selection
    )
    decision = verdict(gating.gates)
    diff = ""
    if options.get("dry_run") or decision != Verdict.APPLY:
        # read-only: a dry run (and a promotion that waits) renders without the write locks
        plan, diff = preview(sf, snap.revision, app.name, target.name, selection)
    now = sf.clock()
    promotion = Promotion(
        app=app.name,
        source=source.name,
        target=target.name,
        status=_status_of(decision),
        requested_by=actor.name,
        reason=options.get("reason"),
        selection=selection,
        plan=plan,
        plan_json=plan.to_json(),
        gates=tuple(gating.gates),
        diff=diff,
        created_at=now,
        updated_at=now,
        source_revision=gating.running or snap.overlay_revision(app, source.name),
        source_content=gating.content,
        base_revision=snap.revision,
        message=summary(decision, gating.gates),
    )
    if options.get("dry_run"):
        return promotion
    with sf.in_flight(_applying(app.name, target.name)):
        return _open(sf, promotion, actor, apply=decision == Verdict.APPLY)


def _planned_from(
    sf: Stageflow, snap: Snapshot, app: App, source: Stage, target: Stage, selection: Selection
) -> PromotionPlan:
    """Plan from the snapshot (no render): an empty or refused plan answers at once.

    A promotion whose gates already hold then renders only once, in its apply, not in a
    preview too.
    """
    source_flags = snap.flags(app, source.name)
    target_flags = snap.flags(app, target.name)
    plan = plan_promotion(
        source_images=snap.images(app, source.name),
        target_images=snap.images(app, target.name),
        source_flags=source_flags,
        target_flags=target_flags,
        target=target,
        selection=selection,
    )
    if plan.empty:
        raise nothing_to_promote(app.name, source.name, target.name)
    refuse_rejected(plan, active_rejections(sf, app.name), app.name)
    # a clash of shared evaluators answers 409 now, not as a failed apply
    carry_evaluators(target_flags, source_flags, [move.key for move in plan.flags])
    return plan


def _status_of(decision: Verdict) -> PromotionStatus:
    """The status the gates' verdict puts a promotion in (``apply``: it is being applied)."""
    return Status.APPLYING if decision == Verdict.APPLY else Status(decision.value)


def _open(sf: Stageflow, promotion: Promotion, actor: Actor, *, apply: bool) -> Promotion:
    """Store a new promotion (superseding waiting ones) and apply it when its gates hold."""
    now = promotion.created_at
    with sf.uow() as uow:
        waiting = uow.promotions.list(app=promotion.app, target=promotion.target, statuses=WAITING)
        promotion = uow.promotions.add(replace(promotion, applier=_applier() if apply else None))
        for older in waiting:
            uow.promotions.save(
                older.moved_to(
                    Status.SUPERSEDED, now, message=f"superseded by promotion {promotion.id}"
                ),
                expected_status=older.status,
            )
        _audit(uow, sf, actor.name, "promotion.create", promotion)
        uow.commit()
    if apply:
        return _apply(sf, promotion, actor)
    return promotion


def _apply(sf: Stageflow, promotion: Promotion, actor: Actor) -> Promotion:
    """Write the promotion as one commit; the row is `applying` (with its applier) already."""
    assert promotion.id is not None and promotion.status == Status.APPLYING
    operation = PromotionWrite(
        sf,
        promotion.app,
        promotion.target,
        promotion.selection,
        rejected=active_rejections(sf, promotion.app),
        expected_source=promotion.source_content,
        promotion_id=promotion.id,
    )
    trailers = {"Stageflow-Promotion": str(promotion.id)}
    if promotion.source_revision:
        trailers["Stageflow-Source-Revision"] = promotion.source_revision
    try:
        done = commit_change(sf, actor, operation, trailers=trailers)
    except Unavailable as exc:
        if exc.details.get("committed"):
            raise  # pushed; the ledger is down: the settler marks it applied once it is back
        # The push may or may not have landed: the remote's history decides.
        return settle(sf, promotion.id, force=True)
    except StageflowError as exc:
        return finish(sf, promotion, Status.FAILED, actor.name, message=exc.message)
    planned: Planned = done.result.value
    try:
        return finish(
            sf,
            promotion,
            Status.APPLIED,
            actor.name,
            revision=done.revision,
            plan_json=planned.plan.to_json(),
            diff=planned.diff,
            message=f"applied as {done.revision[:12]}",
        )
    except Unavailable as exc:
        sf.ledger_outage.failed()
        raise recorded_later(done.revision, exc) from exc


def finish(
    sf: Stageflow, promotion: Promotion, status: PromotionStatus, actor: str, **changes: Any
) -> Promotion:
    """Move ``promotion`` on (or answer it as whoever moved it first left it)."""
    return finish_once(sf, promotion, status, actor, **changes)[0]


def finish_once(
    sf: Stageflow, promotion: Promotion, status: PromotionStatus, actor: str, **changes: Any
) -> tuple[Promotion, bool]:
    """Move ``promotion`` on unless someone else did first; True when this call moved it."""
    with sf.uow() as uow:
        done = promotion.moved_to(status, sf.clock(), **changes)
        if uow.promotions.save(done, expected_status=promotion.status):
            _audit(uow, sf, actor, f"promotion.{status}", done)
            uow.commit()
            evidence.record_settled(sf, done)
            return done, True
    return get_promotion(sf, promotion.id or 0), False


def settle(sf: Stageflow, promotion_id: int, *, force: bool = False) -> Promotion:
    """Decide an `applying` promotion by its trailer on the remote (crash recovery)."""
    promotion = _load(sf, promotion_id)
    if promotion.status != Status.APPLYING:
        return promotion
    if not force and not _abandoned(sf, promotion):
        return promotion
    try:
        sha = sf.repo.find_trailer("Stageflow-Promotion", str(promotion_id))
    except Unavailable:
        return promotion  # cannot tell yet; stays applying until the remote answers
    if sha is not None:
        return finish(
            sf,
            promotion,
            Status.APPLIED,
            actors.AUTOMATION,
            revision=sha,
            message=f"applied as {sha[:12]} (settled from the remote's history)",
        )
    return finish(
        sf,
        promotion,
        Status.FAILED,
        actors.AUTOMATION,
        message="the apply was interrupted before its commit reached the remote; nothing was "
        "changed — open the promotion again",
    )


def _abandoned(sf: Stageflow, promotion: Promotion) -> bool:
    """Whether nobody is applying ``promotion`` any more (its process is gone, or done)."""
    return replicas.gone(
        sf,
        promotion.applier,
        since=promotion.updated_at,
        working_on=_applying(promotion.app, promotion.target),
    )


def _applying(app: str, target: str) -> str:
    # What `Stageflow.in_flight` holds while this process applies a promotion of app -> target.
    return f"promotion:{app}:{target}"


def settle_all(sf: Stageflow) -> list[Promotion]:
    """Settle every abandoned `applying` promotion (at start-up and by the settler)."""
    with sf.uow() as uow:
        applying = uow.promotions.list(statuses=[Status.APPLYING], limit=1000)
    return [settle(sf, p.id) for p in applying if p.id is not None]


def _load(sf: Stageflow, promotion_id: int) -> Promotion:
    with sf.uow() as uow:
        promotion = uow.promotions.get(promotion_id)
    if promotion is None:
        raise NotFound(
            f"no promotion {promotion_id}; GET /api/v1/promotions lists them",
            code="promotion_not_found",
        )
    return promotion


def get_promotion(sf: Stageflow, promotion_id: int) -> Promotion:
    """Read a promotion; an abandoned `applying` one is settled on the way."""
    promotion = _load(sf, promotion_id)
    if promotion.status == Status.APPLYING:
        return settle(sf, promotion_id)
    return promotion


def find_promotion(sf: Stageflow, promotion_id: int) -> Promotion | None:
    """Read a promotion as stored (None when there is none); nothing is settled."""
    with sf.uow() as uow:
        return uow.promotions.get(promotion_id)


class ListQuery(TypedDict, total=False):
    """Which promotions ``list_promotions`` answers, newest first."""

    app: str | None
    target: str | None
    status: str | None
    before_id: int | None
    limit: int  # default 100
    scope: Scope | None  # only its apps, into its stages


def list_promotions(sf: Stageflow, **query: Unpack[ListQuery]) -> Sequence[Promotion]:
    """List promotions newest first; with ``scope``, only those of its apps into its stages."""
    scope, status = query.get("scope"), query.get("status")
    with sf.uow() as uow:
        return uow.promotions.list(
            app=query.get("app"),
            target=query.get("target"),
            statuses=[status] if status else (),
            before_id=query.get("before_id"),
            limit=query.get("limit", 100),
            apps=scope.apps if scope else (),
            targets=scope.stages if scope else (),
        )


def evaluate(sf: Stageflow, promotion_id: int, *, actor: Actor) -> Promotion:
    """Re-run the gates of a waiting promotion; apply it when they all hold."""
    promotion = get_promotion(sf, promotion_id)
    if not promotion.waiting:
        raise Conflict(
            f"promotion {promotion_id} is {promotion.status}; only blocked or pending_approval "
            "promotions are evaluated",
            code="promotion_not_waiting",
            details={"status": promotion.status},
        )
    snap = snapshot(sf)
    app = snap.pipeline.app(promotion.app)
    target = snap.pipeline.stage(promotion.target)
    source = snap.pipeline.stage(promotion.source)
    now = sf.clock()
    gating = evaluate_gates(
        sf,
        snap,
        app,
        source,
        target,
        requester=promotion.requested_by,
        approvers=sorted(promotion.approvers()),
        selection=promotion.selection,
    )
    if gating.content != promotion.source_content:
        changed = promotion.moved_to(
            Status.FAILED,
            now,
            gates=tuple(gating.gates),
            message=f"{source.name} changed since this promotion was opened (it now renders a "
            "different state); open a new promotion for what it runs now",
        )
        return _save_or_reload(sf, promotion, changed, actor.name)
    decision = verdict(gating.gates)
    updated = promotion.moved_to(
        _status_of(decision),
        now,
        gates=tuple(gating.gates),
        message=summary(decision, gating.gates),
        source_revision=gating.running or promotion.source_revision,
        applier=_applier() if decision == Verdict.APPLY else None,
    )
    with sf.in_flight(_applying(promotion.app, promotion.target)):
        saved = _save_or_reload(sf, promotion, updated, actor.name)
        if (
            saved.status == Status.APPLYING
            and saved.applier == _applier()
            and decision == Verdict.APPLY
        ):
            return _apply(sf, saved, actor)
        return saved


def _save_or_reload(sf: Stageflow, old: Promotion, new: Promotion, actor: str) -> Promotion:
    with sf.uow() as uow:
        if uow.promotions.save(new, expected_status=old.status):
            if new.status != old.status:
                _audit(uow, sf, actor, f"promotion.{new.status}", new)
            uow.commit()
            evidence.record_settled(sf, new)
            return new
    # Someone else moved it first (another replica, a concurrent approval): theirs stands.
    return _load(sf, old.id or 0)


def approve(
    sf: Stageflow, promotion_id: int, *, actor: Actor, comment: str | None = None
) -> Promotion:
    """Approve a waiting promotion (never your own), then re-run its gates."""
    with sf.uow() as uow:
        promotion = uow.promotions.get(promotion_id)
        if promotion is None:
            raise NotFound(f"no promotion {promotion_id}", code="promotion_not_found")
        if not promotion.waiting:
            raise Conflict(
                f"promotion {promotion_id} is {promotion.status}; there is nothing to approve",
                code="promotion_not_waiting",
            )
        if actor.name == promotion.requested_by:
            raise Forbidden(
                f"{actor.name} requested promotion {promotion_id} and cannot approve it: four "
                "eyes — someone else must approve",
                code="self_approval",
            )
        if not uow.promotions.add_approval(
            promotion_id, Approval(approver=actor.name, at=sf.clock(), comment=comment)
        ):
            raise Conflict(
                f"{actor.name} has approved promotion {promotion_id} already; approvals count "
                "distinct people",
                code="already_approved",
            )
        _audit(uow, sf, actor.name, "promotion.approve", promotion, after={"comment": comment})
        uow.commit()
    return evaluate(sf, promotion_id, actor=actor)


def cancel(sf: Stageflow, promotion_id: int, *, actor: Actor) -> Promotion:
    promotion = get_promotion(sf, promotion_id)
    if not promotion.waiting:
        raise Conflict(
            f"promotion {promotion_id} is {promotion.status}; only waiting promotions can be "
            "cancelled",
            code="promotion_not_waiting",
        )
    cancelled = promotion.moved_to(
        Status.CANCELLED, sf.clock(), message=f"cancelled by {actor.name}"
    )
    return _save_or_reload(sf, promotion, cancelled, actor.name)


def reevaluate_waiting(
    sf: Stageflow, *, app: str | None = None, source: str | None = None
) -> list[Promotion]:
    """Re-run the gates of waiting promotions (after a check or a deployment, or on a timer)."""
    with sf.uow() as uow:
        waiting = uow.promotions.list(app=app, source=source, statuses=WAITING, limit=500)
    results = []
    for promotion in waiting:
        try:
            results.append(evaluate(sf, promotion.id or 0, actor=Actor(actors.AUTOMATION)))
        except StageflowError as exc:
            log.info("re-evaluating promotion %s: %s", promotion.id, exc.message)
    return results
