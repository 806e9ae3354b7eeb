"""Promotions from the command line: promote, follow, list, approve, cancel, roll back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.syntax import Syntax
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import MIN_INTERVAL, Duration, client_command, gathered
from stageflow.cli.output import (
    OK,
    REFUSED,
    UNAVAILABLE,
    Failure,
    emit,
    mark,
    rows,
    short,
    stderr,
    table,
)
from stageflow.domain.promotions import STATUSES
from stageflow.domain.promotions import WAITING as DOMAIN_WAITING

# What a promotion can be in is the domain's list; the CLI only talks HTTP, so it imports no
# more of the domain than these names.
WAITING = frozenset({*DOMAIN_WAITING, "applying"})


def outcome(promotion: dict[str, Any]) -> int:
    """The exit status a promotion's state means to a script (waiting for approval is fine)."""
    status = promotion.get("status")
    if status == "dry_run":
        return REFUSED if promotion.get("verdict") == "blocked" else OK
    return OK if status in ("applied", "pending_approval", "applying") else REFUSED


# -- rendering --------------------------------------------------------------------------------


def headline(p: dict[str, Any]) -> Text:
    ident = "dry run" if p.get("dry_run") else f"promotion #{p.get('id')}"
    status = p.get("verdict") if p.get("dry_run") else p.get("status")
    text = Text(f"{ident}  {p.get('app')} {p.get('from')} → {p.get('to')}  ")
    text.append_text(mark(str(status)))
    if p.get("revision"):
        text.append(f"  revision {short(p['revision'])}")
    if p.get("message"):
        text.append(f"\n{p['message']}")
    return text


def gates_table(p: dict[str, Any]) -> Any:
    made = table("GATE", "KIND", "STATUS", "REASON", title="Gates")
    return rows(
        made,
        [
            (g.get("name"), g.get("kind"), mark(str(g.get("status"))), g.get("message"))
            for g in p["gates"]
        ],
    )


