"""The seed's flow, end to end over HTTP: development -> staging -> production."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from tests.builders import (
    changed_files,
    commit_message,
    read_remote,
    remote_head,
    remote_log,
    render_remote,
)

OVERLAY = "apps/demo/overlays/{}"


class Clock:
    """A clock the test moves by hand (soak time without sleeping)."""

    def __init__(self, sf) -> None:
        self.now = sf.clock()
        sf.clock = lambda: self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock(stageflow):
    sf, _ = stageflow
    return Clock(sf)


def token(client, owner: str, roles: list[str]) -> dict[str, str]:
    created = client.post("/api/v1/tokens", json={"name": owner, "owner": owner, "roles": roles})
    assert created.status_code == 201, created.get_json()
    return {"Authorization": f"Bearer {created.get_json()['token']}"}


def report(client, stage: str, revision: str, *checks: str, health: str = "healthy") -> None:
    deployed = client.post(
        f"/api/v1/apps/demo/stages/{stage}/deployments",
        json={"revision": revision, "health": health},
    )
    assert deployed.status_code == 201, deployed.get_json()
    for kind in checks:
        checked = client.post(
            f"/api/v1/apps/demo/stages/{stage}/checks",
            json={"kind": kind, "revision": revision[:10], "status": "passed"},
        )
        assert checked.status_code == 201, checked.get_json()


def gate(promotion: dict, name: str) -> dict:
    return next(g for g in promotion["gates"] if g["name"] == name)


def test_the_seed_flow(client, anonymous, gitops_remote: Path, clock):
    # a new beta flag, ON in development
    client.post("/api/v1/apps/demo/flags", json={"key": "dark_mode", "lifecycle": "beta"})
    client.patch("/api/v1/apps/demo/stages/development/flags/dark_mode", json={"enabled": True})
    # the build pipeline deploys an image into development
    image = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
    )
    dev_revision = image.get_json()["revision"]

    # without a smoke check and a deployment report, development cannot move on
    blocked = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"})
    assert blocked.status_code == 201
    assert blocked.get_json()["status"] == "blocked"
    assert gate(blocked.get_json(), "check:smoke")["status"] == "pending"
    assert gate(blocked.get_json(), "deployment")["status"] == "pending"
    assert remote_head(gitops_remote) == dev_revision

    # the reports arrive; the waiting promotion re-evaluates itself and applies
    report(client, "development", dev_revision, "smoke")
    staging_promotion = client.get(f"/api/v1/promotions/{blocked.get_json()['id']}").get_json()
    assert staging_promotion["status"] == "applied", staging_promotion["message"]
    staging_revision = staging_promotion["revision"]
    assert remote_log(gitops_remote, 2) == [staging_revision, dev_revision]
    message = commit_message(gitops_remote, staging_revision)
    assert message.startswith("demo: development -> staging")
    assert "images: ghcr.io/acme/demo 1.4.0 -> 1.5.0" in message
    assert "flags: dark_mode absent -> on" in message
    assert f"Stageflow-Promotion: {staging_promotion['id']}" in message
    assert sorted(changed_files(gitops_remote, staging_revision)) == [
        f"{OVERLAY.format('staging')}/flags.json",
        f"{OVERLAY.format('staging')}/kustomization.yaml",
    ]
    assert "image: ghcr.io/acme/demo:1.5.0" in staging_promotion["diff"].replace("+", "")

    # production: blocked until staging proves itself
    to_prod = client.post("/api/v1/apps/demo/promotions", json={"to": "production"})
    body = to_prod.get_json()
    assert body["status"] == "blocked"
    for name in ("deployment", "check:smoke", "check:load", "soak", "approvals"):
        assert gate(body, name)["status"] == "pending", name
    promotion_id = body["id"]

    report(client, "staging", staging_revision, "smoke")
    body = client.get(f"/api/v1/promotions/{promotion_id}").get_json()
    assert body["status"] == "blocked"
    assert gate(body, "check:load")["status"] == "pending"
    assert gate(body, "deployment")["status"] == "passed"

    report(client, "staging", staging_revision, "load")
    body = client.get(f"/api/v1/promotions/{promotion_id}").get_json()
    assert body["status"] == "blocked"
    assert gate(body, "soak")["status"] == "pending"
    assert "to go" in gate(body, "soak")["message"]

    clock.advance(minutes=1, seconds=1)
    evaluated = client.post(f"/api/v1/promotions/{promotion_id}/evaluate")
    assert evaluated.status_code == 200
    assert evaluated.get_json()["status"] == "pending_approval"
    assert remote_head(gitops_remote) == staging_revision

    # four eyes: the requester cannot approve; someone else can
    own = client.post(f"/api/v1/promotions/{promotion_id}/approvals", json={})
    assert own.status_code == 403
    assert own.get_json()["error"]["code"] == "self_approval"
    bob = token(client, "bob", ["approver"])
    approved = anonymous.post(
        f"/api/v1/promotions/{promotion_id}/approvals", json={"comment": "lgtm"}, headers=bob
    )
    assert approved.status_code == 201, approved.get_json()
    body = approved.get_json()
    assert body["status"] == "applied"
    assert [a["approver"] for a in body["approvals"]] == ["bob"]
    prod_revision = body["revision"]
    assert remote_log(gitops_remote, 1) == [prod_revision]
    again = anonymous.post(f"/api/v1/promotions/{promotion_id}/approvals", json={}, headers=bob)
    assert again.status_code == 409

    # production runs only stable flags ON, staging beta and stable, as flags.allow says
    production = json.loads(
        read_remote(gitops_remote, prod_revision, f"{OVERLAY.format('production')}/flags.json")
    )["flags"]
    assert production["new_ui"]["defaultVariant"] == "on"
    assert production["beta_api"]["defaultVariant"] == "off"
    assert production["dark_mode"]["defaultVariant"] == "off"
    assert production["experimental_cache"]["defaultVariant"] == "off"
    staging = json.loads(
        read_remote(gitops_remote, prod_revision, f"{OVERLAY.format('staging')}/flags.json")
    )["flags"]
    assert staging["beta_api"]["defaultVariant"] == "on"
    assert staging["dark_mode"]["defaultVariant"] == "on"
    assert staging["experimental_cache"]["defaultVariant"] == "off"
    for stage in ("development", "staging", "production"):
        rendered = render_remote(gitops_remote, prod_revision, OVERLAY.format(stage))
        assert "image: ghcr.io/acme/demo:1.5.0" in rendered
    state = client.get("/api/v1/apps/demo").get_json()
    assert state["stages"][1]["deployed"]["revision"] == staging_revision
    assert {c["kind"] for c in state["stages"][1]["checks"]} == {"smoke", "load"}


def test_dry_run_stores_nothing(client, gitops_remote: Path):
    before = remote_head(gitops_remote)

    answer = client.post("/api/v1/apps/demo/promotions", json={"to": "staging", "dry_run": True})

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["dry_run"] is True and body["id"] is None
    assert body["verdict"] == "blocked"
    assert body["plan"]["images"] == [{"name": "ghcr.io/acme/demo", "from": "1.4.0", "to": "1.4.1"}]
    assert "-  - image: ghcr.io/acme/demo:1.4.0" in body["diff"] or "1.4.1" in body["diff"]
    assert client.get("/api/v1/promotions").get_json()["items"] == []
    assert remote_head(gitops_remote) == before


def test_skipping_a_stage_is_422_and_nothing_to_promote_is_409(client, gitops_remote: Path):
    skipped = client.post(
        "/api/v1/apps/demo/promotions", json={"from": "development", "to": "production"}
    )
    assert skipped.status_code == 422
    assert skipped.get_json()["error"]["code"] == "stage_skipped"
    first = client.post("/api/v1/apps/demo/promotions", json={"to": "development"})
    assert first.status_code == 422

    nothing = client.post(
        "/api/v1/apps/demo/promotions", json={"to": "staging", "images": False, "flags": "none"}
    )
    assert nothing.status_code == 409
    assert nothing.get_json()["error"]["code"] == "nothing_to_promote"
    unknown = client.post(
        "/api/v1/apps/demo/promotions", json={"to": "staging", "flags": ["no_such_flag"]}
    )
    assert unknown.status_code == 422


def test_a_newer_promotion_supersedes_and_cancel(client):
    first = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    second = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()

    assert client.get(f"/api/v1/promotions/{first['id']}").get_json()["status"] == "superseded"
    cancelled = client.post(f"/api/v1/promotions/{second['id']}/cancel")
    assert cancelled.get_json()["status"] == "cancelled"
    assert client.post(f"/api/v1/promotions/{second['id']}/cancel").status_code == 409
    listed = client.get("/api/v1/promotions?app=demo&status=superseded").get_json()["items"]
    assert [p["id"] for p in listed] == [first["id"]]


def test_freeze_and_hold_block_promotions_into_a_stage(client, gitops_remote: Path):
    dev = remote_head(gitops_remote)
    report(client, "development", dev, "smoke")
    assert (
        client.post("/api/v1/stages/staging/freeze", json={"reason": "release week"}).status_code
        == 201
    )
    frozen = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert frozen["status"] == "blocked"
    assert "release week" in gate(frozen, "freeze")["message"]

    assert client.delete("/api/v1/stages/staging/freeze").status_code == 200
    held = client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "bad build"})
    assert held.status_code == 201
    body = client.post(f"/api/v1/promotions/{frozen['id']}/evaluate").get_json()
    assert body["status"] == "blocked"
    assert gate(body, "freeze")["status"] == "passed"
    assert gate(body, "hold")["status"] == "failed"

    assert client.delete("/api/v1/apps/demo/stages/staging/hold").status_code == 200
    applied = client.post(f"/api/v1/promotions/{frozen['id']}/evaluate").get_json()
    assert applied["status"] == "applied"
    actions = [e["action"] for e in client.get("/api/v1/audit?limit=20").get_json()["items"]]
    assert {"stage.freeze", "stage.thaw", "stage.hold", "stage.release"} <= set(actions)


def test_a_check_for_a_later_commit_that_left_the_stage_alone_counts(client, gitops_remote: Path):
    dev = remote_head(gitops_remote)
    # a later commit that only touches production: development renders the same state
    later = client.patch(
        "/api/v1/apps/demo/stages/production/flags/new_ui", json={"enabled": False}
    ).get_json()["revision"]
    assert later != dev

    report(client, "development", later, "smoke")
    promoted = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()

    assert promoted["status"] == "applied", promoted["message"]

    # a check for an unknown revision is refused
    unknown = client.post(
        "/api/v1/apps/demo/stages/development/checks",
        json={"kind": "smoke", "revision": "deadbeef", "status": "passed"},
    )
    assert unknown.status_code == 422
    assert unknown.get_json()["error"]["code"] == "unknown_revision"


def test_a_failed_check_blocks_until_a_newer_pass(client, gitops_remote: Path):
    dev = remote_head(gitops_remote)
    client.post(
        "/api/v1/apps/demo/stages/development/deployments",
        json={"revision": dev, "health": "healthy"},
    )
    client.post(
        "/api/v1/apps/demo/stages/development/checks",
        json={"kind": "smoke", "revision": dev, "status": "failed", "summary": "500 on /"},
    )
    blocked = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert blocked["status"] == "blocked"
    assert gate(blocked, "check:smoke")["status"] == "failed"
    assert "500 on /" in gate(blocked, "check:smoke")["message"]

    report(client, "development", dev, "smoke")
    assert client.get(f"/api/v1/promotions/{blocked['id']}").get_json()["status"] == "applied"


def test_targeting_moves_with_the_flag(client, gitops_remote: Path):
    client.post(
        "/api/v1/apps/demo/flags",
        json={"key": "checkout.v2", "lifecycle": "beta", "defaultVariant": "off"},
    )
    rollout = {"fractional": [{"var": "targetingKey"}, ["on", 10], ["off", 90]]}
    client.patch(
        "/api/v1/apps/demo/stages/development/flags/checkout.v2",
        json={"targeting": rollout},
    )
    dev = remote_head(gitops_remote)
    report(client, "development", dev, "smoke")

    promoted = client.post(
        "/api/v1/apps/demo/promotions",
        json={"to": "staging", "flags": ["checkout.v2"], "images": False},
    ).get_json()

    assert promoted["status"] == "applied", promoted["message"]
    staging = json.loads(
        read_remote(gitops_remote, promoted["revision"], f"{OVERLAY.format('staging')}/flags.json")
    )["flags"]
    assert staging["checkout.v2"]["targeting"] == rollout
    assert promoted["plan"]["images"] == []
    assert [f["key"] for f in promoted["plan"]["flags"]] == ["checkout.v2"]


def test_shared_evaluators_travel_with_the_flags_that_use_them(client, gitops_remote: Path):
    from tests.builders import third_party_commit

    path = f"{OVERLAY.format('development')}/flags.json"
    doc = json.loads(read_remote(gitops_remote, "main", path))
    doc["$evaluators"] = {"acme": {"ends_with": [{"var": "email"}, "@acme.com"]}}
    doc["flags"]["acme_only"] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"$ref": "acme"}, "on", "off"]},
        "metadata": {"lifecycle": "beta"},
    }
    dev = third_party_commit(gitops_remote, path, json.dumps(doc, indent=2), "shared evaluator")
    report(client, "development", dev, "smoke")
    body = {"to": "staging", "flags": ["acme_only"], "images": False}

    promoted = client.post("/api/v1/apps/demo/promotions", json=body).get_json()

    assert promoted["status"] == "applied", promoted["message"]
    staging_path = f"{OVERLAY.format('staging')}/flags.json"
    staging = json.loads(read_remote(gitops_remote, promoted["revision"], staging_path))
    assert staging["$evaluators"] == doc["$evaluators"]
    assert staging["flags"]["acme_only"]["targeting"] == {"if": [{"$ref": "acme"}, "on", "off"]}

    # the target now uses "acme"; a source that redefines it cannot silently change it there
    doc["$evaluators"]["acme"] = {"ends_with": [{"var": "email"}, "@acme.org"]}
    doc["flags"]["acme_only"]["defaultVariant"] = "on"
    dev = third_party_commit(gitops_remote, path, json.dumps(doc, indent=2), "redefine")
    report(client, "development", dev, "smoke")
    clash = client.post("/api/v1/apps/demo/promotions", json=body)
    assert clash.status_code == 409
    assert clash.get_json()["error"]["code"] == "evaluator_conflict"


def test_soak_passing_with_no_new_report_applies_on_the_periodic_re_evaluation(
    client, anonymous, gitops_remote: Path, stageflow, clock
):
    from stageflow.services import promotions

    sf, _ = stageflow
    dev = remote_head(gitops_remote)
    report(client, "development", dev, "smoke")
    staging = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    report(client, "staging", staging["revision"], "smoke", "load")
    waiting = client.post("/api/v1/apps/demo/promotions", json={"to": "production"}).get_json()
    bob = token(client, "bob", ["approver"])
    approved = anonymous.post(
        f"/api/v1/promotions/{waiting['id']}/approvals", json={}, headers=bob
    ).get_json()
    assert approved["status"] == "blocked"  # approved, but staging has not soaked yet
    assert [g["name"] for g in approved["gates"] if g["status"] != "passed"] == ["soak"]

    promotions.reevaluate_waiting(sf)  # what `stageflow serve` runs on a timer
    assert client.get(f"/api/v1/promotions/{waiting['id']}").get_json()["status"] == "blocked"
    clock.advance(minutes=2)
    promotions.reevaluate_waiting(sf)

    applied = client.get(f"/api/v1/promotions/{waiting['id']}").get_json()
    assert applied["status"] == "applied"
    assert remote_head(gitops_remote) == applied["revision"]
