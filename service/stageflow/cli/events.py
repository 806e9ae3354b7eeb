"""`stageflow events` and `stageflow notifications`: the event log and its deliveries, without curl.

`events --follow` polls ``GET /api/v1/events?after=<last id>`` (the log's ids only grow, so the
last id seen is the whole cursor) and prints what is new, as ``kubectl get events -w`` does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from stageflow.cli.connection import Api
from stageflow.cli.options import MIN_INTERVAL, Duration, client_command, gathered
from stageflow.cli.output import (
    OK,
    UNAVAILABLE,
    Failure,
    emit,
    mark,
    rows,
    short,
    stdout,
    table,
    to_yaml,
)
from stageflow.domain.events import KINDS

# A delivery's last error is a receiver's answer or an exception's text: long, and one line of a
# table is enough to see which it was (-o json has all of it).
ERROR_WIDTH = 60
# While the server cannot be reached, --follow waits at most this many --interval between tries.
BACKOFF_CAP = 10


# -- rendering --------------------------------------------------------------------------------


def event_table(*, header: bool = True) -> Table:
    """The events' columns; minimum widths keep the batches --follow prints under each other
    aligned (each batch is its own table, the header only above the first)."""
    made = table("ID", "TIME", "KIND", "APP", "STAGE", "SUBJECT", "REVISION", "ACTOR")
    made.show_header = header
    for column, width in zip(made.columns, (6, 19, 20, 8, 11, 16, 8, 10), strict=True):
        column.min_width = width
    return made


def event_rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            e["id"],
            str(e.get("at") or "")[:19],
            mark(str(e.get("kind"))),
            e.get("app"),
            e.get("stage"),
            e.get("subject"),
            short(e.get("revision")),
            e.get("actor"),
        )
        for e in items
    ]


def clipped(text: str | None, width: int = ERROR_WIDTH) -> str | None:
    """One line of at most ``width`` characters, with an ellipsis when something was cut."""
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


# -- following --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """--app, --kind, --after, --limit: which events, from where, how many per request."""

    app: str | None
    kinds: tuple[str, ...]
    after: int
    limit: int

    def query(self) -> dict[str, Any]:
        """The API's query parameters besides ``after`` (which --follow moves on)."""
        return {"app": self.app, "kind": list(self.kinds) or None, "limit": self.limit}


@dataclass(frozen=True)
class Following:
    """--follow, --interval, --for: whether to keep asking for new events, how often, how long."""

    follow: bool
    interval: float
    for_: float | None


