"""Feature flags from the command line: list, create, enable, disable and target them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command, gathered
from stageflow.cli.output import OK, USAGE, Failure, emit, emit_done, rows, table
from stageflow.domain.flags import LIFECYCLES


def _json_arg(text: str, what: str) -> Any:
    """A JSON value given inline or as @file.json (@- reads stdin)."""
    if text.startswith("@"):
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as exc:
            raise Failure(USAGE, f"cannot read {what} from {name}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Failure(USAGE, f"{what} is not JSON ({exc}); give JSON or @file.json") from exc


@click.group()
def flags() -> None:
    """List, create, toggle and target feature flags."""


@flags.command("list")
@click.argument("app")
@click.option("--stage", metavar="STAGE", help="Only this stage.")
@client_command
def flags_list(api: Api, fmt: str, app: str, stage: str | None) -> int:
    """List an app's flags in every stage (or one).

    \b
    Example:
      stageflow flags list demo --stage staging -o json
    """
    matrix = api.get(f"/apps/{app}/flags")
    stages = [s["name"] for s in api.get("/pipeline")["stages"]] if fmt == "table" else []
    if stage:
        matrix = {
            key: {**row, "stages": {stage: row["stages"].get(stage)}}
            for key, row in matrix.items()
            if row["stages"].get(stage) is not None
        }
        stages = [stage]

    def cell(value: dict[str, Any] | None) -> Text:
        if value is None:
            return Text("-", style="dim")
        word = "ON" if value.get("enabled") else "off"
        variant = value.get("variant")
        if variant not in (None, "on", "off"):
            word += f" ({variant})"
        if value.get("state") == "DISABLED":
            word = "disabled"
        return Text(word, style="green" if value.get("enabled") else "")

    def render(console: Console, data: dict[str, Any]) -> None:
        made = table("KEY", "LIFECYCLE", *(s.upper() for s in stages))
        for key, row in sorted(data.items()):
            rows(made, [(key, row.get("lifecycle"), *(cell(row["stages"].get(s)) for s in stages))])
        console.print(made)

    emit(fmt, matrix, render)
    return OK


@flags.command("enable")
@click.argument("app")
@click.argument("key")
@click.option("--stage", required=True, metavar="STAGE")
@client_command
def flags_enable(api: Api, fmt: str, app: str, key: str, stage: str) -> int:
    """Turn a flag ON in a stage (the stage must allow its lifecycle).

    \b
    Example:
      stageflow flags enable demo new_checkout --stage development
    """
    answer = api.call("PATCH", f"/apps/{app}/stages/{stage}/flags/{key}", body={"enabled": True})
    return emit_done(fmt, answer, f"{key} is ON in {app}/{stage}")


@flags.command("disable")
@click.argument("app")
@click.argument("key")
@click.option("--stage", required=True, metavar="STAGE")
@client_command
def flags_disable(api: Api, fmt: str, app: str, key: str, stage: str) -> int:
    """Turn a flag OFF in a stage (always allowed: the kill switch).

    \b
    Example:
      stageflow flags disable demo new_checkout --stage production
    """
    answer = api.call("PATCH", f"/apps/{app}/stages/{stage}/flags/{key}", body={"enabled": False})
    return emit_done(fmt, answer, f"{key} is off in {app}/{stage}")


@dataclass(frozen=True)
class NewFlag:
    """The options of `flags create`: what the new flag is."""

    lifecycle: str
    variants: str | None  # JSON, inline or @file.json
    default: str | None
    description: str | None

    def body(self, key: str) -> dict[str, Any]:
        """The API's body for creating flag ``key``."""
        body: dict[str, Any] = {"key": key, "lifecycle": self.lifecycle}
        if self.variants is not None:
            body["variants"] = _json_arg(self.variants, "--variants")
        if self.default is not None:
            body["defaultVariant"] = self.default
        if self.description is not None:
            body["description"] = self.description
        return body


@flags.command("create")
@click.argument("app")
@click.argument("key")
@click.option("--lifecycle", required=True, type=click.Choice(LIFECYCLES))
@click.option("--variants", metavar="JSON", help='e.g. \'{"red": "#f00", "blue": "#00f"}\'.')
@click.option("--default", "default", metavar="VARIANT", help="The default variant.")
@click.option("--description", metavar="TEXT")
@client_command
@gathered("flag", NewFlag)
def flags_create(api: Api, fmt: str, app: str, key: str, flag: NewFlag) -> int:
    """Create a flag in the first stage (later stages get it by promotion).

    \b
    Example:
      stageflow flags create demo new_checkout --lifecycle experimental
    """
    answer = api.post(f"/apps/{app}/flags", flag.body(key))
    return emit_done(fmt, answer, f"created {key} ({flag.lifecycle}) in {app}")


@dataclass(frozen=True)
class FlagSettings:
    """The options of `flags set`: the targeting and default variant to give a flag in a stage."""

    targeting: str | None  # JSON, inline or @file.json
    default: str | None

    def body(self) -> dict[str, Any]:
        """The API's body for the change; a usage error when it changes nothing."""
        body: dict[str, Any] = {}
        if self.targeting is not None:
            body["targeting"] = _json_arg(self.targeting, "--targeting")
        if self.default is not None:
            body["defaultVariant"] = self.default
        if not body:
            raise click.UsageError("give --targeting, --default, or both")
        return body


@flags.command("set")
@click.argument("app")
@click.argument("key")
@click.option("--stage", required=True, metavar="STAGE")
@click.option(
    "--targeting",
    metavar="JSON|@FILE",
    help="flagd JSONLogic targeting, inline or @file.json; null removes it.",
)
@click.option("--default", "default", metavar="VARIANT", help="The default variant.")
@client_command
@gathered("settings", FlagSettings)
def flags_set(api: Api, fmt: str, app: str, key: str, stage: str, settings: FlagSettings) -> int:
    """Set a flag's targeting or default variant in a stage.

    \b
    Example:
      stageflow flags set demo new_checkout --stage development --targeting @rollout.json
    """
    answer = api.call("PATCH", f"/apps/{app}/stages/{stage}/flags/{key}", body=settings.body())
    return emit_done(fmt, answer, f"{key} updated in {app}/{stage}")


COMMANDS = (flags,)
