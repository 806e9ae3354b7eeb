"""Use cases: roll a promotion back by hand, or at once when its state fails in the cluster."""

from __future__ import annotations

import contextlib
import logging

from stageflow.domain import actors
from stageflow.domain.errors import Conflict, NotFound, StageflowError, Unavailable
from stageflow.domain.images import ImageRef
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import Promotion, Rejection
from stageflow.services import holds, promotions
from stageflow.services.changes import Actor, Outcome, commit_change, recorded_later
from stageflow.services.context import Stageflow
from stageflow.services.policy_renders import remember
from stageflow.services.ports import Change, Workspace
from stageflow.services.state import (
    content_at,
    flags_path,
    kustomization_path,
    pipeline_in,
    snapshot,
)

log = logging.getLogger(__name__)
AUTOMATION = actors.AUTOMATION


def rollback(
    sf: Stageflow,
    promotion_id: int,
    *,
    actor: Actor,
    reason: str | None = None,
    automatic: bool = False,
) -> Promotion:
    """Restore the target overlay as it was before an applied promotion, as a new commit."""
    promotion = promotions.get_promotion(sf, promotion_id)
    if promotion.status == "rolled_back":
        raise Conflict(
            f"promotion {promotion_id} is rolled back already (commit "
            f"{(promotion.rolled_back_revision or '')[:12]})",
            code="already_rolled_back",
        )
    if promotion.status != "applied" or promotion.revision is None:
        raise Conflict(
            f"promotion {promotion_id} is {promotion.status}; only applied promotions roll back",
            code="promotion_not_applied",
        )
    promoted = promotion.revision
    parent = sf.repo.parent_of(promoted)
    if parent is None:  # pragma: no cover - a promotion is never the root commit
        raise Conflict("the promotion commit has no parent to restore")
    why = reason or ("automatic: its state failed in the cluster" if automatic else "by hand")

    def operation(ws: Workspace) -> Change[Outcome]:
        pipeline = pipeline_in(sf, ws)
        app = pipeline.app(promotion.app)
        paths = [kustomization_path(app, promotion.target), flags_path(app, promotion.target)]
        for path in paths:
            if ws.read(path) != sf.repo.read(promoted, path):
                later = sf.repo.last_change(ws.revision, [path]) or "?"
                raise Conflict(
                    f"{path} changed after promotion {promotion_id} (in commit {later[:12]}); "
                    "rolling back would undo that change too. Revert it first, or fix the "
                    "overlay by hand.",
                    code="rollback_conflict",
                    details={"path": path, "commit": later},
                )
        for path in paths:
            before = sf.repo.read(parent, path)
            if before is None:
                ws.delete(path)
            else:
                ws.write(path, before)
        text = sf.renderer.render(ws.directory(app.overlay_path(promotion.target)))
        remember(sf, ws, app, promotion.target, text)  # the policy step's render (#17)
        return Change(
            f"{app.name}: roll back promotion {promotion_id} in {promotion.target}\n\n{why}",
            Outcome(
                "promotion.rollback",
                app.name,
                promotion.target,
                str(promotion_id),
                dict(promotion.plan_json),
                {"reason": why, "automatic": automatic},
            ),
            # what the settler needs to finish the rollback should this process die after the push
            trailers={AUTOMATIC_TRAILER: "true"} if automatic else {},
        )

    done = commit_change(sf, actor, operation, trailers={"Stageflow-Rollback": str(promotion_id)})
    try:
        return _rolled_back(sf, promotion, done.revision, actor.name, why, automatic=automatic)
    except Unavailable as exc:
        sf.ledger_outage.failed()
        raise recorded_later(done.revision, exc) from exc


AUTOMATIC_TRAILER = "Stageflow-Rollback-Automatic"


def _rolled_back(
    sf: Stageflow, promotion: Promotion, revision: str, actor: str, why: str, *, automatic: bool
) -> Promotion:
    """Record a pushed rollback of an applied promotion (once: the first to record it wins)."""
    assert promotion.revision is not None
    rolled, moved = promotions.finish_once(
        sf,
        promotion,
        "rolled_back",
        actor,
        rolled_back_revision=revision,
        message=f"rolled back by {actor} as {revision[:12]}: {why}",
    )
    if automatic and moved:
        parent = sf.repo.parent_of(promotion.revision)
        if parent is not None:
            _after_automatic(sf, rolled, promotion.revision, parent, why)
    return rolled