class Printer:
    """Prints batches of events as they arrive: table rows (the header once), or one JSON object
    per line (for `jq`), or one YAML document per event."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.header = True
        self.count = 0

    def __call__(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        self.count += len(items)
        if self.fmt == "json":
            for event in items:
                click.echo(json.dumps(event, default=str))
        elif self.fmt == "yaml":
            for event in items:
                click.echo("---\n" + to_yaml(event), nl=False)
        else:
            made = event_table(header=self.header)
            self.header = False
            stdout().print(rows(made, event_rows(items)))
            sys.stdout.flush()  # a pipe reading along gets each batch as it comes


class Poller:
    """Reads every event after a cursor, page after page; keeps trying, and says so on stderr,
    while the server cannot be reached (connection refused, timeout, 5xx, 429)."""

    def __init__(self, api: Api, query: dict[str, Any], after: int, interval: float) -> None:
        self.api = api
        self.query = query
        self.after = after
        self.interval = interval
        self.wait = interval
        self.down: str | None = None

    def drain(self, show: Callable[[list[dict[str, Any]]], None], *, retry: bool) -> None:
        """Print every page after the cursor; with ``retry``, an unreachable server is reported
        and tried again later instead of ending the command."""
        while True:
            try:
                page = self.api.get("/events", after=self.after, **self.query)
            except Failure as failure:
                if not retry or failure.status != UNAVAILABLE:
                    raise
                self._lost(failure)
                return
            self._back()
            items = list(page["items"])
            show(items)
            following = page.get("next")
            if items:
                self.after = max(self.after, int(items[-1]["id"]))
            if following is None:
                return
            self.after = max(self.after, int(following))

    def _lost(self, failure: Failure) -> None:
        if self.down is None:
            self.down = failure.message
            click.echo(f"stageflow: {failure.message}; still following, trying again", err=True)
        self.wait = min(self.wait * 2, self.interval * BACKOFF_CAP)

    def _back(self) -> None:
        if self.down is not None:
            click.echo(f"stageflow: {self.api.server} answers again; following", err=True)
        self.down = None
        self.wait = self.interval


def follow(poller: Poller, show: Printer, following: Following) -> int:
    """Print new events until Ctrl-C or --for runs out; both end with exit 0."""
    deadline = None if following.for_ is None else time.monotonic() + following.for_
    try:
        poller.drain(show, retry=False)
        while deadline is None or time.monotonic() < deadline:
            pause = poller.wait
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            poller.drain(show, retry=True)
    except KeyboardInterrupt:
        click.echo(f"stageflow: stopped following after event {poller.after}", err=True)
    return OK


# -- commands ---------------------------------------------------------------------------------


@click.command()
@click.option("--app", metavar="APP", help="Only this app's events.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    metavar="KIND",
    help="Only events of this kind (repeatable): " + ", ".join(KINDS) + ".",
)
@click.option(
    "--after", type=click.IntRange(min=0), default=0, metavar="ID", help="Events after this id."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Events per request (--follow reads every page).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option(
    "--interval",
    type=Duration(minimum=MIN_INTERVAL),
    default="1s",
    show_default=True,
    help="How often --follow asks the server.",
)
@click.option(
    "--for",
    "for_",
    type=Duration(),
    metavar="DURATION",
    help="Stop --follow after this long (exit 0), e.g. 30s, for scripts.",
)
@client_command
@gathered("following", Following)
@gathered("wanted", EventQuery)
def events(api: Api, fmt: str, wanted: EventQuery, following: Following) -> int:
    """Show the event log, oldest first: promotions, gates, checks, flag and image changes.

    Only the events of the apps and stages the token covers. Without --follow, one page of
    --limit events after --after (-o json prints the API's page; its `next` is the --after of
    the next page). With --follow, every event after --after, then new ones as they come; a
    server that cannot be reached is said on stderr and tried again (backing off to 10 times
    --interval). With -o json, --follow prints one JSON object per line.

    \b
    Example:
      stageflow events --app demo --kind rollback --kind check_failed
      stageflow events --follow --after 120 -o json | jq .kind
    """
    if following.follow:
        poller = Poller(api, wanted.query(), wanted.after, following.interval)
        return follow(poller, Printer(fmt), following)
    page = api.get("/events", after=wanted.after, **wanted.query())

    def render(console: Console, data: dict[str, Any]) -> None:
        if not data["items"]:
            console.print("No events.")
        else:
            console.print(rows(event_table(), event_rows(data["items"])))
        if data.get("next") is not None:
            click.echo(f"more: stageflow events --after {data['next']}", err=True)

    emit(fmt, page, render)
    return OK


@click.command()
@click.option("--status", type=click.Choice(("pending", "delivered", "failed")), help="Only these.")
@click.option("--target", metavar="NAME", help="Only deliveries to this `notify:` target.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--before", type=click.IntRange(min=1), metavar="ID", help="Deliveries before id.")
@client_command
def notifications(
    api: Api, fmt: str, status: str | None, target: str | None, limit: int, before: int | None
) -> int:
    """Show each event sent to a `notify:` target, newest first: status, attempts, last error.

    The next attempt is shown while a delivery is pending (it backs off after each failure).

    \b
    Example:
      stageflow notifications --status failed --target team-slack
    """
    page = api.get("/notifications", status=status, target=target, limit=limit, before=before)

    def render(console: Console, data: dict[str, Any]) -> None:
        if not data["items"]:
            console.print("No notifications.")
            return
        made = table("ID", "EVENT", "TARGET", "KIND", "STATUS", "ATTEMPTS", "LAST ERROR", "NEXT")
        console.print(
            rows(
                made,
                [
                    (
                        d["id"],
                        d["event_id"],
                        d["target"],
                        d.get("kind"),
                        mark(str(d["status"])),
                        d["attempts"],
                        clipped(d.get("last_error")),
                        str(d.get("next_at") or "")[:19] or None,
                    )
                    for d in data["items"]
                ],
            )
        )
        if data.get("next") is not None:
            click.echo(f"more: stageflow notifications --before {data['next']}", err=True)

    emit(fmt, page, render)
    return OK


COMMANDS = (events, notifications)
