"""Concurrent writers: N clients toggle N different flags at once; nothing acknowledged may be lost.

Each client opens a new connection per request, as a CI job calling curl does, so requests of
one client land on either gunicorn worker. Afterwards the remote's first-parent history from the
starting head is replayed: every acknowledged toggle must show up as one change of its flag, and
each flag must end at the value its client was last told it has. An acknowledged toggle without
its change in the history is a lost update.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.gitops import APP, STAGES, flag_key, flags_file, git, read_many, remote_head
from bench.server import StageflowServer


@dataclass
class Ack:
    value: bool
    revision: str


@dataclass
class Writer:
    key: str
    acks: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _values(texts: list[str | None], keys: list[str]) -> list[dict[str, bool | None]]:
    out = []
    for text in texts:
        flags = json.loads(text)["flags"] if text else {}
        out.append(
            {key: (flags[key]["defaultVariant"] == "on") if key in flags else None for key in keys}
        )
    return out


def _is_ancestor(server: StageflowServer, older: str, newer: str) -> bool:
    try:
        git("--git-dir", str(server.remote), "merge-base", "--is-ancestor", older, newer)
    except RuntimeError:
        return False
    return True


def run(
    server: StageflowServer,
    *,
    clients: int,
    per_client: int,
    first_flag: int,
    via: list[StageflowServer] | None = None,
) -> dict[str, Any]:
    """``clients`` threads each toggle their own flag ``per_client`` times; verify the history.

    With ``via`` (replicas on the same remote), client ``i`` sends to ``via[i % len(via)]``.
    """
    entry = via or [server]
    stage = STAGES[0]
    path = flags_file(stage)
    keys = [flag_key(first_flag + n) for n in range(clients)]
    start = remote_head(server.remote)
    initial = _values(read_many(server.remote, [f"{start}:{path}"]), keys)[0]
    writers = [Writer(key) for key in keys]
    gate = threading.Barrier(clients + 1)

    def toggle(writer: Writer, target: StageflowServer) -> None:
        client = target.admin(keep_alive=False)
        value = bool(initial[writer.key])
        url = f"/api/v1/apps/{APP}/stages/{stage}/flags/{writer.key}"
        gate.wait()
        for _ in range(per_client):
            try:
                answer = client.request("PATCH", url, {"enabled": not value})
            except OSError as exc:
                writer.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if answer.status == 200:
                value = not value
                writer.acks.append(Ack(value, str(answer.json()["revision"])))
            else:
                code = (answer.json() or {}).get("error", {}).get("code", "?")
                writer.failures.append(f"HTTP {answer.status} {code}")

    threads = [
        threading.Thread(target=toggle, args=(w, entry[i % len(entry)]), daemon=True)
        for i, w in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=600)
    wall = time.perf_counter() - began

    final = remote_head(server.remote)
    revisions = git(
        "--git-dir",
        str(server.remote),
        "rev-list",
        "--first-parent",
        "--reverse",
        f"{start}..{final}",
    ).split()
    history = _values(read_many(server.remote, [f"{r}:{path}" for r in revisions]), keys)
    lost = 0
    stale = 0
    details: dict[str, Any] = {}
    for writer in writers:
        previous = initial[writer.key]
        changes = 0
        for state in history:
            if state[writer.key] != previous:
                changes += 1
                previous = state[writer.key]
        final_value = history[-1][writer.key] if history else initial[writer.key]
        mismatch = bool(writer.acks) and final_value != writer.acks[-1].value
        missing = max(len(writer.acks) - changes, int(mismatch))
        lost += missing
        for before, after in zip(writer.acks, writer.acks[1:], strict=False):
            if not _is_ancestor(server, before.revision, after.revision):
                stale += 1
        details[writer.key] = {
            "acknowledged": len(writer.acks),
            "changes_in_history": changes,
            "final_matches_last_ack": not mismatch,
            "failures": writer.failures[:5],
        }
    acknowledged = sum(len(w.acks) for w in writers)
    return {
        "clients": clients,
        "per_client": per_client,
        "acknowledged": acknowledged,
        "failed": sum(len(w.failures) for w in writers),
        "conflicts": sum(1 for w in writers for f in w.failures if f.startswith("HTTP 409")),
        "commits": len(revisions),
        "seconds": round(wall, 3),
        "toggles_per_s": acknowledged / wall if wall else 0.0,
        "lost_updates": lost,
        "stale_acks": stale,
        "per_flag": details,
    }
