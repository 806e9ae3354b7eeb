"""Auto-promotion over HTTP, real Git and kustomize: a proven state moves on by itself (#21)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from stageflow.cli import cli
from stageflow.services import promotions as promotion_service
from tests.builders import bearer, commit_message, make_token, remote_head, third_party_commit
from tests.conftest import SEED
from tests.e2e.conftest import ADMIN
from tests.e2e.test_dashboard import signed_in
from tests.e2e.test_promotions import Clock, gate, report

IMAGE = "ghcr.io/acme/demo"


def _auto_pipeline(*stages: str, auto_rollback: tuple[str, ...] = ()) -> str:
    """The seed's stageflow.yaml with ``auto_promote: true`` on ``stages``."""
    text = (SEED / "stageflow.yaml").read_text()
    for stage in stages:
        extra = "    auto_promote: true\n"
        if stage in auto_rollback:
            extra += "    auto_rollback: true\n"
        marker = f"  - name: {stage}\n    namespace: {stage}\n"
        assert marker in text
        text = text.replace(marker, marker + extra)
    return text


@pytest.fixture
def clock(stageflow):
    sf, _ = stageflow
    return Clock(sf)


def _switch_on(remote: Path, *stages: str, auto_rollback: tuple[str, ...] = ()) -> None:
    third_party_commit(
        remote, "stageflow.yaml", _auto_pipeline(*stages, auto_rollback=auto_rollback), "auto"
    )


def _set_image(client, tag: str) -> str:
    put = client.put(
        "/api/v1/apps/demo/stages/development/images", json={"name": IMAGE, "tag": tag}
    )
    assert put.status_code == 200, put.get_json()
    return put.get_json()["revision"]


def _into(client, stage: str) -> list[dict]:
    return client.get(f"/api/v1/promotions?app=demo&to={stage}").get_json()["items"]


def _audit(client, action: str) -> list[dict]:
    items = client.get("/api/v1/audit?limit=100").get_json()["items"]
    return [entry for entry in items if entry["action"] == action]


def test_the_seed_flow_runs_by_itself_up_to_the_approval(
    client, anonymous, gitops_remote: Path, stageflow, clock
):
    sf, _ = stageflow
    _switch_on(gitops_remote, "staging", "production")
    pipeline = client.get("/api/v1/pipeline").get_json()
    assert [s["auto_promote"] for s in pipeline["stages"]] == [False, True, True]

    # CI deploys an image into development; the cluster runs it, and its smoke test passes
    dev_revision = _set_image(client, "1.5.0")
    report(client, "development", dev_revision)
    (opened,) = _into(client, "staging")
    assert opened["automatic"] is True
    assert opened["requested_by"] == "stageflow"
    assert opened["status"] == "blocked"
    assert gate(opened, "check:smoke")["status"] == "pending"
    assert remote_head(gitops_remote) == dev_revision

    report(client, "development", dev_revision, "smoke")
    applied = client.get(f"/api/v1/promotions/{opened['id']}").get_json()
    assert applied["status"] == "applied", applied["message"]
    staging_revision = applied["revision"]
    assert remote_head(gitops_remote) == staging_revision
    message = commit_message(gitops_remote, staging_revision)
    assert message.startswith("demo: development -> staging")
    assert f"images: {IMAGE} 1.4.0 -> 1.5.0" in message
    assert "image: ghcr.io/acme/demo:1.5.0" in applied["diff"].replace("+", "")

    # staging runs it: a production promotion opens by itself, blocked on staging's gates
    report(client, "staging", staging_revision)
    (to_production,) = _into(client, "production")
    assert to_production["automatic"] is True
    for name in ("check:smoke", "check:load", "soak", "approvals"):
        assert gate(to_production, name)["status"] == "pending", name
    report(client, "staging", staging_revision, "smoke", "load")
    clock.advance(minutes=1, seconds=1)
    promotion_service.reevaluate_waiting(sf)  # what the server's timer does
    waiting = client.get(f"/api/v1/promotions/{to_production['id']}").get_json()
    assert waiting["status"] == "pending_approval", waiting["message"]
    assert remote_head(gitops_remote) == staging_revision  # the system never approves itself

    bob = bearer(make_token(client, "bob", ["approver"]))
    approved = anonymous.post(
        f"/api/v1/promotions/{to_production['id']}/approvals", json={}, headers=bob
    )
    assert approved.status_code == 201, approved.get_json()
    assert approved.get_json()["status"] == "applied"
    assert commit_message(gitops_remote, remote_head(gitops_remote)).startswith(
        "demo: staging -> production"
    )
    created = _audit(client, "promotion.create")
    assert {(e["stage"], e["actor"]) for e in created} == {
        ("staging", "stageflow"),
        ("production", "stageflow"),
    }

    # reporting the same state again opens nothing new
    report(client, "development", dev_revision)
    assert len(_into(client, "staging")) == 1


