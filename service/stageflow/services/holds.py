"""Use cases: freeze a stage for every app, or hold one app's stage (no promotion into it)."""

from __future__ import annotations

from datetime import datetime

from stageflow.domain.errors import Conflict, Invalid, NotFound
from stageflow.domain.gates import Freeze, Hold
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow
from stageflow.services.state import snapshot


def _entry(
    sf: Stageflow, actor: str, action: str, app: str | None, stage: str, after: object
) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action=action,
        app=app,
        stage=stage,
        after=after,
        at=sf.clock(),
    )


def freeze(
    sf: Stageflow, stage: str, *, reason: str, actor: str, until: datetime | None = None
) -> Freeze:
    """Freeze a stage: no promotion goes into it until it is thawed (or ``until`` passes)."""
    snapshot(sf).pipeline.stage(stage)
    if not reason.strip():
        raise Invalid("say why the stage is frozen (reason)")
    if until is not None and until <= sf.clock():
        raise Invalid("until is in the past; give a future time with a zone")
    item = Freeze(stage=stage, reason=reason.strip(), by=actor, until=until, at=sf.clock())
    with sf.uow() as uow:
        uow.freezes.add(item)
        uow.audit.add(_entry(sf, actor, "stage.freeze", None, stage, {"reason": reason}))
        uow.commit()
    return item


def thaw(sf: Stageflow, stage: str, *, actor: str) -> int:
    snapshot(sf).pipeline.stage(stage)
    with sf.uow() as uow:
        count = uow.freezes.release(stage, actor, sf.clock())
        if not count:
            raise NotFound(f"{stage} is not frozen", code="not_frozen")
        uow.audit.add(_entry(sf, actor, "stage.thaw", None, stage, None))
        uow.commit()
    return count


def hold(sf: Stageflow, app: str, stage: str, *, reason: str, actor: str) -> Hold:
    """Put one app's stage on hold: no promotion into it until a person releases it."""
    pipeline = snapshot(sf).pipeline
    pipeline.app(app)
    pipeline.stage(stage)
    if not reason.strip():
        raise Invalid("say why the stage is held (reason)")
    item = Hold(app=app, stage=stage, reason=reason.strip(), by=actor, at=sf.clock())
    with sf.uow() as uow:
        if uow.holds.active(app, stage) is not None:
            raise Conflict(f"{app} is on hold in {stage} already", code="already_held")
        uow.holds.add(item)
        uow.audit.add(_entry(sf, actor, "stage.hold", app, stage, {"reason": reason}))
        uow.commit()
    return item


def release(sf: Stageflow, app: str, stage: str, *, actor: str) -> int:
    pipeline = snapshot(sf).pipeline
    pipeline.app(app)
    pipeline.stage(stage)
    with sf.uow() as uow:
        count = uow.holds.release(app, stage, actor, sf.clock())
        if not count:
            raise NotFound(f"{app} is not on hold in {stage}", code="not_held")
        uow.audit.add(_entry(sf, actor, "stage.release", app, stage, None))
        uow.commit()
    return count


def active_freezes(sf: Stageflow) -> list[Freeze]:
    """Every stage's freezes in force now (an elapsed ``until`` no longer counts), stage order."""
    now = sf.clock()
    stages = snapshot(sf).pipeline.stage_names
    with sf.uow() as uow:
        found = [item for stage in stages for item in uow.freezes.active(stage)]
    return [item for item in found if item.until is None or item.until > now]
