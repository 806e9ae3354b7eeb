"""Facts the ledger keeps about changes: audit entries and idempotent answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AuditEntry:
    """Who did what, when, to which app / stage, and the revision it produced."""

    actor: str
    action: str
    app: str | None
    stage: str | None
    target: str | None
    before: Any
    after: Any
    revision: str | None
    change_id: str | None
    at: datetime
    id: int | None = None


@dataclass(frozen=True)
class IdempotentAnswer:
    """The first answer to a write sent with an Idempotency-Key (``status`` None = in flight)."""

    fingerprint: str
    status: int | None
    body: Any
    created_at: datetime
