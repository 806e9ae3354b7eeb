"""Use case: read the audit log."""

from __future__ import annotations

from collections.abc import Sequence

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
) -> Sequence[AuditEntry]:
    """List audit entries, newest first; page with ``before_id`` (the last id seen)."""
    with sf.uow() as uow:
        return uow.audit.list(app=app, stage=stage, actor=actor, before_id=before_id, limit=limit)
