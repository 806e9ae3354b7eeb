"""Two replicas on one PostgreSQL and one remote, writing at once: they queue, never fight.

Four clients per replica toggle flags of one app while each replica also sets an image and
promotes another app, twice. Every acknowledged toggle is in the history, in order, once; no
write is refused (no 409); every promotion is applied, as one commit with its trailer.
"""

from __future__ import annotations

import json

from tests.conftest import git
from tests.faults.conftest import run_threads


def flag_values(remote, revision: str, keys: list[str]) -> dict[str, bool]:
    text = git(
        "--git-dir", str(remote), "show", f"{revision}:apps/feat/overlays/development/flags.json"
    )
    flags = json.loads(text)["flags"]
    return {key: flags[key]["defaultVariant"] == "on" for key in keys}


def test_two_replicas_toggle_and_promote_at_once(cluster):
    a, b = cluster("a", "b")
    remote = cluster.remote
    start = git("--git-dir", str(remote), "rev-parse", "main").strip()
    keys = [f"t{n}" for n in range(8)]
    acks: dict[str, list[tuple[bool, str]]] = {key: [] for key in keys}
    refused: list[str] = []
    promoted: list[dict] = []

    def toggler(replica, key: str):
        def run() -> None:
            value = False
            for _ in range(5):
                status, body = replica.call(
                    "PATCH",
                    f"/api/v1/apps/feat/stages/development/flags/{key}",
                    {"enabled": not value},
                )
                if status != 200:
                    refused.append(f"{replica.name} toggle {key}: {status} {body}")
                    continue
                value = not value
                acks[key].append((value, body["revision"]))

        return run

    def promoter(replica, app: str):
        def run() -> None:
            for n in range(2):
                status, body = replica.call(
                    "PUT",
                    f"/api/v1/apps/{app}/stages/development/images",
                    {
                        "name": "ghcr.io/acme/demo" if app == "demo" else "ghcr.io/acme/web",
                        "tag": f"2.0.{n}",
                    },
                )
                if status != 200:
                    refused.append(f"{replica.name} image {app}: {status} {body}")
                    return
                revision = body["revision"]
                for path, report in (
                    ("deployments", {"revision": revision, "health": "healthy"}),
                    ("checks", {"kind": "smoke", "revision": revision, "status": "passed"}),
                ):
                    status, body = replica.call(
                        "POST", f"/api/v1/apps/{app}/stages/development/{path}", report
                    )
                    assert status == 201, body
                status, body = replica.call(
                    "POST", f"/api/v1/apps/{app}/promotions", {"to": "staging"}
                )
                if status != 201:
                    refused.append(f"{replica.name} promote {app}: {status} {body}")
                    return
                promoted.append(body)

        return run

    run_threads(
        [toggler(a if n % 2 == 0 else b, key) for n, key in enumerate(keys)]
        + [promoter(a, "demo"), promoter(b, "web")]
    )

    assert refused == []  # no 409, no 503: the replicas took turns
    assert [p["status"] for p in promoted] == ["applied"] * 4, promoted
    end = git("--git-dir", str(remote), "rev-parse", "main").strip()
    history = git("--git-dir", str(remote), "rev-list", "--reverse", f"{start}..{end}").split()
    # one commit per write: 40 toggles, 4 image sets, 4 promotions
    assert len(history) == 48
    for promotion in promoted:
        message = git("--git-dir", str(remote), "log", "-1", "--format=%B", promotion["revision"])
        assert f"Stageflow-Promotion: {promotion['id']}" in message
    # nothing lost: each flag changed exactly as often as its client was told, and ends as told
    previous = flag_values(remote, start, keys)
    changes = dict.fromkeys(keys, 0)
    for revision in history:
        now = flag_values(remote, revision, keys)
        for key in keys:
            changes[key] += now[key] != previous[key]
        previous = now
    for key in keys:
        assert changes[key] == len(acks[key]) == 5
        assert previous[key] == acks[key][-1][0]
