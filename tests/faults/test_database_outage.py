"""PostgreSQL stopped, then frozen: flag reads and OFREP go on answering from Git, writes answer
503 `database_unavailable` within the database timeout (2 s here), and nothing hangs."""

from __future__ import annotations

import time

from tests.conftest import git
from tests.faults.conftest import eventually

FLAGD = "/api/v1/apps/demo/stages/development/flags"
OFREP = "/ofrep/v1/evaluate/flags"
TOGGLE = "/api/v1/apps/demo/stages/development/flags/beta_api"
# The replicas' STAGEFLOW_DATABASE_TIMEOUT is 2 s; a write may wait for it twice (the pooled
# connection's ping, then a new connection), plus the rest of the request.
WRITE_BOUND = 2 * 2 + 3


def warm_up(replica, ofrep_token: str) -> None:
    """Use both tokens, then give every worker's settler a round (0.5 s here) to read them.

    A worker may serve a token during an outage that it verified itself or that the ledger
    said was in use (its ``last_used_at``) at its last settler round.
    """
    assert replica.call("GET", FLAGD)[0] == 200
    assert replica.call("POST", OFREP, {"context": {}}, token=ofrep_token)[0] == 200
    time.sleep(1.5)


def reads_answer(replica, ofrep_token: str, rounds: int = 4) -> None:
    """Flag reads and OFREP answer 200, also once the token cache (0.5 s) has expired."""
    for _ in range(rounds):
        status, document = replica.call("GET", FLAGD, timeout=10)
        assert status == 200, document
        assert "beta_api" in document["flags"]
        status, bulk = replica.call(
            "POST", OFREP, {"context": {"targetingKey": "u-1"}}, token=ofrep_token, timeout=10
        )
        assert status == 200, bulk
        assert {flag["key"] for flag in bulk["flags"]} >= {"beta_api", "new_ui"}
        time.sleep(0.15)


def write_is_refused_fast(replica, remote) -> None:
    before = git("--git-dir", str(remote), "rev-parse", "main")
    started = time.monotonic()
    status, body = replica.call("PATCH", TOGGLE, {"enabled": False}, timeout=WRITE_BOUND + 10)
    assert time.monotonic() - started < WRITE_BOUND
    assert status == 503, body
    assert body["error"]["code"] == "database_unavailable"
    assert git("--git-dir", str(remote), "rev-parse", "main") == before  # nothing committed


def readiness_says_so(replica) -> None:
    # reads go on, so the replica stays in rotation; writes cannot, and /readyz/writes says why
    status, body = replica.call("GET", "/readyz", timeout=WRITE_BOUND + 10)
    assert status == 200, body
    assert "database" in body["degraded"] and body["checks"]["database"]["ok"] is False
    status, body = replica.call("GET", "/readyz/writes", timeout=WRITE_BOUND + 10)
    assert status == 503, body
    assert body["error"]["details"]["database"]["ok"] is False


def writes_work_again(replica) -> None:
    value = {"flip": False}

    def toggled() -> bool:
        value["flip"] = not value["flip"]
        return replica.call("PATCH", TOGGLE, {"enabled": value["flip"]})[0] == 200

    eventually(toggled, "writes succeed again", timeout=30)


def test_flag_reads_survive_a_stopped_and_a_frozen_database(cluster, postgres):
    (a,) = cluster("a")
    remote = cluster.remote
    status, token = a.call(
        "POST",
        "/api/v1/tokens",
        {
            "name": "app",
            "owner": "demo-app",
            "roles": ["client"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
    )
    assert status == 201, token
    ofrep_token = token["token"]
    warm_up(a, ofrep_token)

    postgres.stop()
    try:
        reads_answer(a, ofrep_token)
        write_is_refused_fast(a, remote)
        readiness_says_so(a)
    finally:
        postgres.start()
    writes_work_again(a)
    warm_up(a, ofrep_token)

    postgres.freeze()
    try:
        reads_answer(a, ofrep_token)
        write_is_refused_fast(a, remote)
        readiness_says_so(a)
    finally:
        postgres.thaw()
    writes_work_again(a)
