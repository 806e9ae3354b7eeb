"""Use cases: roll a promotion back by hand, or at once when its state fails in the cluster."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from stageflow.domain import actors
from stageflow.domain.errors import Conflict, NotFound, StageflowError, Unavailable
from stageflow.domain.hooks import Restore
from stageflow.domain.images import ImageRef
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import Promotion, PromotionStatus, Rejection
from stageflow.services import holds, promotions
from stageflow.services.changes import Actor, Outcome, commit_change, recorded_later
from stageflow.services.context import Stageflow
from stageflow.services.policy_renders import remember
from stageflow.services.ports import Change, Committed, Workspace
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
    promoted = _applied_revision(promotion)
    parent = sf.repo.parent_of(promoted)
    if parent is None:  # pragma: no cover - a promotion is never the root commit
        raise Conflict("the promotion commit has no parent to restore")
    why = reason or ("automatic: its state failed in the cluster" if automatic else "by hand")
    operation = RollbackWrite(sf, promotion, promoted, parent, why, automatic=automatic)
    done = commit_change(
        sf,
        actor,
        operation,
        trailers={"Stageflow-Rollback": str(promotion_id)},
        on_pushed=lambda pushed: _note_restore(sf, promotion, pushed),
    )
    try:
        return _rolled_back(sf, promotion, done.revision, actor.name, why, automatic=automatic)
    except Unavailable as exc:
        sf.ledger_outage.failed()
        raise recorded_later(done.revision, exc) from exc


def _applied_revision(promotion: Promotion) -> str:
    """The commit an applied promotion made; any other promotion is a 409 saying why."""
    if promotion.status == PromotionStatus.ROLLED_BACK:
        raise Conflict(
            f"promotion {promotion.id} is rolled back already (commit "
            f"{(promotion.rolled_back_revision or '')[:12]})",
            code="already_rolled_back",
        )
    if promotion.status != PromotionStatus.APPLIED or promotion.revision is None:
        raise Conflict(
            f"promotion {promotion.id} is {promotion.status}; only applied promotions roll back",
            code="promotion_not_applied",
        )
    return promotion.revision


@dataclass(frozen=True)
class RollbackWrite:
    """The rollback of ``promotion`` as a Git operation: its target files as at ``parent``."""

    sf: Stageflow
    promotion: Promotion
    promoted: str  # the commit the promotion made
    parent: str  # the commit before it: what the target overlay goes back to
    why: str
    automatic: bool = False

    def __call__(self, ws: Workspace) -> Change[Outcome]:
        promotion = self.promotion
        app = pipeline_in(self.sf, ws).app(promotion.app)
        paths = [kustomization_path(app, promotion.target), flags_path(app, promotion.target)]
        self._refuse_later_changes(ws, paths)
        for path in paths:
            before = self.sf.repo.read(self.parent, path)
            if before is None:
                ws.delete(path)
            else:
                ws.write(path, before)
        text = self.sf.renderer.render(ws.directory(app.overlay_path(promotion.target)))
        remember(self.sf, ws, app, promotion.target, text)  # the policy step's render
        return Change(
            f"{app.name}: roll back promotion {promotion.id} in {promotion.target}\n\n{self.why}",
            Outcome(
                "promotion.rollback",
                app.name,
                promotion.target,
                str(promotion.id),
                dict(promotion.plan_json),
                {"reason": self.why, "automatic": self.automatic},
            ),
            # what the settler needs to finish the rollback should this process die after the push
            trailers={AUTOMATIC_TRAILER: "true"} if self.automatic else {},
        )

    def _refuse_later_changes(self, ws: Workspace, paths: list[str]) -> None:
        """A file changed since the promotion: rolling back would undo that change too (409)."""
        for path in paths:
            if ws.read(path) != self.sf.repo.read(self.promoted, path):
                later = self.sf.repo.last_change(ws.revision, [path]) or "?"
                raise Conflict(
                    f"{path} changed after promotion {self.promotion.id} (in commit "
                    f"{later[:12]}); rolling back would undo that change too. Revert it first, "
                    "or fix the overlay by hand.",
                    code="rollback_conflict",
                    details={"path": path, "commit": later},
                )


AUTOMATIC_TRAILER = "Stageflow-Rollback-Automatic"


def _note_restore(sf: Stageflow, promotion: Promotion, pushed: Committed[Outcome]) -> None:
    """Start timing the restore: the revert is pushed; the controller and the stage follow."""
    assert promotion.id is not None and pushed.pushed_at is not None
    app = snapshot(sf, pushed.revision).pipeline.app(promotion.app)
    with sf.uow() as uow:
        uow.restores.add(
            Restore(
                promotion_id=promotion.id,
                app=promotion.app,
                stage=promotion.target,
                revision=pushed.revision,
                content=content_at(sf, pushed.revision, app, promotion.target),
                pushed_at=pushed.pushed_at,
            )
        )
        uow.commit()


def restore_of(sf: Stageflow, promotion_id: int) -> Restore | None:
    """How long rolling back ``promotion_id`` took to restore its stage (None: not rolled back
    by this version of Stageflow, or its record could not be written)."""
    with sf.uow() as uow:
        return uow.restores.get(promotion_id)


def _rolled_back(
    sf: Stageflow, promotion: Promotion, revision: str, actor: str, why: str, *, automatic: bool
) -> Promotion:
    """Record a pushed rollback of an applied promotion (once: the first to record it wins)."""
    assert promotion.revision is not None
    rolled, moved = promotions.finish_once(
        sf,
        promotion,
        PromotionStatus.ROLLED_BACK,
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
    if (
        promotion is None
        or promotion.status != PromotionStatus.APPLIED
        or promotion.revision is None
    ):
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
            app=app.name, target=stage.name, statuses=[PromotionStatus.APPLIED], limit=20
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
