"""Use cases of the event log: read it from a point on, as a token's scope allows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.domain.events import Event
from stageflow.domain.identity import Scope
from stageflow.domain.notify import Delivery
from stageflow.services.context import Stageflow


@dataclass(frozen=True)
class Page:
    items: Sequence[Event]
    next: int | None  # the last id read, when there may be more (pass it as ``after``)


def page(
    sf: Stageflow,
    scope: Scope,
    *,
    after: int = 0,
    limit: int = 100,
    kinds: Sequence[str] = (),
    app: str | None = None,
) -> Page:
    """Events with an id above ``after``, oldest first, of the apps and stages ``scope`` covers.

    ``limit`` rows are read; those outside the scope are left out of the page, so a page may be
    shorter than ``limit`` and still have a ``next``.
    """
    with sf.uow() as uow:
        read = uow.events.after(after, limit=limit, kinds=kinds, apps=(app,) if app else ())
    items = [event for event in read if scope.covers(event.app, event.stage)]
    return Page(items, read[-1].id if len(read) == limit else None)


def deliveries(
    sf: Stageflow,
    scope: Scope,
    *,
    status: str | None = None,
    target: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> tuple[Sequence[Delivery], int | None]:
    """Notification deliveries, newest first, of events the token's scope covers."""
    with sf.uow() as uow:
        read = uow.notifications.list(status=status, target=target, before_id=before, limit=limit)
    items = [d for d in read if scope.covers(d.app, d.stage)]
    return items, (read[-1].id if len(read) == limit else None)


def since(
    sf: Stageflow,
    after: int,
    *,
    limit: int = 1000,
    kinds: Sequence[str] = (),
    apps: Sequence[str] = (),
) -> Sequence[Event]:
    """Events with an id above ``after``, oldest first, whatever the scope (the event-stream
    server's hub and replays: each connection's own rule decides what it hears)."""
    with sf.uow() as uow:
        return uow.events.after(after, limit=limit, kinds=kinds, apps=apps)


def last_id(sf: Stageflow) -> int:
    """The newest event's id (0 without any): where a page that is being rendered now would
    resume following the log."""
    with sf.uow() as uow:
        return uow.events.last_id()
