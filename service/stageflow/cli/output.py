"""What the command line prints: tables for people, JSON or YAML for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Exit statuses a shell script can branch on (the README lists them).
OK = 0
REFUSED = 1  # a gate blocked, a policy or a conflict said no, a waited-for promotion did not apply
USAGE = 2  # the command line itself is wrong (click's own status for usage errors)
UNAVAILABLE = 3  # the server is unreachable, timed out or answered 5xx
FORBIDDEN = 4  # not authenticated, or not allowed

FORMATS = ("table", "json", "yaml")


class Failure(Exception):
    """A command ends with ``status`` after printing ``message`` (one line) on stderr."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def line(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"stageflow: error{code}: {self.message}"


def stdout() -> Console:
    # rich drops colours and styles by itself when stdout is not a terminal; the tables below
    # also drop their box lines then, and a pipe or a CI log gets whole lines, not 80 columns.
    tty = sys.stdout.isatty()
    return Console(highlight=False, width=None if tty else 400)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def table(*columns: str, title: str | None = None) -> Table:
    """A table that is boxed on a terminal and plain, space-separated columns otherwise."""
    tty = sys.stdout.isatty()
    made = Table(
        *columns,
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if tty else "",
    )
    return made


def emit(fmt: str, data: Any, render: Callable[[Console, Any], None]) -> None:
    """Print ``data`` as JSON (the API's own answer), YAML, or a table made by ``render``."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif fmt == "yaml":
        click.echo(to_yaml(data), nl=False)
    else:
        render(stdout(), data)


def to_yaml(data: Any) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    # the API's key order, as -o json prints it (ruamel's safe dumper sorts keys by default)
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    text = io.StringIO()
    yaml.dump(json.loads(json.dumps(data, default=str)), text)
    return text.getvalue()


def short(revision: str | None, size: int = 8) -> str:
    return revision[:size] if revision else "-"


def joined(items: Iterable[str], empty: str = "-") -> str:
    values = [item for item in items if item]
    return ", ".join(values) if values else empty


def mark(status: str) -> Text:
    """A gate or check status with its colour (styles vanish off a terminal)."""
    colour = {
        "passed": "green",
        "applied": "green",
        "delivered": "green",
        "healthy": "green",
        "in_sync": "green",
        "failed": "red",
        "degraded": "red",
        "rolled_back": "red",
        "cancelled": "red",
        "blocked": "yellow",
        "pending": "yellow",
        "pending_approval": "yellow",
        "behind": "yellow",
        "progressing": "yellow",
        "inconclusive": "magenta",
    }.get(status)
    return Text(status, style=colour or "")


def rows(made: Table, values: Sequence[Sequence[Any]]) -> Table:
    for row in values:
        # Text, not markup: a message with [brackets] in it is printed as it is
        made.add_row(
            *(v if isinstance(v, Text) else Text("-" if v is None else str(v)) for v in row)
        )
    return made


def emit_done(fmt: str, answer: dict[str, Any], said: str) -> int:
    """Print what a write did and the revision it made (or the answer, with -o json / yaml),
    and the policy violations it was let through with (``warnings``)."""

    def show(console: Console, data: dict[str, Any]) -> None:
        console.print(Text(f"{said} (revision {short(data.get('revision'))})"))
        for w in data.get("warnings") or []:
            line = f"policy {w.get('policy')}: {w.get('object')}: {w.get('message')}"
            console.print(Text(f"{line} [{w.get('allowed')}]", style="yellow"))

    emit(fmt, answer, show)
    return OK
