"""Events, promotion evidence and DORA figures of a real promotion (real Git, kustomize, DB)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from stageflow.cli import cli
from stageflow.domain.evidence import GENESIS
from stageflow.services import evidence
from tests.builders import bearer, make_token, remote_head
from tests.e2e.conftest import ADMIN
from tests.e2e.test_promotions import Clock, report


@pytest.fixture
def clock(stageflow):
    sf, _ = stageflow
    return Clock(sf)


def _to_production(client, anonymous, clock) -> tuple[dict, dict]:
    """The seed's flow: an image through staging into production, approved by bob."""
    put = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
    )
    report(client, "development", put.get_json()["revision"], "smoke")
    staging = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert staging["status"] == "applied", staging["message"]
    report(client, "staging", staging["revision"], "smoke", "load")
    clock.advance(minutes=2)
    production = client.post("/api/v1/apps/demo/promotions", json={"to": "production"}).get_json()
    assert production["status"] == "pending_approval", production["message"]
    bob = bearer(make_token(client, "bob", ["approver"]))
    approved = anonymous.post(
        f"/api/v1/promotions/{production['id']}/approvals", json={"comment": "ok"}, headers=bob
    ).get_json()
    assert approved["status"] == "applied"
    return staging, approved


def _verify(live_server, tmp_path: Path, monkeypatch, *args: str):
    for name in [n for n in os.environ if n.startswith("STAGEFLOW_")]:
        monkeypatch.delenv(name)
    env = {
        "HOME": str(tmp_path),
        "STAGEFLOW_CONFIG": str(tmp_path / "config.toml"),
        "STAGEFLOW_URL": live_server.base,
        "STAGEFLOW_TOKEN": ADMIN,
    }
    done = CliRunner().invoke(cli, ["evidence", *args], env=env, standalone_mode=False)
    assert done.exception is None, done.output
    return done.return_value, done.output


def test_evidence_of_real_promotions_verifies_and_one_changed_byte_is_named(
    client, anonymous, clock, live_server, settings, tmp_path: Path, monkeypatch
):
    staging, production = _to_production(client, anonymous, clock)

    first = client.get(f"/api/v1/promotions/{staging['id']}/evidence")
    assert first.status_code == 200
    body = first.get_json()
    assert set(body) >= {"record", "digest", "previous_digest"}
    assert body["previous_digest"] == GENESIS
    record = body["record"]
    assert record["plan"]["images"][0]["to"] == "1.5.0"
    assert record["commit"]["revision"] == staging["revision"]
    assert record["commit"]["trailers"]["Stageflow-Promotion"] == str(staging["id"])
    smoke = next(g for g in record["gates"] if g["name"] == "check:smoke")
    assert smoke["status"] == "passed" and smoke["evidence"]

    second = client.get(f"/api/v1/promotions/{production['id']}/evidence").get_json()
    assert second["previous_digest"] == body["digest"]
    assert [a["approver"] for a in second["record"]["approvals"]] == ["bob"]
    assert second["record"]["soak"]["status"] == "passed"

    status, output = _verify(live_server, tmp_path, monkeypatch, "verify")
    assert status == 0, output
    assert "verified: 2 records" in output

    # one byte of the stored record changes: verify fails and names it
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        changed = connection.execute(
            text(
                "UPDATE evidence SET record = replace(record, '1.5.0', '1.5.1') "
                "WHERE promotion_id = :id"
            ),
            {"id": production["id"]},
        )
        assert changed.rowcount == 1
    engine.dispose()
    status, output = _verify(live_server, tmp_path, monkeypatch, "verify")
    assert status == 1
    assert f"(promotion #{production['id']})" in output
    assert "does not match its digest" in output


def test_events_and_dora_figures_follow_a_rollback(client, anonymous, clock, gitops_remote):
    _, production = _to_production(client, anonymous, clock)
    failed = client.post(
        "/api/v1/apps/demo/stages/production/checks",
        json={"kind": "smoke", "revision": production["revision"], "status": "failed"},
    )
    rollback = failed.get_json()["rollback"]
    assert rollback["revision"] == remote_head(gitops_remote)
    clock.advance(seconds=30)
    report(client, "production", rollback["revision"])

    items = client.get("/api/v1/events?limit=1000").get_json()["items"]
    kinds = [e["kind"] for e in items]
    assert [e["id"] for e in items] == sorted(e["id"] for e in items)
    for kind in (
        "state_changed",
        "check_passed",
        "approval_requested",
        "approval_given",
        "promotion_applied",
        "check_failed",
        "rollback",
    ):
        assert kind in kinds, kind
    assert kinds.index("check_failed") < kinds.index("rollback")
    applied = [e for e in items if e["kind"] == "promotion_applied"]
    assert [(e["stage"], e["subject"]) for e in applied][-1] == (
        "production",
        str(production["id"]),
    )
    only_failures = client.get("/api/v1/events?kind=rollback&kind=check_failed").get_json()
    assert {e["kind"] for e in only_failures["items"]} == {"rollback", "check_failed"}

    dora = client.get("/api/v1/apps/demo/metrics/dora").get_json()
    assert dora["stage"] == "production"
    assert dora["deployment_frequency"]["deployments"] == 1
    assert dora["change_failure_rate"] == {"deployments": 1, "rolled_back": 1, "rate": 1.0}
    assert dora["lead_time_seconds"]["samples"] == 1
    assert dora["lead_time_seconds"]["median"] >= 120  # the soak the clock jumped over
    restore = dora["time_to_restore_seconds"]
    assert restore["samples"] == 1 and restore["not_restored"] == 0
    assert 30 <= restore["median"] < 60
    staging = client.get("/api/v1/apps/demo/metrics/dora?stage=staging&days=7").get_json()
    assert staging["change_failure_rate"]["rolled_back"] == 0


def test_scope_limits_events_and_the_chain(client, anonymous, clock):
    _to_production(client, anonymous, clock)
    dev_only = bearer(make_token(client, "dev", ["viewer"], stages=["development"]))
    seen = anonymous.get("/api/v1/events?limit=1000", headers=dev_only).get_json()["items"]
    assert seen and {e["stage"] for e in seen} <= {"development", None}
    assert anonymous.get("/api/v1/evidence", headers=dev_only).status_code == 403
    assert anonymous.get("/api/v1/apps/demo/metrics/dora", headers=dev_only).status_code == 403
    assert (
        anonymous.get(
            "/api/v1/apps/demo/metrics/dora?stage=development", headers=dev_only
        ).status_code
        == 200
    )


def test_no_evidence_before_a_promotion_settles(client):
    blocked = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert blocked["status"] == "blocked"
    missing = client.get(f"/api/v1/promotions/{blocked['id']}/evidence")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "evidence_not_found"
    assert client.get("/api/v1/promotions/999999/evidence").status_code == 404


def test_the_settler_records_what_a_crash_left_out_oldest_first_and_only_once(
    client, anonymous, clock, settings, stageflow
):
    sf, _ = stageflow
    staging, production = _to_production(client, anonymous, clock)
    assert evidence.record_missing(sf) == []  # both were recorded when they settled
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:  # a crash between settling and recording, twice
        connection.execute(text("DELETE FROM evidence"))
    engine.dispose()

    assert evidence.record_missing(sf, limit=1) == [production["id"]]  # the newest settled only
    assert evidence.record_missing(sf) == [staging["id"]]
    assert evidence.record_missing(sf) == []
    read, broken = evidence.verify(sf)
    assert (read, broken) == (2, None)
    chained = [e.promotion_id for e in evidence.page(sf)]
    assert chained == [production["id"], staging["id"]]  # in the order they were recorded
