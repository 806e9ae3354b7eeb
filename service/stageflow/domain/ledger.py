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
    at: datetime
    app: str | None = None
    stage: str | None = None
    target: str | None = None
    before: Any = None
    after: Any = None
    revision: str | None = None
    change_id: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class IdempotentAnswer:
    """The first answer to a write sent with an Idempotency-Key (``status`` None = in flight)."""

    fingerprint: str
    status: int | None
    body: Any
    created_at: datetime
    owner: str = ""
    key: str = ""
    claimed_by: str | None = None  # the process serving it while in flight
