"""The hub: reads the event log and fans it out to the open streams.

OFREP streams get the flag-change notices of their app and stage; the dashboard's pages (see
``app.py``) get every event their ``Watch`` sees, as a prompt to ask for their part again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from stageflow.domain.events import DEPLOYED, STATE_CHANGED, Event, Refetch, Watch, refetches
from stageflow.services import events as event_log
from stageflow.services.context import Stageflow
from stageflow.services.state import snapshot

log = logging.getLogger("stageflow.streams")

KINDS = (STATE_CHANGED, DEPLOYED)
_LOOK_BACK = 50  # event ids
Channel = tuple[str, str]


def _modes(sf: Stageflow) -> dict[str, str]:
    return {stage.name: stage.flag_events for stage in snapshot(sf).pipeline.stages}


def notices(sf: Stageflow, events: Sequence[Event]) -> list[Refetch]:
    """The refetch notices of ``events`` under the pipeline's current `flag_events` modes."""
    if not events:
        return []
    modes = _modes(sf)
    return [notice for event in events for notice in refetches(event, modes)]


def replay(sf: Stageflow, channel: Channel, after: int, *, limit: int = 1000) -> list[Refetch]:
    """The notices for ``channel`` after the event id ``after`` (a reconnect's Last-Event-ID)."""
    events = event_log.since(sf, after, limit=limit, kinds=KINDS, apps=(channel[0],))
    return [n for n in notices(sf, events) if (n.app, n.stage) == channel]


def replay_watch(sf: Stageflow, watch: Watch, after: int, *, limit: int = 1000) -> list[Event]:
    """The events a dashboard page missed after the id ``after`` (Last-Event-ID, or the last
    event id the page was rendered with)."""
    events = event_log.since(sf, after, limit=limit, apps=(watch.app,) if watch.app else ())
    return [event for event in events if watch.sees(event)]


def newest_per_channel(found: Sequence[Refetch]) -> list[Refetch]:
    """One notice per channel of those read together: the newest.

    Each notice is a write to every connection of its channel, and a client told to re-fetch
    reads the head whatever the etag, so older notices of the same read add work and nothing
    else (toggles in a burst make one notice a poll, not one each). The ids stay increasing on
    each connection; a reconnect's replay (``replay``) still lists every notice it missed.
    """
    newest: dict[Channel, Refetch] = {}
    for notice in found:
        channel = (notice.app, notice.stage)
        if channel not in newest or notice.id > newest[channel].id:
            newest[channel] = notice
    return list(newest.values())


class Hub:
    def __init__(self, sf: Stageflow, *, poll: float = 0.05) -> None:
        self.sf = sf
        self.poll = poll
        self.last_id = 0
        self.floor = 0  # events up to this id were there before the hub started
        self.seen: dict[int, None] = {}  # the ids near the end already handled, oldest first
        self.subscribers: dict[Channel, set[asyncio.Queue[Refetch | None]]] = defaultdict(set)
        self.watchers: dict[asyncio.Queue[Event | None], Watch] = {}  # the dashboard's open pages
        self.stopped = False

    def subscribe(self, channel: Channel) -> asyncio.Queue[Refetch | None]:
        queue: asyncio.Queue[Refetch | None] = asyncio.Queue(maxsize=100)
        self.subscribers[channel].add(queue)
        return queue

    def unsubscribe(self, channel: Channel, queue: asyncio.Queue[Refetch | None]) -> None:
        self.subscribers[channel].discard(queue)
        if not self.subscribers[channel]:
            del self.subscribers[channel]

    def watch(self, watch: Watch) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=100)
        self.watchers[queue] = watch
        return queue

    def unwatch(self, queue: asyncio.Queue[Event | None]) -> None:
        self.watchers.pop(queue, None)

    @property
    def connections(self) -> int:
        return sum(len(queues) for queues in self.subscribers.values()) + len(self.watchers)

    def stop(self) -> None:
        """End ``run`` after its current read: a read cut off by cancelling the task would go on
        in its thread and hold a database connection past the server's shutdown."""
        self.stopped = True

    async def run(self) -> None:
        """Read the event log for ever (from its end when started), fanning notices out."""
        self.last_id = self.floor = await run_in_threadpool(event_log.last_id, self.sf)
        while not self.stopped:
            try:
                await self.step()
            except Exception as exc:  # an outage: keep the connections, try again
                log.warning("reading the event log failed: %s", exc)
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.poll)

    async def step(self) -> int:
        events, found = await run_in_threadpool(self._read)
        for notice in newest_per_channel(found):
            for queue in list(self.subscribers.get((notice.app, notice.stage), ())):
                if queue.full():  # a client that does not read: it re-fetches on reconnect
                    continue
                queue.put_nowait(notice)
        for event in events:
            for page, watch in list(self.watchers.items()):
                if watch.sees(event) and not page.full():
                    page.put_nowait(event)
        return len(found)

    def _read(self) -> tuple[list[Event], list[Refetch]]:
        # PostgreSQL may commit a lower id after a higher one was read: look back a little
        # and skip what was handled already. Every kind is read (the dashboard's pages follow
        # them all; OFREP streams two), so that ids seen stay one sequence whoever connects.
        events = event_log.since(self.sf, max(0, self.last_id - _LOOK_BACK))
        new = [
            e for e in events if e.id is not None and e.id > self.floor and e.id not in self.seen
        ]
        for event in new:
            self.seen[event.id or 0] = None
            self.last_id = max(self.last_id, event.id or 0)
        while len(self.seen) > 4 * _LOOK_BACK:
            del self.seen[next(iter(self.seen))]
        return new, notices(self.sf, [event for event in new if event.kind in KINDS])
