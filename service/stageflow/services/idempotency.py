"""Idempotency keys: the same key with the same request returns the first answer, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stageflow.domain.errors import Conflict, IdempotencyMismatch
from stageflow.domain.ledger import IdempotentAnswer
from stageflow.services.context import Stageflow

# A claim older than this belongs to a request that died (a write takes seconds at most), so a
# retry may take it over instead of waiting forever.
STALE_CLAIM = timedelta(minutes=2)


def claim(sf: Stageflow, owner: str, key: str, fingerprint: str) -> IdempotentAnswer | None:
    """Return the stored answer for a repeated request, or claim the key and return None."""
    now = sf.clock()
    with sf.uow() as uow:
        for _ in range(2):
            found = uow.idempotency.get(owner, key)
            if found is not None:
                if found.fingerprint != fingerprint:
                    raise IdempotencyMismatch(
                        f"Idempotency-Key {key!r} was used before for a different request; use a "
                        "new key for a new request"
                    )
                if found.status is not None:
                    return found
                if now - found.created_at < STALE_CLAIM:
                    raise Conflict(
                        f"a request with Idempotency-Key {key!r} is still in progress; retry in a "
                        "few seconds to get its answer",
                        code="idempotency_in_progress",
                    )
                uow.idempotency.forget(owner, key)
            if uow.idempotency.begin(owner, key, fingerprint, now):
                uow.commit()
                return None
    raise Conflict(
        f"a request with Idempotency-Key {key!r} is in progress", code="idempotency_in_progress"
    )


def remember(sf: Stageflow, owner: str, key: str, status: int, body: Any) -> None:
    with sf.uow() as uow:
        uow.idempotency.finish(owner, key, status, body, sf.clock())
        uow.commit()


def release(sf: Stageflow, owner: str, key: str) -> None:
    """Drop a claim whose request failed, so that a corrected retry can use the key."""
    with sf.uow() as uow:
        uow.idempotency.forget(owner, key)
        uow.commit()
