"""`stageflow evidence`: show a promotion's evidence, verify the whole chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from stageflow.cli.connection import Api
from stageflow.cli.options import client_command
from stageflow.cli.output import OK, REFUSED, emit, short
from stageflow.domain import evidence as chain


@click.group()
def evidence() -> None:
    """Promotion evidence: what each settled promotion was based on, chained by digest."""


@evidence.command("show")
@click.argument("promotion_id", type=int)
@client_command
def evidence_show(api: Api, fmt: str, promotion_id: int) -> int:
    """Show a settled promotion's evidence record and its digests.

    \b
    Example:
      stageflow evidence show 42 -o json
    """
    found = api.get(f"/promotions/{promotion_id}/evidence")

    def render(console: Console, d: dict[str, Any]) -> None:
        record = d["record"]
        console.print(
            Text(
                f"promotion #{promotion_id}: {record['app']} {record['from']} -> {record['to']}, "
                f"{record['status']} as {short(record['commit']['revision'])}"
            )
        )
        for gate in record["gates"]:
            console.print(Text(f"  {gate['status']:<12} {gate['name']}: {gate['message']}"))
        approvers = ", ".join(a["approver"] for a in record["approvals"]) or "none"
        console.print(Text(f"  approvals: {approvers}"))
        console.print(Text(f"  digest {d['digest']} (after {d['previous_digest'][:12]})"))

    emit(fmt, found, render)
    return OK


@evidence.command("verify")
@client_command
def evidence_verify(api: Api, fmt: str) -> int:
    """Check every record of the evidence chain against its digest and the record before it.

    Exits 1 naming the first record that was changed, removed or inserted. Needs a token
    without a scope (the chain links every app's records).

    \b
    Example:
      stageflow evidence verify
    """
    after, previous, read = 0, chain.GENESIS, 0
    broken: chain.Break | None = None
    while broken is None:
        page = api.get("/evidence", after=after, limit=500)
        entries = [_entry(item) for item in page["items"]]
        broken = chain.verify(entries, start=previous)
        if broken is None:
            read += len(entries)
        if not entries or page.get("next") is None:
            break
        after, previous = entries[-1].id or 0, entries[-1].digest
    data = {
        "records": read,
        "ok": broken is None,
        "broken": None
        if broken is None
        else {"id": broken.id, "promotion_id": broken.promotion_id, "problem": broken.problem},
    }

    def render(console: Console, d: dict[str, Any]) -> None:
        if d["ok"]:
            console.print(Text(f"evidence chain verified: {d['records']} records"))
        else:
            b = d["broken"]
            console.print(
                Text(
                    f"evidence record {b['id']} (promotion #{b['promotion_id']}) fails: "
                    f"{b['problem']}",
                    style="red",
                )
            )

    emit(fmt, data, render)
    return OK if broken is None else REFUSED


def _entry(item: dict[str, Any]) -> chain.Evidence:
    return chain.Evidence(
        promotion_id=item["promotion_id"],
        record=item["record_json"],
        digest=item["digest"],
        previous_digest=item["previous_digest"],
        at=datetime.fromisoformat(item["at"]),
        id=item["id"],
    )


COMMANDS = (evidence,)
