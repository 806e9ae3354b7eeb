"""Holds and freezes from the command line: stop promotions into a stage, and let them go again."""

from __future__ import annotations

import click
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command
from stageflow.cli.output import OK, emit


@click.command()
@click.argument("app")
@click.option("--stage", required=True, metavar="STAGE")
@click.option("--reason", required=True, metavar="TEXT")
@client_command
def hold(api: Api, fmt: str, app: str, stage: str, reason: str) -> int:
    """Put an app's stage on hold: nothing is promoted into it until released.

    \b
    Example:
      stageflow hold demo --stage production --reason "incident 4711"
    """
    answer = api.post(f"/apps/{app}/stages/{stage}/hold", {"reason": reason})
    emit(fmt, answer, lambda c, d: c.print(Text(f"{app}/{stage} is on hold: {reason}")))
    return OK


@click.command()
@click.argument("app")
@click.option("--stage", required=True, metavar="STAGE")
@client_command
def release(api: Api, fmt: str, app: str, stage: str) -> int:
    """Release an app's stage from its hold.

    \b
    Example:
      stageflow release demo --stage production
    """
    answer = api.call("DELETE", f"/apps/{app}/stages/{stage}/hold")
    emit(fmt, answer, lambda c, d: c.print(Text(f"{app}/{stage} is released")))
    return OK


@click.command()
@click.argument("stage")
@click.option("--reason", required=True, metavar="TEXT")
@click.option(
    "--until", metavar="TIME", help="ISO 8601 time with a zone, e.g. 2026-12-27T08:00:00Z."
)
@client_command
def freeze(api: Api, fmt: str, stage: str, reason: str, until: str | None) -> int:
    """Freeze a stage for every app: no promotion into it until thawed (or --until).

    \b
    Example:
      stageflow freeze production --reason "year-end freeze" --until 2027-01-04T08:00:00Z
    """
    body = {"reason": reason} | ({"until": until} if until else {})
    answer = api.post(f"/stages/{stage}/freeze", body)
    emit(fmt, answer, lambda c, d: c.print(Text(f"{stage} is frozen: {reason}")))
    return OK


@click.command()
@click.argument("stage")
@client_command
def unfreeze(api: Api, fmt: str, stage: str) -> int:
    """Thaw a frozen stage.

    \b
    Example:
      stageflow unfreeze production
    """
    answer = api.call("DELETE", f"/stages/{stage}/freeze")
    emit(fmt, answer, lambda c, d: c.print(Text(f"{stage} is no longer frozen")))
    return OK


COMMANDS = (hold, release, freeze, unfreeze)