def test_a_newer_proven_state_supersedes_the_waiting_one(client, gitops_remote: Path):
    _switch_on(gitops_remote, "staging")
    first = _set_image(client, "1.5.0")
    report(client, "development", first)
    second = _set_image(client, "1.6.0")
    report(client, "development", second)

    newer, older = _into(client, "staging")
    assert older["status"] == "superseded"
    assert newer["status"] == "blocked" and newer["automatic"]
    assert f"superseded by promotion {newer['id']}" in older["message"]
    assert [p["id"] for p in _into(client, "staging") if p["status"] == "blocked"] == [newer["id"]]


@pytest.mark.parametrize("pause", ["hold", "freeze"])
def test_a_held_or_frozen_stage_is_never_auto_promoted_into(
    client, gitops_remote: Path, pause: str
):
    _switch_on(gitops_remote, "staging")
    url = (
        "/api/v1/apps/demo/stages/staging/hold"
        if pause == "hold"
        else "/api/v1/stages/staging/freeze"
    )
    assert client.post(url, json={"reason": "release week"}).status_code == 201
    revision = _set_image(client, "1.5.0")
    report(client, "development", revision, "smoke")

    assert _into(client, "staging") == []
    (skipped,) = _audit(client, "promotion.auto_skipped")
    assert skipped["stage"] == "staging"
    assert "release week" in skipped["after"]["reason"]

    # released: the next report of the same state opens it (it was never offered)
    assert client.delete(url).status_code == 200
    report(client, "development", revision)
    (opened,) = _into(client, "staging")
    assert opened["status"] == "applied" and opened["automatic"]


def test_a_rollback_pauses_auto_promotion_and_a_rejected_version_never_moves(
    client, gitops_remote: Path
):
    _switch_on(gitops_remote, "staging", auto_rollback=("staging",))
    revision = _set_image(client, "1.5.0")
    report(client, "development", revision, "smoke")
    (applied,) = _into(client, "staging")
    assert applied["status"] == "applied"

    # staging breaks on it: the automatic rollback holds staging and rejects 1.5.0
    failed = client.post(
        "/api/v1/apps/demo/stages/staging/checks",
        json={"kind": "smoke", "revision": applied["revision"], "status": "failed"},
    )
    assert failed.get_json()["rollback"]["promotion"] == applied["id"]

    # a new state in development (a flag) is not offered while the hold stands
    toggled = client.patch(
        "/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False}
    )
    assert toggled.status_code == 200
    report(client, "development", toggled.get_json()["revision"], "smoke")
    assert [p["status"] for p in _into(client, "staging")] == ["rolled_back"]
    assert "automatic rollback" in _audit(client, "promotion.auto_skipped")[0]["after"]["reason"]

    # released: the state still carries the rejected 1.5.0, so it is skipped, not promoted
    assert client.delete("/api/v1/apps/demo/stages/staging/hold").status_code == 200
    report(client, "development", toggled.get_json()["revision"])
    assert [p["status"] for p in _into(client, "staging")] == ["rolled_back"]
    assert "1.5.0" in _audit(client, "promotion.auto_skipped")[0]["after"]["reason"]


def test_status_and_the_dashboard_show_the_setting_and_what_it_waits_for(
    app, client, gitops_remote: Path, live_server, tmp_path: Path, monkeypatch
):
    _switch_on(gitops_remote, "staging")
    report(client, "development", _set_image(client, "1.5.0"))  # no smoke check yet: it waits
    (waiting,) = _into(client, "staging")

    for name in [n for n in os.environ if n.startswith("STAGEFLOW_")]:
        monkeypatch.delenv(name)
    env = {
        "HOME": str(tmp_path),
        "STAGEFLOW_CONFIG": str(tmp_path / "config.toml"),
        "STAGEFLOW_URL": live_server.base,
        "STAGEFLOW_TOKEN": ADMIN,
        "COLUMNS": "250",
    }
    shown = CliRunner().invoke(cli, ["status", "demo"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "staging (auto)" in shown.output
    assert "development → staging (auto)" in shown.output
    assert "check:smoke" in shown.output  # what it waits for
    data = json.loads(CliRunner().invoke(cli, ["status", "demo", "-o", "json"], env=env).output)
    assert data["auto_promote"] == ["staging"]
    assert [p["automatic"] for p in data["waiting_promotions"]] == [True]

    page = signed_in(app).get("/").text
    assert "data-auto-promote" in page
    assert f'Automatic promotion <a href="/promotions/{waiting["id"]}">#{waiting["id"]}</a>' in page
    detail = signed_in(app).get(f"/promotions/{waiting['id']}").text
    assert "Stageflow (automatic" in detail
