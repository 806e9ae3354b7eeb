"""Client commands over the REST API: status, flags, images, reports, holds, freezes, history."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command
from stageflow.cli.output import OK, USAGE, Failure, emit, joined, mark, rows, short, table

# -- status -----------------------------------------------------------------------------------


def _image(image: dict[str, Any]) -> str:
    name = image["name"].rsplit("/", 1)[-1]
    return (
        f"{name}:{image['tag']}" if image.get("tag") else f"{name}@{short(image.get('digest'), 19)}"
    )


@click.command()
@click.argument("app", required=False)
@client_command
def status(api: Api, fmt: str, app: str | None) -> int:
    """Show every stage of every app (or one app): images, flags ON, revisions, holds, waits.

    \b
    Example:
      stageflow status demo
    """
    names = [app] if app else [a["name"] for a in api.get("/apps")]
    apps = [api.get(f"/apps/{name}") for name in names]
    freezes = api.get("/freezes")
    waiting = [
        p
        for wanted in ("blocked", "pending_approval")
        for p in api.get("/promotions", app=app, status=wanted, limit=500)["items"]
    ]
    waiting.sort(key=lambda p: p["id"])
    data = {"apps": apps, "freezes": freezes, "waiting_promotions": waiting}

    def render(console: Console, data: dict[str, Any]) -> None:
        frozen = {f["stage"]: f for f in data["freezes"]}
        for state in data["apps"]:
            made = table(
                "STAGE",
                "IMAGES",
                "FLAGS ON",
                "WANTED",
                "RUNNING",
                "HEALTH",
                "CHECKS",
                "HOLD / FREEZE",
                title=f"{state['name']}  (revision {short(state.get('revision'))})",
            )
            for stage in state["stages"]:
                deployed = stage.get("deployed") or {}
                stop = []
                if stage.get("hold"):
                    stop.append(f"held by {stage['hold']['by']}: {stage['hold']['reason']}")
                if stage["stage"] in frozen:
                    item = frozen[stage["stage"]]
                    until = f" until {item['until']}" if item.get("until") else ""
                    stop.append(f"frozen by {item['by']}{until}: {item['reason']}")
                health = Text()
                if deployed:
                    health.append_text(mark(str(deployed.get("health"))))
                    health.append(" ")
                    health.append_text(mark(str(deployed.get("status"))))
                else:
                    health.append("no report")
                rows(
                    made,
                    [
                        (
                            stage["stage"],
                            joined(_image(i) for i in stage.get("images", [])),
                            joined(
                                k
                                for k, f in sorted(stage.get("flags", {}).items())
                                if f.get("enabled")
                            ),
                            short(stage.get("overlay_revision")),
                            short(deployed.get("revision")),
                            health,
                            joined(f"{c['kind']}={c['status']}" for c in stage.get("checks", [])),
                            joined(stop),
                        )
                    ],
                )
            console.print(made)
            console.print()
        if data["waiting_promotions"]:
            made = table("ID", "APP", "FROM → TO", "STATUS", "WHY", title="Waiting promotions")
            for p in data["waiting_promotions"]:
                why = [
                    f"{g['name']}: {g['message']}" for g in p["gates"] if g["status"] != "passed"
                ]
                rows(
                    made,
                    [
                        (
                            p["id"],
                            p["app"],
                            f"{p['from']} → {p['to']}",
                            mark(p["status"]),
                            joined(why),
                        )
                    ],
                )
            console.print(made)
        else:
            console.print("No promotion is waiting.")

    emit(fmt, data, render)
    return OK


# -- flags ------------------------------------------------------------------------------------


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


def _flag_done(fmt: str, answer: dict[str, Any], said: str) -> int:
    def show(console: Any, data: dict[str, Any]) -> None:
        console.print(Text(f"{said} (revision {short(data.get('revision'))})"))
        for w in data.get("warnings") or []:  # policy violations let through (issue #17)
            line = f"policy {w.get('policy')}: {w.get('object')}: {w.get('message')}"
            console.print(Text(f"{line} [{w.get('allowed')}]", style="yellow"))

    emit(fmt, answer, show)
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
    return _flag_done(fmt, answer, f"{key} is ON in {app}/{stage}")


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
    return _flag_done(fmt, answer, f"{key} is off in {app}/{stage}")


@flags.command("create")
@click.argument("app")
@click.argument("key")
@click.option("--lifecycle", required=True, type=click.Choice(["experimental", "beta", "stable"]))
@click.option("--variants", metavar="JSON", help='e.g. \'{"red": "#f00", "blue": "#00f"}\'.')
@click.option("--default", "default", metavar="VARIANT", help="The default variant.")
@click.option("--description", metavar="TEXT")
@client_command
def flags_create(
    api: Api,
    fmt: str,
    app: str,
    key: str,
    lifecycle: str,
    variants: str | None,
    default: str | None,
    description: str | None,
) -> int:
    """Create a flag in the first stage (later stages get it by promotion).

    \b
    Example:
      stageflow flags create demo new_checkout --lifecycle experimental
    """
    body: dict[str, Any] = {"key": key, "lifecycle": lifecycle}
    if variants is not None:
        body["variants"] = _json_arg(variants, "--variants")
    if default is not None:
        body["defaultVariant"] = default
    if description is not None:
        body["description"] = description
    answer = api.post(f"/apps/{app}/flags", body)
    return _flag_done(fmt, answer, f"created {key} ({lifecycle}) in {app}")


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
def flags_set(
    api: Api, fmt: str, app: str, key: str, stage: str, targeting: str | None, default: str | None
) -> int:
    """Set a flag's targeting or default variant in a stage.

    \b
    Example:
      stageflow flags set demo new_checkout --stage development --targeting @rollout.json
    """
    body: dict[str, Any] = {}
    if targeting is not None:
        body["targeting"] = _json_arg(targeting, "--targeting")
    if default is not None:
        body["defaultVariant"] = default
    if not body:
        raise click.UsageError("give --targeting, --default, or both")
    answer = api.call("PATCH", f"/apps/{app}/stages/{stage}/flags/{key}", body=body)
    return _flag_done(fmt, answer, f"{key} updated in {app}/{stage}")


# -- images -----------------------------------------------------------------------------------

_IMAGE = re.compile(
    r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def _first_stage(api: Api) -> str:
    return str(api.get("/pipeline")["stages"][0]["name"])


@click.group()
def images() -> None:
    """Set image tags (the build pipeline's deploy into the first stage)."""


@images.command("set")
@click.argument("app")
@click.argument("image", metavar="NAME:TAG|NAME@DIGEST")
@click.option("--stage", metavar="STAGE", help="Only the first stage takes images [first].")
@client_command
def images_set(api: Api, fmt: str, app: str, image: str, stage: str | None) -> int:
    """Set an image's tag (or digest) in the first stage; later stages get it by promotion.

    \b
    Example:
      stageflow images set demo ghcr.io/acme/demo:1.5.0
    """
    found = _IMAGE.match(image)
    if not found or not (found.group("tag") or found.group("digest")):
        raise click.BadParameter(
            f"{image!r}: write NAME:TAG or NAME@sha256:<64 hex>", param_hint="IMAGE"
        )
    body = {"name": found.group("name")}
    if found.group("tag"):
        body["tag"] = found.group("tag")
    if found.group("digest"):
        body["digest"] = found.group("digest")
    stage = stage or _first_stage(api)
    answer = api.call("PUT", f"/apps/{app}/stages/{stage}/images", body=body)
    return _flag_done(fmt, answer, f"{app}/{stage} runs {image} once the cluster syncs")


# -- reports ----------------------------------------------------------------------------------


def _desired_revision(api: Api, app: str, stage: str) -> str:
    for part in api.get(f"/apps/{app}")["stages"]:
        if part["stage"] == stage and part.get("overlay_revision"):
            return str(part["overlay_revision"])
    raise Failure(USAGE, f"{app} has no stage {stage!r} with a revision; pass --revision")


@click.group()
def checks() -> None:
    """Record and list check results (smoke, load, ...)."""


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
def checks_record(
    api: Api,
    fmt: str,
    app: str,
    stage: str,
    kind: str,
    result: str,
    revision: str | None,
    summary: str | None,
    url: str | None,
) -> int:
    """Record a check result for the revision a stage runs (what a CI smoke job calls).

    \b
    Example:
      stageflow checks record demo --stage staging --kind smoke --status passed --url "$CI_JOB_URL"
    """
    revision = (
        revision or os.environ.get("STAGEFLOW_REVISION") or _desired_revision(api, app, stage)
    )
    body: dict[str, Any] = {"kind": kind, "revision": revision, "status": result}
    if summary:
        body["summary"] = summary
    if url:
        body["url"] = url
    answer = api.post(f"/apps/{app}/stages/{stage}/checks", body)

    def render(console: Console, d: dict[str, Any]) -> None:
        console.print(Text(f"recorded {kind} {result} for {app}/{stage} at {short(d['revision'])}"))
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
    revision = (
        revision or os.environ.get("STAGEFLOW_REVISION") or _desired_revision(api, app, stage)
    )
    answer = api.post(
        f"/apps/{app}/stages/{stage}/deployments", {"revision": revision, "health": health}
    )
    emit(
        fmt,
        answer,
        lambda c, d: c.print(Text(f"{app}/{stage} runs {short(d.get('revision'))}: {health}")),
    )
    return OK


# -- holds and freezes ------------------------------------------------------------------------


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


# -- history ----------------------------------------------------------------------------------


@click.command()
@click.argument("app", required=False)
@click.option("--stage", metavar="STAGE")
@click.option("--actor", metavar="NAME")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@client_command
def history(
    api: Api, fmt: str, app: str | None, stage: str | None, actor: str | None, limit: int
) -> int:
    """Show the audit log: who did what, when, with which revision (newest first).

    \b
    Example:
      stageflow history demo --stage production --limit 20
    """
    page = api.get("/audit", app=app, stage=stage, actor=actor, limit=limit)

    def render(console: Console, data: dict[str, Any]) -> None:
        made = table("AT", "ACTOR", "ACTION", "APP", "STAGE", "TARGET", "REVISION")
        for e in data["items"]:
            rows(
                made,
                [
                    (
                        str(e.get("at"))[:19],
                        e.get("actor"),
                        e.get("action"),
                        e.get("app"),
                        e.get("stage"),
                        e.get("target"),
                        short(e.get("revision")),
                    )
                ],
            )
        console.print(made)

    emit(fmt, page, render)
    return OK


COMMANDS = (status, flags, images, checks, deployments, hold, release, freeze, unfreeze, history)
