"""Idempotency keys: the same key with the same request returns the first answer, once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stageflow.domain.errors import Conflict, IdempotencyMismatch, Unavailable
from stageflow.domain.ledger import IdempotentAnswer
from stageflow.services import replicas
from stageflow.services.context import Stageflow

# A claim that names no process (made before claims did) belongs to a request that died once it
# is this old (a write takes seconds at most), so a retry may take it over.
STALE_CLAIM = timedelta(minutes=2)
_CHANGE_IDS = uuid.UUID("6f1c2a8e-52d4-4a8f-9a51-3c0f1f0b7d11")


@dataclass(frozen=True)
class Claim:
    """This request holds the key now; ``taken_over``: from an earlier request that died."""

    change_id: str
    taken_over: bool = False


def change_id(owner: str, key: str) -> str:
    """Return the change id (the ``Stageflow-Change`` trailer) of the request under ``key``.

    Derived from the key, so a retry after a crash can find the commit its first try pushed.
    """
    return str(uuid.uuid5(_CHANGE_IDS, f"{owner}\0{key}"))


def working_on(owner: str, key: str) -> str:
    """What `Stageflow.in_flight` holds while this process serves the request under ``key``."""
    return f"idempotency:{owner}:{key}"


def _dead(sf: Stageflow, found: IdempotentAnswer, owner: str, key: str) -> bool:
    if found.claimed_by == "":  # freed by the settler
        return True
    return replicas.gone(
        sf,
        found.claimed_by,
        since=found.created_at,
        working_on=working_on(owner, key),
        stale=STALE_CLAIM,
    )


def claim(sf: Stageflow, owner: str, key: str, fingerprint: str) -> IdempotentAnswer | Claim:
    """Return the stored answer for a repeated request, or claim the key for this one."""
    now = sf.clock()
    taken_over = False
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
                if not _dead(sf, found, owner, key):
                    raise Conflict(
                        f"a request with Idempotency-Key {key!r} is still in progress; retry in a "
                        "few seconds to get its answer",
                        code="idempotency_in_progress",
                    )
                uow.idempotency.forget(owner, key)
                taken_over = True
            if uow.idempotency.begin(owner, key, fingerprint, now, claimed_by=replicas.me()):
                uow.commit()
                return Claim(change_id(owner, key), taken_over)
    raise Conflict(
        f"a request with Idempotency-Key {key!r} is in progress", code="idempotency_in_progress"
    )


def committed_before(sf: Stageflow, claim_: Claim) -> str | None:
    """The commit that the dead request of a taken-over key pushed, if it got that far."""
    if not claim_.taken_over:
        return None
    return sf.repo.find_trailer("Stageflow-Change", claim_.change_id)


def remember(sf: Stageflow, owner: str, key: str, status: int, body: Any) -> None:
    with sf.uow() as uow:
        uow.idempotency.finish(owner, key, status, body, sf.clock())
        uow.commit()


def release(sf: Stageflow, owner: str, key: str) -> None:
    """Drop a claim whose request failed, so that a corrected retry can use the key.

    When the ledger is down the claim stays; the settler frees it once it is back (this process
    no longer works on it).
    """
    try:
        with sf.uow() as uow:
            uow.idempotency.forget(owner, key)
            uow.commit()
    except Unavailable:
        sf.ledger_outage.failed()


def free_dead_claims(sf: Stageflow) -> int:
    """Free the keys whose request died (its process is gone, or no longer serves it).

    A freed key is taken over by the next request with it, which first looks for the commit
    the dead one may have pushed (``committed_before``).
    """
    with sf.uow() as uow:
        waiting = uow.idempotency.in_progress()
    freed = 0
    for found in waiting:
        if not _dead(sf, found, found.owner, found.key):
            continue
        with sf.uow() as uow:
            # Only while the same dead process holds it: a retry may have taken it over since.
            if uow.idempotency.free_claim(found.owner, found.key, found.claimed_by):
                freed += 1
            uow.commit()
    return freed
