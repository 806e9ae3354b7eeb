"""Client commands over the REST API: the status of every stage, and the audit history.

The other day-to-day commands live beside it (``flags``, ``images``, ``reports``, ``holds``);
``COMMANDS`` gathers them all for the ``stageflow`` group.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli import flags, holds, images, reports
from stageflow.cli.connection import Api
from stageflow.cli.options import client_command
from stageflow.cli.output import OK, emit, joined, mark, rows, short, table

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
    automatic = [s["name"] for s in api.get("/pipeline")["stages"] if s.get("auto_promote")]
    data = {
        "apps": apps,
        "freezes": freezes,
        "waiting_promotions": waiting,
        "auto_promote": automatic,
    }

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
                            stage["stage"]
                            + (" (auto)" if stage["stage"] in data["auto_promote"] else ""),
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
                            f"{p['from']} → {p['to']}" + (" (auto)" if p.get("automatic") else ""),
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


COMMANDS = (
    status,
    *flags.COMMANDS,
    *images.COMMANDS,
    *reports.COMMANDS,
    *holds.COMMANDS,
    history,
)
