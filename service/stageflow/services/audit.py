"""Use case: read the audit log, and record refused writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.domain.identity import ApiToken
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow


@dataclass(frozen=True)
class AuditPageRequest:
    """A reader's request for one page of the audit log: filters (None: any), and ``limit``
    entries before an id. The ledger port's ``AuditFilter`` is what ``list_audit`` turns it
    into, with the reader's scope added."""

    app: str | None = None
    stage: str | None = None
    actor: str | None = None
    before_id: int | None = None  # the last id of the previous page
    limit: int = 100


def list_audit(
    sf: Stageflow, wanted: AuditPageRequest | None = None, *, reader: ApiToken | None = None
) -> Sequence[AuditEntry]:
    """List audit entries, newest first; page with ``wanted.before_id`` (the last id seen).

    A ``reader`` with a limited scope sees the entries about its apps and stages, and its own.
    """
    wanted = wanted or AuditPageRequest()
    with sf.uow() as uow:
        return uow.audit.list(
            app=wanted.app,
            stage=wanted.stage,
            actor=wanted.actor,
            before_id=wanted.before_id,
            limit=wanted.limit,
            scope=reader.scope if reader else None,
            own_actor=reader.owner if reader else None,
        )


def record_refusal(
    sf: Stageflow, *, actor: str, action: str, app: str | None, stage: str | None, reason: str
) -> None:
    """Write down a write that was refused (who tried what), so that attempts leave a trace."""
    with sf.uow() as uow:
        uow.audit.add(
            AuditEntry(
                actor=actor,
                action="refused",
                app=app,
                stage=stage,
                target=action,
                after={"reason": reason},
                at=sf.clock(),
            )
        )
        uow.commit()
