"""Notification targets (`notify:` in stageflow.yaml) and the messages they are sent.

A target names where to send (``url_env``: an environment variable, never a URL in Git), how
(``kind``: a Slack incoming webhook, a signed JSON webhook, or a CloudEvent) and which events
(``on``). One at the top level hears every stage; one inside a stage hears that stage's events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn, Protocol

from stageflow.domain.events import (
    APPROVAL_REQUESTED,
    CHECK_FAILED,
    GATE_FAILED,
    KINDS,
    PROMOTION_APPLIED,
    PROMOTION_BLOCKED,
    PROMOTION_FAILED,
    ROLLBACK,
    Event,
)

TARGET_KINDS: Final = ("slack", "webhook", "cloudevents")
# What a target hears when it says nothing (`on:` left out): what people act on.
DEFAULT_ON: Final = (
    CHECK_FAILED,
    GATE_FAILED,
    PROMOTION_BLOCKED,
    PROMOTION_FAILED,
    ROLLBACK,
    APPROVAL_REQUESTED,
    PROMOTION_APPLIED,
)
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEYS: Final = ("name", "kind", "url_env", "secret_env", "on")

KeyPath = tuple[str | int, ...]


class Reader(Protocol):
    """The part of stageflow.yaml's reader a `notify:` list is read with."""

    def fail(self, path: KeyPath, problem: str, fix: str) -> NoReturn: ...

    def mapping(self, value: object, path: KeyPath, example: str) -> Mapping[str, object]: ...

    def sequence(self, value: object, path: KeyPath, example: str) -> list[object]: ...

    def string(self, value: object, path: KeyPath, example: str) -> str: ...

    def name(self, value: object, path: KeyPath, what: str, example: str) -> str: ...

    def keys(
        self,
        value: Mapping[str, object],
        path: KeyPath,
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> None: ...


@dataclass(frozen=True)
class NotifyTarget:
    name: str
    kind: str
    url_env: str
    on: frozenset[str]
    secret_env: str | None = None
    stage: str | None = None  # None: every stage's events

    def wants(self, event: Event) -> bool:
        """Whether ``event`` is one this target hears."""
        if event.kind not in self.on:
            return False
        return self.stage is None or event.stage in (None, self.stage)


def parse_targets(
    reader: Reader, value: object, path: KeyPath, *, stage: str | None = None
) -> tuple[NotifyTarget, ...]:
    """Read a `notify:` list (top level, or inside the stage ``stage``)."""
    items = reader.sequence(value, path, "- {name: team, kind: slack, url_env: SLACK_URL}")
    return tuple(_target(reader, item, (*path, n), stage) for n, item in enumerate(items))


def _target(reader: Reader, value: object, path: KeyPath, stage: str | None) -> NotifyTarget:
    item = reader.mapping(value, path, "{name: team, kind: slack, url_env: SLACK_URL}")
    reader.keys(item, path, _KEYS, required=("name", "kind", "url_env"))
    name = reader.name(item["name"], (*path, "name"), "notification target", "team-slack")
    kind = reader.string(item["kind"], (*path, "kind"), "slack")
    if kind not in TARGET_KINDS:
        reader.fail((*path, "kind"), f"{kind!r} is not a kind", f"use {', '.join(TARGET_KINDS)}")
    url_env = _env(reader, item["url_env"], (*path, "url_env"))
    secret_env = None
    if item.get("secret_env") is not None:
        secret_env = _env(reader, item["secret_env"], (*path, "secret_env"))
    elif kind == "webhook":
        reader.fail(
            (*path, "secret_env"),
            "is missing: a webhook's body is signed (HMAC-SHA256)",
            "add secret_env: NAME_OF_THE_ENVIRONMENT_VARIABLE_WITH_THE_SECRET",
        )
    on: tuple[str, ...] = DEFAULT_ON
    if item.get("on") is not None:
        on = tuple(_kinds(reader, item["on"], (*path, "on")))
    return NotifyTarget(name, kind, url_env, frozenset(on), secret_env, stage)


def _env(reader: Reader, value: object, path: KeyPath) -> str:
    text = reader.string(value, path, "STAGEFLOW_NOTIFY_TEAM")
    if not _ENV_NAME.match(text):
        reader.fail(
            path,
            f"{text!r} is not an environment variable name",
            "name the variable that holds it (URLs and secrets never go into Git), "
            "like STAGEFLOW_NOTIFY_TEAM_SLACK",
        )
    return text


def _kinds(reader: Reader, value: object, path: KeyPath) -> list[str]:
    found = []
    for n, entry in enumerate(reader.sequence(value, path, "[rollback, check_failed]")):
        if entry not in KINDS:
            reader.fail((*path, n), f"{entry!r} is not an event kind", f"use {', '.join(KINDS)}")
        found.append(str(entry))
    return found


# -- the messages ------------------------------------------------------------------------------


def summary(event: Event) -> str:
    """One line a person reads: what happened, where."""
    where = "/".join(part for part in (event.app, event.stage) if part)
    what = event.kind.replace("_", " ")
    data = event.data
    detail = ""
    if event.kind == GATE_FAILED and data.get("failed_gates"):
        detail = f": {', '.join(data['failed_gates'])}"
    elif event.kind == CHECK_FAILED and event.subject:
        detail = f": {event.subject}"
    elif data.get("reason"):
        detail = f": {data['reason']}"
    subject = f" (promotion #{event.subject})" if event.subject and event.subject.isdigit() else ""
    revision = f" at {event.revision[:12]}" if event.revision else ""
    return f"Stageflow: {what} in {where or 'the pipeline'}{subject}{revision}{detail}"


def slack_message(event: Event, link: str) -> dict[str, Any]:
    """An incoming-webhook body: the summary, and a link to the dashboard."""
    text = f"{summary(event)} — <{link}|open in Stageflow>"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def webhook_body(event: Event, link: str) -> dict[str, Any]:
    return {**event.to_json(), "summary": summary(event), "link": link}


def link_of(event: Event, base_url: str) -> str:
    """The dashboard page that shows ``event``: its promotion, else its stage, else the pipeline."""
    base = base_url.rstrip("/")
    if event.subject and event.subject.isdigit() and event.kind != CHECK_FAILED:
        return f"{base}/promotions/{event.subject}"
    if event.app and event.stage:
        return f"{base}/apps/{event.app}/stages/{event.stage}"
    return f"{base}/"


# -- deliveries --------------------------------------------------------------------------------

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one target."""

    event_id: int
    target: str
    kind: str
    app: str | None
    stage: str | None
    status: str
    attempts: int
    created_at: datetime
    next_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "target": self.target,
            "kind": self.kind,
            "app": self.app,
            "stage": self.stage,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "next_at": self.next_at.isoformat() if self.status == PENDING else None,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "last_error": self.last_error,
        }


def backoff(attempts: int, base: float, cap: float = 300.0) -> timedelta:
    """Exponential: base, 2 base, 4 base, ... up to ``cap`` seconds between attempts."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


class DeliveryFailed(Exception):
    """A notification did not arrive; the message says why (it is shown as ``last_error``)."""
