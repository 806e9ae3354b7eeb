"""Promotion evidence: what a settled promotion was based on, as one tamper-evident record.

Each record is canonical JSON (sorted keys, no spaces) stored verbatim, and its digest is
SHA-256 over the previous record's digest and these bytes: ``sha256(previous + "\\n" + record)``.
The first record links to ``GENESIS``. Changing any byte of a stored record changes its digest;
changing the stored digest as well breaks the next record's link. ``verify`` names the first
record where either happens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from stageflow.domain.promotions import Promotion

GENESIS: Final = "0" * 64


@dataclass(frozen=True)
class Evidence:
    """One stored record of the chain."""

    promotion_id: int
    record: str  # canonical JSON, exactly the bytes the digest covers
    digest: str
    previous_digest: str
    at: datetime
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "promotion_id": self.promotion_id,
            "at": self.at.isoformat(),
            "record": json.loads(self.record),
            "digest": self.digest,
            "previous_digest": self.previous_digest,
        }


@dataclass(frozen=True)
class Break:
    """Where a chain stops verifying: the record and what is wrong with it."""

    id: int | None
    promotion_id: int
    problem: str


def canonical(record: Mapping[str, Any]) -> str:
    """The one text of ``record`` that is hashed and stored."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_of(previous: str, record: str) -> str:
    return hashlib.sha256(f"{previous}\n{record}".encode()).hexdigest()


def link(promotion_id: int, record: Mapping[str, Any], previous: str, at: datetime) -> Evidence:
    """A new record chained after the one whose digest is ``previous``."""
    text = canonical(record)
    return Evidence(promotion_id, text, digest_of(previous, text), previous, at)


def verify(chain: Iterable[Evidence], start: str = GENESIS) -> Break | None:
    """Check every record's digest and link, in chain order; return the first break, else None."""
    previous = start
    for entry in chain:
        if entry.previous_digest != previous:
            return Break(
                entry.id,
                entry.promotion_id,
                f"links to {entry.previous_digest[:12]}, but the record before it has digest "
                f"{previous[:12]} (a record was removed, inserted or its digest changed)",
            )
        if digest_of(entry.previous_digest, entry.record) != entry.digest:
            return Break(
                entry.id,
                entry.promotion_id,
                "its content does not match its digest (the stored record was changed)",
            )
        previous = entry.digest
    return None


def record_of(
    promotion: Promotion, *, commit_message: str | None, seen_at: datetime
) -> dict[str, Any]:
    """The evidence of a settled promotion: the plan, the diff's digest, every gate with the
    values behind it, soak, approvals, freezes and holds seen, the commit and its trailers."""
    gates = [gate.to_json() for gate in promotion.gates]
    return {
        "promotion": promotion.id,
        "app": promotion.app,
        "from": promotion.source,
        "to": promotion.target,
        "status": promotion.status,
        "requested_by": promotion.requested_by,
        "automatic": promotion.automatic,
        "reason": promotion.reason,
        "opened_at": promotion.created_at.isoformat(),
        "settled_at": promotion.updated_at.isoformat(),
        "recorded_at": seen_at.isoformat(),
        "plan": dict(promotion.plan_json),
        "diff_sha256": hashlib.sha256(promotion.diff.encode()).hexdigest(),
        "diff_lines": promotion.diff.count("\n"),
        # the last evaluation's gates: metric values and queries, checks, deployment reports
        "gates_evaluated_at": promotion.updated_at.isoformat(),
        "gates": gates,
        "soak": _kind(gates, "soak"),
        "freeze": _kind(gates, "freeze"),
        "hold": _kind(gates, "hold"),
        "approvals": [approval.to_json() for approval in promotion.approvals],
        "commit": {
            "revision": promotion.revision,
            "base_revision": promotion.base_revision,
            "source_revision": promotion.source_revision,
            "source_content": promotion.source_content,
            "message": commit_message,
            "trailers": trailers_of(commit_message or ""),
        },
    }


def trailers_of(message: str) -> dict[str, str]:
    """Git trailers (``Key: value`` lines of the last paragraph) of a commit message."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    found = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            found[key] = value.strip()
    return found


def _kind(gates: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((gate for gate in gates if gate.get("kind") == kind), None)
