"""SIGKILL a replica in the middle of a push: the other replica settles it within seconds.

A hook on the remote holds the push of the promotion (or rollback) commit until the replica is
killed: in `pre-receive` the commit never lands; in `post-receive` it has landed and the killed
replica never recorded it. Either way the ledger must come to agree with the remote, the audit
log must hold an entry for every Stageflow commit, and a retry with the same Idempotency-Key must
get the committed result instead of a second commit (or a wait of minutes).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from tests.conftest import git
from tests.faults.conftest import Replica, eventually

HOOK = """#!/bin/sh
# Hold a Stageflow push carrying {trailer} until the test says so (bounded: 30 s).
while read old new ref; do
  if git log -1 --format=%B "$new" | grep -q "{trailer}"; then
    touch "{marks}/entered"
    i=0
    while [ ! -e "{marks}/release" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
  fi
done
exit 0
"""


class HeldPush:
    """A hook that holds the next push whose commit carries ``trailer``."""

    def __init__(self, remote: Path, hook: str, trailer: str, marks: Path) -> None:
        self.path = remote / "hooks" / hook
        self.marks = marks
        marks.mkdir(parents=True, exist_ok=True)
        self.path.write_text(HOOK.format(trailer=trailer, marks=marks))
        self.path.chmod(0o755)

    def wait_entered(self) -> None:
        eventually((self.marks / "entered").exists, "the push reaches the hook")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        (self.marks / "release").touch()


def ready_for_staging(replica: Replica, app: str = "demo") -> None:
    """Development has passed its gates at its current revision."""
    head = replica.call("GET", "/api/v1/pipeline")[1]["revision"]
    for path, report in (
        ("deployments", {"revision": head, "health": "healthy"}),
        ("checks", {"kind": "smoke", "revision": head, "status": "passed"}),
    ):
        status, body = replica.call("POST", f"/api/v1/apps/{app}/stages/development/{path}", report)
        assert status == 201, body


def remote_head(remote: Path) -> str:
    return git("--git-dir", str(remote), "rev-parse", "main").strip()


def in_background(call) -> threading.Thread:
    thread = threading.Thread(target=lambda: _swallow(call), daemon=True)
    thread.start()
    return thread


def _swallow(call) -> None:
    with contextlib.suppress(OSError):  # the replica was killed under the request: no answer
        call()


def audit_is_complete(replica: Replica, remote: Path) -> bool:
    """Every Stageflow commit on the remote has its audit entry (matched by change id)."""
    log = git(
        "--git-dir", str(remote), "log", "--format=%(trailers:key=Stageflow-Change,valueonly)"
    )
    changes = {line.strip() for line in log.splitlines() if line.strip()}
    entries = replica.call("GET", "/api/v1/audit?limit=500")[1]["items"]
    return changes <= {e.get("change_id") for e in entries}


@pytest.mark.parametrize("hook", ["pre-receive", "post-receive"])
def test_sigkill_during_a_promotions_push(cluster, tmp_path: Path, hook: str):
    a, b = cluster("a", "b")
    remote = cluster.remote
    ready_for_staging(a)
    before = remote_head(remote)
    held = HeldPush(remote, hook, "Stageflow-Promotion:", tmp_path / "marks")
    key = {"Idempotency-Key": "promote-demo-once"}
    request = in_background(
        lambda: a.call("POST", "/api/v1/apps/demo/promotions", {"to": "staging"}, headers=key)
    )
    held.wait_entered()

    a.kill()
    held.remove()
    request.join(30)

    landed = hook == "post-receive"
    assert (remote_head(remote) != before) is landed

    # settled by the other replica's settler: listing settles nothing by itself
    def settled():
        items = b.call("GET", "/api/v1/promotions?app=demo")[1]["items"]
        return items if items[0]["status"] != "applying" else None

    (promotion,) = eventually(settled, "the promotion is settled", timeout=20)
    if landed:
        assert promotion["status"] == "applied"
        assert promotion["revision"] == remote_head(remote)
    else:
        assert promotion["status"] == "failed"
    eventually(lambda: audit_is_complete(b, remote), "the audit log has every commit")

    # A retry with the same key gets the committed result at once (the dead request's claim is
    # freed), and never makes a second commit of the same change.
    status, body = b.call("POST", "/api/v1/apps/demo/promotions", {"to": "staging"}, headers=key)
    if landed:
        assert status == 200, body
        assert body["revision"] == promotion["revision"]
        assert body["recovered"] is True
        assert remote_head(remote) == promotion["revision"]
    else:
        assert status == 201, body
        assert body["status"] == "applied"
        assert remote_head(remote) == body["revision"]


def test_sigkill_during_a_rollbacks_push(cluster, tmp_path: Path):
    a, b = cluster("a", "b")
    remote = cluster.remote
    ready_for_staging(a)
    status, promotion = a.call("POST", "/api/v1/apps/demo/promotions", {"to": "staging"})
    assert status == 201 and promotion["status"] == "applied", promotion
    held = HeldPush(remote, "post-receive", "Stageflow-Rollback:", tmp_path / "marks")
    request = in_background(
        lambda: a.call("POST", f"/api/v1/promotions/{promotion['id']}/rollback", {"reason": "bad"})
    )
    held.wait_entered()

    a.kill()
    held.remove()
    request.join(30)

    rollback = remote_head(remote)
    assert f"Stageflow-Rollback: {promotion['id']}" in git(
        "--git-dir", str(remote), "log", "-1", "--format=%B", rollback
    )

    def settled():
        found = b.call("GET", "/api/v1/promotions?app=demo")[1]["items"][0]
        return found if found["status"] == "rolled_back" else None

    rolled = eventually(settled, "the rollback is recorded", timeout=20)
    assert rolled["id"] == promotion["id"]
    assert rollback[:12] in rolled["message"]
    eventually(lambda: audit_is_complete(b, remote), "the audit log has every commit")
    # the state on the remote is what the ledger says: staging is back where it was
    status, again = b.call("POST", f"/api/v1/promotions/{promotion['id']}/rollback", {})
    assert status == 409 and again["error"]["code"] == "already_rolled_back"
