"""Events: what happened, in the order it happened, for the consumers that tell people and clients.

Every event is derived from an audit entry by ``events_of`` and written by the audit log in the
same transaction as the entry (an outbox): nothing that changed can lack its event, and an event
never describes a change that was rolled back. Ids increase with every event, so a consumer keeps
one number (the last id it handled) and resumes there after a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from stageflow.domain.identity import Scope
from stageflow.domain.ledger import AuditEntry

# The kinds, as `notify: on:` names them.
PROMOTION_OPENED: Final = "promotion_opened"
PROMOTION_BLOCKED: Final = "promotion_blocked"
APPROVAL_REQUESTED: Final = "approval_requested"
APPROVAL_GIVEN: Final = "approval_given"
PROMOTION_APPLIED: Final = "promotion_applied"
PROMOTION_FAILED: Final = "promotion_failed"
PROMOTION_CANCELLED: Final = "promotion_cancelled"
PROMOTION_SUPERSEDED: Final = "promotion_superseded"
ROLLBACK: Final = "rollback"
GATE_FAILED: Final = "gate_failed"
CHECK_FAILED: Final = "check_failed"
CHECK_PASSED: Final = "check_passed"
STATE_CHANGED: Final = "state_changed"  # a commit changed a stage's flags or images
STAGE_HELD: Final = "stage_held"
STAGE_RELEASED: Final = "stage_released"
STAGE_FROZEN: Final = "stage_frozen"
STAGE_THAWED: Final = "stage_thawed"
DEPLOYED: Final = "deployed"  # a deployment report: what a stage runs now

KINDS: Final = (
    PROMOTION_OPENED,
    PROMOTION_BLOCKED,
    APPROVAL_REQUESTED,
    APPROVAL_GIVEN,
    PROMOTION_APPLIED,
    PROMOTION_FAILED,
    PROMOTION_CANCELLED,
    PROMOTION_SUPERSEDED,
    ROLLBACK,
    GATE_FAILED,
    CHECK_FAILED,
    CHECK_PASSED,
    STATE_CHANGED,
    STAGE_HELD,
    STAGE_RELEASED,
    STAGE_FROZEN,
    STAGE_THAWED,
    DEPLOYED,
)

# A promotion's status (the audit action `promotion.<status>`, or the status it was opened in)
# -> the event kind.
_BY_STATUS: Final = {
    "applying": PROMOTION_OPENED,
    "blocked": PROMOTION_BLOCKED,
    "pending_approval": APPROVAL_REQUESTED,
    "applied": PROMOTION_APPLIED,
    "failed": PROMOTION_FAILED,
    "cancelled": PROMOTION_CANCELLED,
    "superseded": PROMOTION_SUPERSEDED,
    "rolled_back": ROLLBACK,
}
_BY_ACTION: Final = {
    "promotion.approve": APPROVAL_GIVEN,
    "check.failed": CHECK_FAILED,
    "check.passed": CHECK_PASSED,
    "stage.hold": STAGE_HELD,
    "stage.release": STAGE_RELEASED,
    "stage.freeze": STAGE_FROZEN,
    "stage.thaw": STAGE_THAWED,
}
# Commits that change a stage's desired state (the promotion's own events say the rest).
_STATE_PREFIXES: Final = (
    "flag.",
    "image.",
    "promotion.apply",
    "promotion.rollback",
)


@dataclass(frozen=True)
class Event:
    """One thing that happened; ``id`` is given by the event log and increases."""

    kind: str
    at: datetime
    actor: str
    app: str | None = None
    stage: str | None = None
    subject: str | None = None  # a promotion id, a check kind, a revision
    revision: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "app": self.app,
            "stage": self.stage,
            "subject": self.subject,
            "revision": self.revision,
            "data": self.data,
        }


_EVENT_ID = re.compile(r"[0-9]{1,12}")


def event_id(text: str | None) -> int | None:
    """An event id a client sent back (``Last-Event-ID``, ``after``), or None for anything else
    (``str.isdigit`` takes "²" and a thousand digits, which no query can use)."""
    return int(text) if text is not None and _EVENT_ID.fullmatch(text) else None


def events_of(entry: AuditEntry) -> list[Event]:
    """The events an audit entry stands for (none for most: token changes, refusals, ...)."""
    kinds = _kinds(entry)
    after = dict(entry.after) if isinstance(entry.after, dict) else {}
    if kinds == [STATE_CHANGED]:
        after = {"action": entry.action}  # what the commit did (the flag itself is in Git)
    return [
        Event(
            kind=kind,
            at=entry.at,
            actor=entry.actor,
            app=entry.app,
            stage=entry.stage,
            subject=entry.target,
            revision=entry.revision,
            data=dict(after),
        )
        for kind in kinds
    ]


def _kinds(entry: AuditEntry) -> list[str]:
    action = entry.action
    after = entry.after if isinstance(entry.after, dict) else {}
    if action in _BY_ACTION:
        return [_BY_ACTION[action]]
    if action.startswith(_STATE_PREFIXES) and entry.revision:
        return [STATE_CHANGED]
    if not action.startswith("promotion."):
        return []
    status = after.get("status") if action == "promotion.create" else action.split(".", 1)[1]
    kind = _BY_STATUS.get(str(status))
    if kind is None:
        return []
    found = [kind]
    if after.get("failed_gates"):  # a gate that failed (not merely pending) blocks it
        found.append(GATE_FAILED)
    return found


# -- flag-change notices (OFREP event streams) --------------------------------------------------

# Commits that may change a stage's flags file.
_FLAG_ACTIONS: Final = ("flag.", "promotion.apply", "promotion.rollback")


@dataclass(frozen=True)
class Refetch:
    """Tell the clients of one app and stage to fetch their flags again (OFREP ADR-0008)."""

    id: int
    app: str
    stage: str
    etag: str  # the flag configuration's version: the revision it is in
    last_modified: int  # unix seconds

    def data(self) -> dict[str, Any]:
        return {"type": "refetchEvaluation", "etag": self.etag, "lastModified": self.last_modified}


def refetches(event: Event, stages: dict[str, str]) -> list[Refetch]:
    """The notices ``event`` gives, for an app whose stages tell clients ``stages[name]``
    (``commit``: once the change is pushed; ``live``: once a deployment report says the stage
    runs a revision whose flags differ from what it ran before)."""
    if event.id is None or event.app is None or not event.revision:
        return []
    when = int(event.at.timestamp())
    if event.kind == STATE_CHANGED and str(event.data.get("action", "")).startswith(_FLAG_ACTIONS):
        touched = [event.stage] if event.stage else list(stages)
        return [
            Refetch(event.id, event.app, stage, event.revision, when)
            for stage in touched
            if stages.get(stage) == "commit"
        ]
    if (
        event.kind == DEPLOYED
        and event.stage is not None
        and stages.get(event.stage) == "live"
        and event.data.get("flags") != event.data.get("flags_before")
    ):
        return [Refetch(event.id, event.app, event.stage, event.revision, when)]
    return []


# -- dashboard notices (the dashboard's pages follow the event log) ------------------------------


@dataclass(frozen=True)
class Watch:
    """What one open dashboard page follows: the events its token's scope covers, narrowed to
    an app (and a stage) when the page shows only that.

    An event without a stage (a change to every stage of an app) concerns every stage's page,
    as ``Scope.covers`` lets it through for every stage-scoped token (``GET /api/v1/events``
    decides the same way).
    """

    scope: Scope
    app: str | None = None
    stage: str | None = None

    def sees(self, event: Event) -> bool:
        if not self.scope.covers(event.app, event.stage):
            return False
        if self.app is not None and event.app != self.app:
            return False
        return self.stage is None or event.stage in (None, self.stage)


def page_notice(event: Event) -> dict[str, Any]:
    """What a page is told of an event: its kind and ids, nothing of its data (the page asks
    the dashboard again, under its own access check, for what changed)."""
    return {
        "id": event.id,
        "kind": event.kind,
        "app": event.app,
        "stage": event.stage,
        "subject": event.subject,
        "revision": event.revision,
    }
