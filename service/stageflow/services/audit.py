"""Use case: read the audit log, and record refused writes."""

from __future__ import annotations

from collections.abc import Sequence

from stageflow.domain.identity import ApiToken
from stageflow.domain.ledger import AuditEntry
from stageflow.services.context import Stageflow


def list_audit(
    sf: Stageflow,
    *,
    app: str | None = None,
    stage: str | None = None,
    actor: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
    reader: ApiToken | None = None,
) -> Sequence[AuditEntry]:
    """List audit entries, newest first; page with ``before_id`` (the last id seen).

    A ``reader`` with a limited scope sees the entries about its apps and stages, and its own.
    """
    with sf.uow() as uow:
        return uow.audit.list(
            app=app,
            stage=stage,
            actor=actor,
            before_id=before_id,
            limit=limit,
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
