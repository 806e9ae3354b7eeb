"""Ports of the event log and what reads it: the outbox, the evidence chain, the notification
deliveries and their sender."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from stageflow.domain.events import Event
from stageflow.domain.evidence import Evidence
from stageflow.domain.notify import Delivery, NotifyTarget


class EventLog(Protocol):
    """The outbox. Events are added by the audit log itself (``domain.events.events_of``)."""

    def add(self, event: Event) -> None: ...

    def after(
        self,
        after_id: int = 0,
        *,
        limit: int = 100,
        kinds: Sequence[str] = (),
        apps: Sequence[str] = (),
    ) -> Sequence[Event]: ...

    def last_id(self) -> int: ...

    def count_after(self, after_id: int) -> int:
        """How many events have an id above ``after_id`` (the notifier's cheap "anything new?")."""
        ...

    def get_many(self, ids: Sequence[int]) -> Sequence[Event]: ...

    def since(
        self, at: datetime, *, kinds: Sequence[str], app: str, stage: str | None = None
    ) -> Sequence[Event]: ...

    def first_with_revision(self, kind: str, revisions: Sequence[str]) -> dict[str, datetime]: ...


class EvidenceChain(Protocol):
    def tail(self) -> str | None: ...

    def add(self, evidence: Evidence) -> None: ...

    def get(self, promotion_id: int) -> Evidence | None: ...

    def chain(self, after_id: int = 0, limit: int = 500) -> Sequence[Evidence]: ...

    def missing(self, statuses: Sequence[str], limit: int) -> Sequence[int]:
        """The ids, oldest first, of those of the newest ``limit`` promotions in ``statuses``
        that have no record (ids only: the settler asks every few seconds)."""
        ...


class Notifications(Protocol):
    """Deliveries of events to notification targets, and how far the event log was read."""

    def cursor(self, name: str) -> int: ...

    def move_cursor(self, name: str, event_id: int) -> None: ...

    def add(self, delivery: Delivery) -> None: ...

    def made(self, event_ids: Sequence[int]) -> set[tuple[int, str]]:
        """The (event id, target) pairs of ``event_ids`` that have a delivery already."""
        ...

    def heads(self, now: datetime, *, limit: int = 500) -> Sequence[Delivery]: ...

    def claim(self, delivery_id: int, holder: str, now: datetime, until: datetime) -> bool: ...

    def settle(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_at: datetime,
        delivered_at: datetime | None,
        error: str | None,
    ) -> None: ...

    def list(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]: ...


class NotificationSender(Protocol):
    """Sends one event to one target; raises ``DeliveryFailed`` saying why it did not arrive."""

    def send(self, target: NotifyTarget, event: Event, link: str) -> None: ...