def settle_rollback(
    sf: Stageflow, promotion_id: int, revision: str, *, actor: str, automatic: bool
) -> Promotion | None:
    """Record a rollback commit found on the remote whose promotion still says `applied`."""
    promotion = promotions.find_promotion(sf, promotion_id)
    if promotion is None or promotion.status != "applied" or promotion.revision is None:
        return None
    return _rolled_back(
        sf,
        promotion,
        revision,
        actor,
        "settled from the remote's history: the process that pushed the rollback did not record it",
        automatic=automatic,
    )


def _after_automatic(
    sf: Stageflow, promotion: Promotion, promoted: str, parent: str, why: str
) -> None:
    """Hold the stage and reject what was rolled back, so automation does not re-promote it."""
    with contextlib.suppress(Conflict):  # held already
        holds.hold(
            sf,
            promotion.app,
            promotion.target,
            reason=f"automatic rollback of promotion {promotion.id}: {why}",
            actor=AUTOMATION,
        )
    snap = snapshot(sf, promoted)
    app = snap.pipeline.app(promotion.app)
    before = {ref.name: ref for ref in snapshot(sf, parent).images(app, promotion.target)}
    moved = [
        ref
        for ref in snap.images(app, promotion.target)
        if before.get(ref.name) is None
        or (before[ref.name].tag, before[ref.name].digest) != (ref.tag, ref.digest)
    ]
    with sf.uow() as uow:
        for ref in moved:
            uow.rejections.add(
                Rejection(
                    app=app.name,
                    image=ref.name,
                    tag=ref.tag,
                    digest=ref.digest,
                    reason=f"rolled back from {promotion.target} (promotion {promotion.id}): {why}",
                    by=AUTOMATION,
                    at=sf.clock(),
                    promotion_id=promotion.id,
                )
            )
        uow.commit()


def on_failure(sf: Stageflow, app: App, stage: Stage, revision: str, why: str) -> Promotion | None:
    """A failed smoke check or a degraded report for ``revision``: roll back what produced it.

    Only in a stage with ``auto_rollback``; only when the reported revision carries the stage's
    current state and that state is what an applied promotion wrote (so an older revision, or a
    state a rollback restored, is left alone).
    """
    if not stage.auto_rollback:
        return None
    snap = snapshot(sf)
    current = snap.content(app, stage.name)
    if content_at(sf, revision, app, stage.name) != current:
        return None  # a report about an older (or other) state of the stage
    producer = snap.overlay_revision(app, stage.name)
    with sf.uow() as uow:
        applied = uow.promotions.list(
            app=app.name, target=stage.name, statuses=["applied"], limit=20
        )
    for promotion in applied:
        if promotion.revision and promotion.revision == producer and promotion.id is not None:
            try:
                return rollback(
                    sf, promotion.id, actor=Actor(AUTOMATION), reason=why, automatic=True
                )
            except StageflowError as exc:  # a concurrent rollback won, or the overlay moved on
                log.warning(
                    "automatic rollback of promotion %s skipped: %s", promotion.id, exc.message
                )
                return None
    return None


def rejections(sf: Stageflow, app: str) -> list[Rejection]:
    snapshot(sf).pipeline.app(app)
    with sf.uow() as uow:
        return list(uow.rejections.active(app))


def release_rejection(sf: Stageflow, app: str, rejection_id: int, *, actor: str) -> None:
    """Allow a rejected image version to be promoted again."""
    with sf.uow() as uow:
        if not uow.rejections.release(rejection_id, app, actor, sf.clock()):
            raise NotFound(f"no active rejection {rejection_id} for {app}")
        uow.audit.add(
            AuditEntry(
                actor=actor,
                action="rejection.release",
                app=app,
                target=str(rejection_id),
                at=sf.clock(),
            )
        )
        uow.commit()


def rejected(refs: list[ImageRef], active: list[Rejection]) -> list[tuple[ImageRef, Rejection]]:
    return [(ref, rej) for ref in refs for rej in active if rej.matches(ref)]
