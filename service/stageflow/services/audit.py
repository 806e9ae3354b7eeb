"""Use case: read the audit log, and record refused writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.domain.identity import ApiToken
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow


@dataclass(frozen=True)
class AuditQuery:
    """Which audit entries to list: filters (None: any), and a page of ``limit`` before an id."""

    app: str | None = None
    stage: str | None = None
    actor: str | None = None
    before_id: int | None = None  # the last id of the previous page
    limit: int = 100


def list_audit(
    sf: Stageflow, query: AuditQuery | None = None, *, reader: ApiToken | None = None
) -> Sequence[AuditEntry]:
    """List audit entries, newest first; page with ``query.before_id`` (the last id seen).

    A ``reader`` with a limited scope sees the entries about its apps and stages, and its own.
    """
    query = query or AuditQuery()
    with sf.uow() as uow:
        return uow.audit.list(
            app=query.app,
            stage=query.stage,
            actor=query.actor,
            before_id=query.before_id,
            limit=query.limit,
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
