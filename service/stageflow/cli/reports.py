"""Reports from the command line: check results (smoke, load, ...) and what a stage runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command, gathered
from stageflow.cli.output import OK, USAGE, Failure, emit, mark, rows, short, table


def _desired_revision(api: Api, app: str, stage: str) -> str:
    for part in api.get(f"/apps/{app}")["stages"]:
        if part["stage"] == stage and part.get("overlay_revision"):
            return str(part["overlay_revision"])
    raise Failure(USAGE, f"{app} has no stage {stage!r} with a revision; pass --revision")


@click.group()
def checks() -> None:
    """Record and list check results (smoke, load, ...)."""


def _tested_revision(api: Api, app: str, stage: str, given: str | None) -> str:
    """The revision a report is about: given, else $STAGEFLOW_REVISION, else the stage's."""
    return given or os.environ.get("STAGEFLOW_REVISION") or _desired_revision(api, app, stage)


@dataclass(frozen=True)
class CheckResult:
    """The options of `checks record`: what ran, how it went and where its report is."""

    kind: str
    result: str
    revision: str | None
    summary: str | None
    url: str | None

    def body(self, revision: str) -> dict[str, Any]:
        """The API's body for recording the result against ``revision``."""
        body: dict[str, Any] = {"kind": self.kind, "revision": revision, "status": self.result}
        if self.summary:
            body["summary"] = self.summary
        if self.url:
            body["url"] = self.url
        return body


@checks.command("record")
@click.argument("app")
@click.option("--stage", required=True, metavar="STAGE")
@click.option("--kind", required=True, metavar="KIND", help="smoke, load, or your own kind.")
@click.option("--status", "result", required=True, type=click.Choice(["passed", "failed"]))
@click.option(
    "--revision",
    metavar="REV",
    help="The revision tested [env STAGEFLOW_REVISION, else the stage's desired revision].",
)
@click.option("--summary", metavar="TEXT")
@click.option("--url", metavar="URL", help="Where the run's report is.")
@client_command
@gathered("check", CheckResult)
def checks_record(api: Api, fmt: str, app: str, stage: str, check: CheckResult) -> int:
    """Record a check result for the revision a stage runs (what a CI smoke job calls).

    \b
    Example:
      stageflow checks record demo --stage staging --kind smoke --status passed --url "$CI_JOB_URL"
    """
    revision = _tested_revision(api, app, stage, check.revision)
    answer = api.post(f"/apps/{app}/stages/{stage}/checks", check.body(revision))
    said = f"recorded {check.kind} {check.result} for {app}/{stage}"

    def render(console: Console, d: dict[str, Any]) -> None:
        console.print(Text(f"{said} at {short(d['revision'])}"))
        if d.get("rollback"):
            console.print(
                Text(
                    f"promotion #{d['rollback']['promotion']} was rolled back "
                    f"(revision {short(d['rollback']['revision'])})",
                    style="red",
                )
            )

    emit(fmt, answer, render)
    return OK


@checks.command("list")
@click.argument("app")
@click.option("--stage", required=True, metavar="STAGE")
@click.option("--kind", metavar="KIND")
@click.option("--revision", metavar="REV")
@client_command
def checks_list(
    api: Api, fmt: str, app: str, stage: str, kind: str | None, revision: str | None
) -> int:
    """List a stage's check results, newest first.

    \b
    Example:
      stageflow checks list demo --stage staging --kind smoke
    """
    found = api.get(f"/apps/{app}/stages/{stage}/checks", kind=kind, revision=revision)

    def render(console: Console, data: list[dict[str, Any]]) -> None:
        made = table("ID", "KIND", "STATUS", "REVISION", "BY", "AT", "SUMMARY")
        for c in data:
            rows(
                made,
                [
                    (
                        c["id"],
                        c["kind"],
                        mark(c["status"]),
                        short(c["revision"]),
                        c.get("reported_by"),
                        str(c.get("at"))[:19],
                        c.get("summary"),
                    )
                ],
            )
        console.print(made)

    emit(fmt, found, render)
    return OK


@click.group()
def deployments() -> None:
    """Report what a stage runs (when no Argo CD / Flux webhook does)."""


@deployments.command("record")
@click.argument("app")
@click.option("--stage", required=True, metavar="STAGE")
@click.option(
    "--revision", metavar="REV", help="[env STAGEFLOW_REVISION, else the stage's desired revision]"
)
@click.option("--health", required=True, type=click.Choice(["healthy", "progressing", "degraded"]))
@client_command
def deployments_record(
    api: Api, fmt: str, app: str, stage: str, revision: str | None, health: str
) -> int:
    """Record that a stage runs a revision, and how healthy it is.

    \b
    Example:
      stageflow deployments record demo --stage development --revision 3f2a9c1 --health healthy
    """
    revision = _tested_revision(api, app, stage, revision)
    answer = api.post(
        f"/apps/{app}/stages/{stage}/deployments", {"revision": revision, "health": health}
    )
    emit(
        fmt,
        answer,
        lambda c, d: c.print(Text(f"{app}/{stage} runs {short(d.get('revision'))}: {health}")),
    )
    return OK


COMMANDS = (checks, deployments)
