"""Use cases of promotions: plan, gate, apply, approve, re-evaluate, cancel, settle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from stageflow.domain import actors
from stageflow.domain.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    StageflowError,
    Unavailable,
)
from stageflow.domain.flags import FlagDocument
from stageflow.domain.gates import (
    GateResult,
    approvals_gate,
    check_gate,
    deployment_gate,
    freeze_gate,
    hold_gate,
    metric_gate,
    soak_gate,
    verdict,
)
from stageflow.domain.identity import Scope
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import (
    WAITING,
    Approval,
    NothingToPromote,
    Promotion,
    PromotionPlan,
    Rejection,
    Selection,
    carry_evaluators,
    plan_promotion,
    source_stage,
    unified_diff,
)
from stageflow.services import replicas
from stageflow.services.changes import Actor, Outcome, commit_change, recorded_later
from stageflow.services.context import Stageflow
from stageflow.services.flags import write_flags
from stageflow.services.policy_gates import policy_gates
from stageflow.services.policy_renders import render_text
from stageflow.services.ports import Change, UnitOfWork, Workspace
from stageflow.services.state import (
    Snapshot,
    content_at,
    flags_in,
    kustomization_path,
    pipeline_in,
    snapshot,
)

log = logging.getLogger(__name__)


class SourceChanged(Conflict):
    code = "source_changed"


class _Preview(Exception):
    """Raised inside a write to render the result and throw the working tree away."""

    def __init__(self, plan: PromotionPlan, diff: str) -> None:
        super().__init__("preview")
        self.plan = plan
        self.diff = diff


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
            after=extra.get("after", {"status": promotion.status}),
            revision=promotion.revision,
            at=sf.clock(),
        )
    )


# -- the promotion as a Git operation -------------------------------------------------------


def _operation(
    sf: Stageflow,
    app_name: str,
    to: str,
    selection: Selection,
    *,
    expected_source: str | None,
    preview: bool,
    promotion_id: int | None = None,
    rejected: Sequence[Rejection] = (),
) -> Any:
    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(app_name)
        target = pipeline.stage(to)
        source = source_stage(pipeline, to, None)
        if expected_source is not None:
            now_source = content_at(sf, ws.revision, app, source.name)
            if now_source != expected_source:
                raise SourceChanged(
                    f"{source.name} changed since its gates were evaluated; the promotion would "
                    "move a state nobody vetted. Open a new promotion.",
                    details={"expected": expected_source, "found": now_source},
                )
        source_doc = _kustomization(sf, ws, app, source.name)
        target_path = kustomization_path(app, target.name)
        target_doc = _kustomization(sf, ws, app, target.name)
        target_flags = flags_in(sf, ws, app, target.name)
        source_flags = flags_in(sf, ws, app, source.name)
        plan = plan_promotion(
            source_images=source_doc.images(),
            target_images=target_doc.images(),
            source_flags=source_flags,
            target_flags=target_flags,
            target=target,
            selection=selection,
        )
        _refuse_rejected(plan, rejected, app.name)
        if plan.empty:
            raise _nothing_to_promote(app.name, source.name, target.name)
        before = render_text(sf, ws, app, target.name)  # cached by content with policies (#17)
        for move in plan.images:
            target_doc.set_image(move.after, clear_other=True)
        if plan.images:
            ws.write(target_path, target_doc.render())
        if plan.flags:
            doc: FlagDocument = carry_evaluators(
                plan.apply_flags(target_flags),
                source_flags,
                [move.key for move in plan.flags],
            )
            write_flags(sf, ws, app, target.name, doc, [move.key for move in plan.flags])
            for flag_move in plan.flags:
                # the target's $evaluators may differ from the source's: evaluate as flagd would
                if flag_move.after.targeting and sf.codecs.trial_evaluate is not None:
                    sf.codecs.trial_evaluate(doc, flag_move.key)
        after = render_text(sf, ws, app, target.name)
        diff = unified_diff(before, after, f"kustomize build {app.overlay_path(target.name)}")
        if preview:
            raise _Preview(plan, diff)
        return Change(
            plan.commit_message(app.name, source.name, target.name),
            Outcome(
                "promotion.apply",
                app.name,
                target.name,
                str(promotion_id),
                None,
                plan.to_json(),
                (plan, diff),
            ),
        )

    return operation


def _nothing_to_promote(app: str, source: str, target: str) -> NothingToPromote:
    return NothingToPromote(
        f"{target} already has what {source} would promote for {app}; nothing to promote"
    )


def _refuse_rejected(plan: PromotionPlan, rejected: Sequence[Rejection], app: str) -> None:
    for move in plan.images:
        for rejection in rejected:
            if rejection.matches(move.after):
                raise Conflict(
                    f"{move.after.describe()} was rolled back ({rejection.reason}) and is "
                    "rejected; promote another version, or release it with DELETE "
                    f"/api/v1/apps/{app}/rejections/{rejection.id}",
                    code="image_rejected",
                    details={"rejection": rejection.to_json()},
                )


def _kustomization(sf: Stageflow, ws: Workspace, app: App, stage: str) -> Any:
    path = kustomization_path(app, stage)
    text = ws.read(path)
    if text is None:
        raise Invalid(f"{path} is missing in the GitOps repo", code="overlay_missing")
    return sf.codecs.parse_kustomization(text, path)


def _rejections(sf: Stageflow, app: str) -> Sequence[Rejection]:
    with sf.uow() as uow:
        return uow.rejections.active(app)


def _preview(sf: Stageflow, app: str, to: str, selection: Selection) -> tuple[PromotionPlan, str]:
    try:
        sf.repo.change(
            _operation(
                sf,
                app,
                to,
                selection,
                expected_source=None,
                preview=True,
                rejected=_rejections(sf, app),
            ),
            actor=actors.PREVIEW,
            trailers={},
        )
    except _Preview as preview:
        return preview.plan, preview.diff
    raise AssertionError("a preview operation always raises _Preview")  # pragma: no cover


# -- gates ----------------------------------------------------------------------------------


def evaluate_gates(
    sf: Stageflow,
    snap: Snapshot,
    app: App,
    source: Stage,
    target: Stage,
    *,
    requester: str,
    approvers: Sequence[str] = (),
    selection: Selection | None = None,
) -> tuple[list[GateResult], str, str | None]:
    """Evaluate every gate of ``source`` -> ``target``; return gates, source state, revision."""
    content = snap.content(app, source.name)
    with sf.uow() as uow:
        reports = uow.deployments.recent(app.name, source.name)
        checks = uow.checks.for_content(app.name, source.name, content)
        freezes = uow.freezes.active(target.name)
        hold = uow.holds.active(app.name, target.name)
    now = sf.clock()
    gates = [deployment_gate(source.name, content, reports)]
    gates += [check_gate(source.name, kind, content, checks) for kind in source.gates.checks]
    metrics = sf.metrics
    for metric in source.gates.metrics:
        if not metric.enabled:
            continue
        configured = metrics is not None and metrics.configured
        reading = metrics.query(metric.query) if metrics is not None and configured else None
        gates.append(metric_gate(metric, reading, configured))
    if source.gates.soak:
        gates.append(soak_gate(source.name, source.gates.soak, content, reports, now))
    gates.append(freeze_gate(target.name, freezes, target.freeze_windows, now))
    gates.append(hold_gate(app.name, target.name, hold))
    gates += policy_gates(sf, snap, app, source, target, selection)  # policy, parity (#17)
    if target.approvals:
        gates.append(approvals_gate(target.name, target.approvals, approvers, requester))
    running = next((r.revision for r in reports if r.content == content), None)
    return gates, content, running


# -- use cases ------------------------------------------------------------------------------


def promote(
    sf: Stageflow,
    app_name: str,
    *,
    to: str,
    actor: Actor,
    from_: str | None = None,
    selection: Selection | None = None,
    dry_run: bool = False,
    reason: str | None = None,
) -> Promotion:
    """Open a promotion of ``app`` into ``to``: plan, gate, and apply when every gate holds."""
    selection = selection or Selection()
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    target = snap.pipeline.stage(to)
    source = source_stage(snap.pipeline, target.name, from_)
    # Plan from the snapshot first (no render): an empty or refused plan answers at once, and a
    # promotion whose gates already hold renders only once, in its apply, not in a preview too.
    plan = plan_promotion(
        source_images=snap.images(app, source.name),
        target_images=snap.images(app, target.name),
        source_flags=snap.flags(app, source.name),
        target_flags=snap.flags(app, target.name),
        target=target,
        selection=selection,
    )
    if plan.empty:
        raise _nothing_to_promote(app.name, source.name, target.name)
    _refuse_rejected(plan, _rejections(sf, app.name), app.name)
    carry_evaluators(  # a clash of shared evaluators answers 409 now, not as a failed apply
        snap.flags(app, target.name), snap.flags(app, source.name), [m.key for m in plan.flags]
    )
    gates, content, running = evaluate_gates(
        sf, snap, app, source, target, requester=actor.name, selection=selection
    )
    decision = verdict(gates)
    diff = ""
    if dry_run or decision != "apply":
        plan, diff = _preview(sf, app.name, target.name, selection)
    now = sf.clock()
    promotion = Promotion(
        app=app.name,
        source=source.name,
        target=target.name,
        status={"apply": "applying"}.get(decision, decision),
        requested_by=actor.name,
        reason=reason,
        selection=selection,
        plan=plan,
        plan_json=plan.to_json(),
        gates=tuple(gates),
        diff=diff,
        created_at=now,
        updated_at=now,
        source_revision=running or snap.overlay_revision(app, source.name),
        source_content=content,
        base_revision=snap.revision,
        message=_summary(decision, gates),
    )
    if dry_run:
        return promotion
    with sf.in_flight(_applying(app.name, target.name)):
        return _open(sf, promotion, actor, apply=decision == "apply")


def _open(sf: Stageflow, promotion: Promotion, actor: Actor, *, apply: bool) -> Promotion:
    """Store a new promotion (superseding waiting ones) and apply it when its gates hold."""
    now = promotion.created_at
    with sf.uow() as uow:
        waiting = uow.promotions.list(app=promotion.app, target=promotion.target, statuses=WAITING)
        promotion = uow.promotions.add(replace(promotion, applier=_applier() if apply else None))
        for older in waiting:
            uow.promotions.save(
                older.moved_to(
                    "superseded", now, message=f"superseded by promotion {promotion.id}"
                ),
                expected_status=older.status,
            )
        _audit(uow, sf, actor.name, "promotion.create", promotion)
        uow.commit()
    if apply:
        return _apply(sf, promotion, actor)
    return promotion


def _summary(decision: str, gates: Sequence[GateResult]) -> str:
    if decision == "apply":
        return "every gate holds"
    open_gates = [gate for gate in gates if not gate.holds]
    return "; ".join(f"{gate.name}: {gate.message}" for gate in open_gates)


def _apply(sf: Stageflow, promotion: Promotion, actor: Actor) -> Promotion:
    """Write the promotion as one commit; the row is `applying` (with its applier) already."""
    assert promotion.id is not None and promotion.status == "applying"
    operation = _operation(
        sf,
        promotion.app,
        promotion.target,
        promotion.selection,
        expected_source=promotion.source_content,
        preview=False,
        promotion_id=promotion.id,
        rejected=_rejections(sf, promotion.app),
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
        return finish(sf, promotion, "failed", actor.name, message=exc.message)
    plan, diff = done.result.value
    try:
        return finish(
            sf,
            promotion,
            "applied",
            actor.name,
            revision=done.revision,
            plan_json=plan.to_json(),
            diff=diff,
            message=f"applied as {done.revision[:12]}",
        )
    except Unavailable as exc:
        sf.ledger_outage.failed()
        raise recorded_later(done.revision, exc) from exc


def finish(
    sf: Stageflow, promotion: Promotion, status: str, actor: str, **changes: Any
) -> Promotion:
    return finish_once(sf, promotion, status, actor, **changes)[0]


def finish_once(
    sf: Stageflow, promotion: Promotion, status: str, actor: str, **changes: Any
) -> tuple[Promotion, bool]:
    """Move ``promotion`` on unless someone else did first; True when this call moved it."""
    with sf.uow() as uow:
        done = promotion.moved_to(status, sf.clock(), **changes)
        if uow.promotions.save(done, expected_status=promotion.status):
            _audit(uow, sf, actor, f"promotion.{status}", done)
            uow.commit()
            return done, True
    return get_promotion(sf, promotion.id or 0), False


def settle(sf: Stageflow, promotion_id: int, *, force: bool = False) -> Promotion:
    """Decide an `applying` promotion by its trailer on the remote (crash recovery)."""
    promotion = _load(sf, promotion_id)
    if promotion.status != "applying":
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
            "applied",
            actors.AUTOMATION,
            revision=sha,
            message=f"applied as {sha[:12]} (settled from the remote's history)",
        )
    return finish(
        sf,
        promotion,
        "failed",
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
        applying = uow.promotions.list(statuses=["applying"], limit=1000)
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
    if promotion.status == "applying":
        return settle(sf, promotion_id)
    return promotion


def find_promotion(sf: Stageflow, promotion_id: int) -> Promotion | None:
    """Read a promotion as stored (None when there is none); nothing is settled."""
    with sf.uow() as uow:
        return uow.promotions.get(promotion_id)


def list_promotions(
    sf: Stageflow,
    *,
    app: str | None = None,
    target: str | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
    scope: Scope | None = None,
) -> Sequence[Promotion]:
    """List promotions newest first; with ``scope``, only those of its apps into its stages."""
    with sf.uow() as uow:
        return uow.promotions.list(
            app=app,
            target=target,
            statuses=[status] if status else (),
            before_id=before_id,
            limit=limit,
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
    gates, content, running = evaluate_gates(
        sf,
        snap,
        app,
        source,
        target,
        requester=promotion.requested_by,
        approvers=sorted(promotion.approvers()),
        selection=promotion.selection,
    )
    if content != promotion.source_content:
        changed = promotion.moved_to(
            "failed",
            now,
            gates=tuple(gates),
            message=f"{source.name} changed since this promotion was opened (it now renders a "
            "different state); open a new promotion for what it runs now",
        )
        return _save_or_reload(sf, promotion, changed, actor.name)
    decision = verdict(gates)
    status = {"apply": "applying"}.get(decision, decision)
    updated = promotion.moved_to(
        status,
        now,
        gates=tuple(gates),
        message=_summary(decision, gates),
        source_revision=running or promotion.source_revision,
        applier=_applier() if status == "applying" else None,
    )
    with sf.in_flight(_applying(promotion.app, promotion.target)):
        saved = _save_or_reload(sf, promotion, updated, actor.name)
        if saved.status == "applying" and saved.applier == _applier() and decision == "apply":
            return _apply(sf, saved, actor)
        return saved


def _save_or_reload(sf: Stageflow, old: Promotion, new: Promotion, actor: str) -> Promotion:
    with sf.uow() as uow:
        if uow.promotions.save(new, expected_status=old.status):
            if new.status != old.status:
                _audit(uow, sf, actor, f"promotion.{new.status}", new)
            uow.commit()
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
    cancelled = promotion.moved_to("cancelled", sf.clock(), message=f"cancelled by {actor.name}")
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