def parity_rows(p: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every difference the parity gate found (its message names the first few only)."""
    return [
        (d.get("difference"), d.get("rule") or "", "fails" if d.get("fails") else "listed")
        for g in p.get("gates") or []
        if g.get("kind") == "parity"
        for d in (g.get("evidence") or {}).get("differences", [])
    ]


def promotion_parts(p: dict[str, Any], *, diff: bool = False) -> list[Any]:
    parts: list[Any] = [headline(p)]
    plan = p.get("plan") or {}
    moves = [
        ("image", m.get("name"), m.get("from"), m.get("to"), "") for m in plan.get("images", [])
    ]
    moves += [
        ("flag", m.get("key"), m.get("from"), m.get("to"), m.get("note", ""))
        for m in plan.get("flags", [])
    ]
    if moves:
        parts.append(rows(table("MOVES", "NAME", "FROM", "TO", "NOTE", title="Plan"), moves))
    else:
        parts.append(Text("Plan: nothing moves"))
    if p.get("gates"):
        parts.append(gates_table(p))
    if differences := parity_rows(p):
        parts.append(rows(table("DIFFERENCE", "RULE", "VERDICT", title="Parity"), differences))
    approvals = p.get("approvals") or []
    if approvals:
        parts.append(
            Text(
                "Approved by "
                + ", ".join(
                    a.get("approver", "?") + (f" ({a['comment']})" if a.get("comment") else "")
                    for a in approvals
                )
            )
        )
    if diff:
        text = p.get("diff") or ""
        if text:
            parts.append(Syntax(text, "diff", theme="ansi_dark", background_color="default"))
        else:
            parts.append(Text("Diff: the rendered target does not change"))
    return parts


def show_promotion(console: Console, p: dict[str, Any], *, diff: bool = False) -> None:
    for part in promotion_parts(p, diff=diff):
        console.print(part)
        console.print()


# -- following a promotion --------------------------------------------------------------------


class _Progress:
    """Show a followed promotion on stderr: live on a terminal, else a line per change."""

    def __init__(self, ident: int, deadline: float) -> None:
        console = stderr()
        self.live = (
            Live(console=console, auto_refresh=False, transient=False)
            if console.is_terminal
            else None
        )
        self.ident = ident
        self.deadline = deadline
        self.said: tuple[Any, ...] = ()

    def __enter__(self) -> _Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, p: dict[str, Any]) -> None:
        if self.live is not None:
            left = max(0, int(self.deadline - time.monotonic()))
            self.live.update(
                Group(headline(p), gates_table(p), Text(f"waiting… {left}s left", style="dim")),
                refresh=True,
            )
            return
        # Off a terminal: one line each time the status or a gate changes, for CI logs.
        now = (p["status"], tuple((g.get("name"), g.get("status")) for g in p.get("gates", [])))
        if now != self.said:
            self.said = now
            gates = ", ".join(f"{g.get('name')}={g.get('status')}" for g in p.get("gates", []))
            click.echo(
                f"promotion #{self.ident}: {p['status']}" + (f" ({gates})" if gates else ""),
                err=True,
            )


def follow(
    api: Api, promotion: dict[str, Any], *, timeout: float, interval: float
) -> dict[str, Any]:
    """Re-evaluate and poll until the promotion settles; show its gates live on stderr."""
    deadline = time.monotonic() + timeout
    ident = promotion["id"]
    evaluate = True
    current = promotion
    with _Progress(ident, deadline) as progress:
        while True:
            progress.show(current)
            if current["status"] not in WAITING:
                return current
            if time.monotonic() >= deadline:
                raise Failure(
                    UNAVAILABLE,
                    f"promotion #{ident} is still {current['status']} after {timeout:g}s; "
                    f"follow it with `stageflow promotions wait {ident}`",
                    code="wait_timeout",
                )
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            current, evaluate = _poll(api, ident, current, evaluate=evaluate)


def _poll(
    api: Api, ident: int, current: dict[str, Any], *, evaluate: bool
) -> tuple[dict[str, Any], bool]:
    """Fetch the promotion again; return it and whether to keep asking for re-evaluations."""
    if evaluate and current["status"] == "blocked":
        # Ask the server to re-run the gates now rather than at its next round; a token that may
        # not (a viewer following along) just polls.
        try:
            return api.post(f"/promotions/{ident}/evaluate"), True
        except Failure as exc:
            if exc.status == UNAVAILABLE:
                raise
            evaluate = exc.code not in ("missing_role", "out_of_scope")
    return api.get(f"/promotions/{ident}"), evaluate


@dataclass(frozen=True)
class Waiting:
    """--wait, --timeout, --interval: whether to follow a promotion, for how long, how often."""

    wait: bool
    timeout: float
    interval: float


def wait_options(f: Any) -> Any:
    """Add --wait, --timeout and --interval, passed to the command as ``waiting``."""
    f = gathered("waiting", Waiting)(f)
    f = click.option(
        "--interval",
        type=Duration(minimum=MIN_INTERVAL),
        default="2s",
        show_default=True,
        help="How often --wait asks the server.",
    )(f)
    f = click.option(
        "--timeout",
        type=Duration(),
        default="10m",
        show_default=True,
        help="How long --wait follows before giving up (exit 3).",
    )(f)
    return click.option(
        "--wait",
        is_flag=True,
        help="Follow the promotion until it is applied, failed, cancelled or rolled back.",
    )(f)


def finish(api: Api, fmt: str, p: dict[str, Any], waiting: Waiting, *, diff: bool = False) -> int:
    """Show the promotion (followed first with --wait); return the exit status it means."""
    if waiting.wait and not p.get("dry_run") and p.get("id") is not None:
        p = follow(api, p, timeout=waiting.timeout, interval=waiting.interval)
        emit(fmt, p, lambda c, d: show_promotion(c, d, diff=diff))
        return OK if p["status"] == "applied" else REFUSED
    emit(fmt, p, lambda c, d: show_promotion(c, d, diff=diff))
    return outcome(p)


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionRequest:
    """The options of `promote` that the server gets: where to, what moves, and why."""

    to: str
    from_: str | None
    dry_run: bool
    images: bool
    flags: str  # eligible, none, or KEY,KEY
    reason: str | None

    def body(self) -> dict[str, Any]:
        """The API's body for the promotion."""
        body: dict[str, Any] = {"to": self.to, "images": self.images, "dry_run": self.dry_run}
        body["flags"] = (
            self.flags
            if self.flags in ("eligible", "none")
            else [k for k in self.flags.split(",") if k]
        )
        if self.from_:
            body["from"] = self.from_
        if self.reason:
            body["reason"] = self.reason
        return body


@click.command()
@click.argument("app")
@click.option("--to", "to", required=True, metavar="STAGE", help="The stage to promote into.")
@click.option("--from", "from_", metavar="STAGE", help="Must be the stage before --to.")
@click.option("--dry-run", is_flag=True, help="Plan and evaluate the gates; store nothing.")
@click.option("--diff", is_flag=True, help="Also print the rendered diff of the target stage.")
@click.option("--images/--no-images", default=True, help="Move the image tags [yes].")
@click.option(
    "--flags",
    "flags",
    default="eligible",
    metavar="eligible|none|KEY,KEY",
    help="Which flags move [eligible].",
)
@click.option("--reason", metavar="TEXT", help="Why, for the audit log.")
@wait_options
@client_command
@gathered("request", PromotionRequest)
def promote(
    api: Api, fmt: str, app: str, request: PromotionRequest, diff: bool, waiting: Waiting
) -> int:
    """Promote APP into a stage: print the plan, every gate and (--diff) the rendered diff.

    Exit 0 when applied (or waiting for approval without --wait), 1 when a gate blocks it or
    a waited-for promotion ends other than applied, 3 when --wait times out.

    \b
    Example:
      stageflow promote demo --to staging --wait --timeout 15m
    """
    made = api.post(f"/apps/{app}/promotions", request.body())
    return finish(api, fmt, made, waiting, diff=diff)


@click.group()
def promotions() -> None:
    """List, show and follow promotions."""


@promotions.command("list")
@click.argument("app", required=False)
@click.option("--status", type=click.Choice(STATUSES), help="Only promotions in this state.")
@click.option("--to", "to", metavar="STAGE", help="Only promotions into this stage.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@client_command
def list_promotions(
    api: Api, fmt: str, app: str | None, status: str | None, to: str | None, limit: int
) -> int:
    """List promotions, newest first.

    \b
    Example:
      stageflow promotions list demo --status pending_approval
    """
    page = api.get("/promotions", app=app, status=status, to=to, limit=limit)

    def render(console: Console, data: dict[str, Any]) -> None:
        made = table("ID", "APP", "FROM", "TO", "STATUS", "BY", "CREATED", "REVISION")
        console.print(
            rows(
                made,
                [
                    (
                        p["id"],
                        p["app"],
                        p["from"],
                        p["to"],
                        mark(p["status"]),
                        p.get("requested_by"),
                        str(p.get("created_at") or "")[:19],
                        short(p.get("revision")),
                    )
                    for p in data["items"]
                ],
            )
        )

    emit(fmt, page, render)
    return OK


@promotions.command("get")
@click.argument("promotion_id", type=int, metavar="ID")
@click.option("--diff", is_flag=True, help="Also print the rendered diff.")
@client_command
def get_promotion(api: Api, fmt: str, promotion_id: int, diff: bool) -> int:
    """Show a promotion: plan, gates, approvals (and --diff).

    \b
    Example:
      stageflow promotions get 12 --diff
    """
    found = api.get(f"/promotions/{promotion_id}")
    emit(fmt, found, lambda c, d: show_promotion(c, d, diff=diff))
    return OK


@promotions.command("wait")
@click.argument("promotion_id", type=int, metavar="ID")
@click.option("--timeout", type=Duration(), default="10m", show_default=True)
@click.option("--interval", type=Duration(minimum=MIN_INTERVAL), default="2s", show_default=True)
@client_command
def wait_promotion(api: Api, fmt: str, promotion_id: int, timeout: float, interval: float) -> int:
    """Follow a promotion until it settles; exit 0 only when it is applied.

    \b
    Example:
      stageflow promotions wait 12 --timeout 30m
    """
    found = api.get(f"/promotions/{promotion_id}")
    return finish(api, fmt, found, Waiting(wait=True, timeout=timeout, interval=interval))


@click.command()
@click.argument("promotion_id", type=int, metavar="ID")
@click.option("--comment", metavar="TEXT", help="Why you approve, kept with the approval.")
@wait_options
@client_command
def approve(api: Api, fmt: str, promotion_id: int, comment: str | None, waiting: Waiting) -> int:
    """Approve a promotion (never your own); it applies when the approvals and gates hold.

    \b
    Example:
      STAGEFLOW_TOKEN=$BOB stageflow approve 12 --comment "release notes checked"
    """
    body = {"comment": comment} if comment else {}
    done = api.post(f"/promotions/{promotion_id}/approvals", body)
    return finish(api, fmt, done, waiting)


@click.command()
@click.argument("promotion_id", type=int, metavar="ID")
@client_command
def cancel(api: Api, fmt: str, promotion_id: int) -> int:
    """Cancel a waiting promotion.

    \b
    Example:
      stageflow cancel 12
    """
    done = api.post(f"/promotions/{promotion_id}/cancel")
    emit(fmt, done, show_promotion)
    return OK


@click.command()
@click.argument("promotion_id", type=int, metavar="ID")
@click.option("--reason", metavar="TEXT", help="Why, for the audit log.")
@client_command
def rollback(api: Api, fmt: str, promotion_id: int, reason: str | None) -> int:
    """Roll an applied promotion back: restore the target overlay as it was, in a new commit.

    \b
    Example:
      stageflow rollback 12 --reason "error rate up after 1.5.0"
    """
    done = api.post(f"/promotions/{promotion_id}/rollback", {"reason": reason} if reason else {})
    emit(fmt, done, show_promotion)
    return OK


COMMANDS = (promote, promotions, approve, cancel, rollback)
