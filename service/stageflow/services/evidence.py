"""Use cases of promotion evidence: record a settled promotion's evidence, read and check it.

A record is written when a promotion settles (applied, or failed after it was applied or
attempted), chained to the record before it (``domain.evidence``). Appends take turns on one
database lock, so the chain is one line across every worker and replica. The settler records
what a crash between settling and recording left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from stageflow.domain import evidence as chain
from stageflow.domain.errors import NotFound, StageflowError
from stageflow.domain.evidence import Break, Evidence
from stageflow.domain.promotions import Promotion
from stageflow.services.context import Stageflow

log = logging.getLogger(__name__)

# The statuses a promotion settles in, that get a record.
SETTLED = ("applied", "failed")
_LOCK = "stageflow-evidence-chain"


def record(sf: Stageflow, promotion: Promotion) -> Evidence | None:
    """Append ``promotion``'s evidence to the chain (once; a second call returns the first)."""
    if promotion.id is None or promotion.status not in SETTLED:
        return None
    message = _message(sf, promotion.revision)
    body = chain.record_of(promotion, commit_message=message, seen_at=sf.clock())
    with sf.uow() as uow:
        uow.serialize(_LOCK)  # one appender at a time: the tail read here stays the tail
        existing = uow.evidence.get(promotion.id)
        if existing is not None:
            return existing
        entry = chain.link(promotion.id, body, uow.evidence.tail() or chain.GENESIS, sf.clock())
        uow.evidence.add(entry)
        uow.commit()
    return entry


def record_settled(sf: Stageflow, promotion: Promotion) -> None:
    """Record ``promotion``'s evidence if it settled; a failure is left to the settler."""
    if promotion.status not in SETTLED:
        return
    try:
        record(sf, promotion)
    except StageflowError as exc:
        log.warning("evidence of promotion %s left to the settler: %s", promotion.id, exc.message)


def record_missing(sf: Stageflow, *, limit: int = 100) -> list[int]:
    """Record settled promotions that lack evidence (a crash between settling and recording).

    The settler calls this every few seconds in every process and the usual answer is none:
    one query of ids, and only a promotion that lacks its record is read.
    """
    with sf.uow() as uow:
        missing = uow.evidence.missing(SETTLED, limit)  # oldest first: the chain keeps the order
    done = []
    for promotion_id in missing:
        try:
            with sf.uow() as uow:
                promotion = uow.promotions.get(promotion_id)
            if promotion is not None and record(sf, promotion) is not None:
                done.append(promotion_id)
        except StageflowError as exc:
            log.warning("evidence of promotion %s: %s", promotion_id, exc.message)
    return done


def of_promotion(sf: Stageflow, promotion_id: int) -> Evidence:
    with sf.uow() as uow:
        found = uow.evidence.get(promotion_id)
        if found is not None:
            return found
        promotion = uow.promotions.get(promotion_id)
    if promotion is None:
        raise NotFound(f"no promotion {promotion_id}", code="promotion_not_found")
    raise NotFound(
        f"promotion {promotion_id} is {promotion.status}: evidence is recorded when a promotion "
        f"settles ({' or '.join(SETTLED)})",
        code="evidence_not_found",
    )


def page(sf: Stageflow, *, after: int = 0, limit: int = 500) -> Sequence[Evidence]:
    with sf.uow() as uow:
        return uow.evidence.chain(after, limit)


def verify(sf: Stageflow) -> tuple[int, Break | None]:
    """Check the whole chain from its first record; return how many records were read."""
    read, after, previous = 0, 0, chain.GENESIS
    while True:
        batch = page(sf, after=after)
        if not batch:
            return read, None
        broken = chain.verify(batch, start=previous)
        if broken is not None:
            return read, broken
        read += len(batch)
        after, previous = batch[-1].id or 0, batch[-1].digest


def _message(sf: Stageflow, revision: str | None) -> str | None:
    if revision is None or sf.history is None:
        return None
    try:
        return sf.history.message_of(revision)
    except StageflowError as exc:
        log.warning("evidence: the commit message of %s: %s", revision[:12], exc.message)
        return None
