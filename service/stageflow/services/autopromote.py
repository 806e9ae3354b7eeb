"""Auto-promotion: a state that has proven itself in one stage moves into the next by itself.

A stage with ``auto_promote: true`` *receives*: when the stage before it reports (a deployment
report) that it runs a state the receiving stage has not been offered yet, Stageflow opens the
same promotion a person would — requested by the system actor, with the same plan, gates, dry-run
diff and commit. It is applied at once when its gates hold, and otherwise waits and is re-evaluated
as every waiting promotion is (on checks, on deployment reports, on the periodic timer). Approvals
still need people: the system is the requester, and a requester never counts as an approver.

Never into a stage that is held (an automatic rollback holds the stage it reverted, so a rollback
pauses auto-promotion there until a person releases the hold), frozen, or whose plan carries a
rejected image version. Opening a promotion supersedes the one waiting into the same stage, so at
most one automatic promotion per app and stage is open: the newest proven state.
"""

from __future__ import annotations

import logging

from stageflow.domain import actors
from stageflow.domain.errors import StageflowError
from stageflow.domain.gates import Deployment, freeze_gate, hold_gate
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.pipeline import App, Stage
from stageflow.domain.promotions import Promotion
from stageflow.services import promotions
from stageflow.services.changes import Actor
from stageflow.services.context import Stageflow
from stageflow.services.state import snapshot

log = logging.getLogger(__name__)

SYSTEM = Actor(actors.AUTOMATION)
# How many earlier promotions of a source -> target pair are looked at to tell a new state.
_HISTORY = 50


def after_report(sf: Stageflow, app: App, stage: str, deployment: Deployment) -> Promotion | None:
    """A deployment report for ``stage`` arrived: offer its state to the next stage if it wants it.

    Returns the promotion opened (applied, or waiting on its gates), or None when nothing was
    opened. Never raises for a refusal: a report is recorded whether or not a promotion follows.
    """
    snap = snapshot(sf)
    target = snap.pipeline.next_stage(stage)
    if target is None or not target.auto_promote or deployment.health == "degraded":
        return None
    if deployment.content != snap.content(app, stage):
        return None  # a report about an older state of the stage: it is not what would move
    if _offered(sf, app.name, stage, target.name, deployment.content):
        return None
    paused = _paused(sf, app, target)
    if paused is not None:
        _audit_skip(sf, app.name, target.name, deployment, paused)
        return None
    try:
        return promotions.promote(
            sf,
            app.name,
            to=target.name,
            from_=stage,
            actor=SYSTEM,
            reason=f"automatic: {stage} runs {deployment.revision[:12]} ({deployment.health})",
        )
    except StageflowError as exc:  # nothing to promote, a rejected version, a clash of flags
        _audit_skip(sf, app.name, target.name, deployment, exc.message)
        log.info("auto-promotion of %s into %s skipped: %s", app.name, target.name, exc.message)
        return None


def _offered(sf: Stageflow, app: str, source: str, target: str, content: str) -> bool:
    """True when a promotion of this very state from ``source`` into ``target`` exists already.

    Whatever became of it (applied, waiting, cancelled by a person, failed), the state was
    offered: a second report of the same state opens nothing new.
    """
    with sf.uow() as uow:
        earlier = uow.promotions.list(app=app, source=source, target=target, limit=_HISTORY)
    return any(p.source_content == content for p in earlier)


def _paused(sf: Stageflow, app: App, target: Stage) -> str | None:
    """Why nothing may be opened into ``target`` now (a hold or a freeze), else None."""
    with sf.uow() as uow:
        hold = uow.holds.active(app.name, target.name)
        freezes = uow.freezes.active(target.name)
    for gate in (
        hold_gate(app.name, target.name, hold),
        freeze_gate(target.name, freezes, target.freeze_windows, sf.clock()),
    ):
        if not gate.holds:
            return gate.message
    return None


def _audit_skip(sf: Stageflow, app: str, target: str, deployment: Deployment, why: str) -> None:
    with sf.uow() as uow:
        uow.audit.add(
            AuditEntry(
                actor=actors.AUTOMATION,
                action="promotion.auto_skipped",
                app=app,
                stage=target,
                target=deployment.revision,
                after={"reason": why},
                revision=deployment.revision,
                at=sf.clock(),
            )
        )
        uow.commit()
