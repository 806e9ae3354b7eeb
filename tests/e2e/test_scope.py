"""A token acts only within its roles and scope: the holes found in review, each closed.

Each test here failed before the one authorization rule (api/access.py) existed. The generated
matrix (test_access_matrix.py) covers every operation; these say what each hole let someone do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stageflow import bootstrap
from stageflow.api import create_app
from stageflow.services import tokens as token_service
from tests.builders import add_app, bearer, make_token, remote_head

SECRET = "flux-hmac-secret"


@pytest.fixture
def settings(settings):
    return settings.with_overrides(flux_webhook_secret=SECRET, flux_webhook_stages=("development",))


def refused(answer: Any, code: str = "out_of_scope") -> bool:
    return answer.status_code == 403 and answer.get_json()["error"]["code"] == code


@pytest.fixture
def production_promotion(client: FlaskClient) -> dict[str, Any]:
    """A production promotion (staging runs 1.4.0, production 1.3.2), requested by a bot."""
    bot = make_token(client, "release-bot", ["promoter"])
    made = client.post(
        "/api/v1/apps/demo/promotions", json={"to": "production"}, headers=bearer(bot)
    )
    assert made.status_code == 201, made.get_json()
    return dict(made.get_json())


def test_a_development_reporter_cannot_report_production_through_a_webhook(
    client, anonymous, gitops_remote: Path
):
    head = remote_head(gitops_remote)
    reporter = make_token(client, "dev-ci", ["reporter"], stages=["development"])
    degraded = {
        "app": "demo-production",
        "revision": head,
        "sync_status": "Synced",
        "health_status": "Degraded",
    }

    answer = anonymous.post("/api/v1/webhooks/argocd", json=degraded, headers=bearer(reporter))

    assert refused(answer)
    assert client.get("/api/v1/apps/demo/stages/production/deployments").get_json() == []
    assert remote_head(gitops_remote) == head  # nothing rolled back
    # the same token may report what it is scoped to
    development = {**degraded, "app": "demo-development", "health_status": "Healthy"}
    ok = anonymous.post("/api/v1/webhooks/argocd", json=development, headers=bearer(reporter))
    assert ok.status_code == 202 and ok.get_json()["recorded"] is True


def test_the_flux_hmac_secret_reports_only_its_configured_stages(client, anonymous, gitops_remote):
    head = remote_head(gitops_remote)

    def event(name: str) -> bytes:
        return json.dumps(
            {
                "involvedObject": {"kind": "Kustomization", "name": name},
                "reason": "HealthCheckFailed",
                "metadata": {"revision": f"main@sha1:{head}"},
            }
        ).encode()

    def signed(body: bytes) -> dict[str, str]:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}

    production = event("demo-production")
    answer = anonymous.post("/api/v1/webhooks/flux", data=production, headers=signed(production))
    assert refused(answer)
    assert client.get("/api/v1/apps/demo/stages/production/deployments").get_json() == []

    development = event("demo-development")
    ok = anonymous.post("/api/v1/webhooks/flux", data=development, headers=signed(development))
    assert ok.status_code == 202 and ok.get_json()["recorded"] is True


def test_an_approver_of_another_app_cannot_approve(client, anonymous, production_promotion):
    pid = production_promotion["id"]
    other = make_token(client, "shop-lead", ["approver"], apps=["shop"])
    staging_only = make_token(client, "qa-lead", ["approver"], apps=["demo"], stages=["staging"])

    for secret in (other, staging_only):
        answer = anonymous.post(
            f"/api/v1/promotions/{pid}/approvals", json={}, headers=bearer(secret)
        )
        assert refused(answer)
    assert client.get(f"/api/v1/promotions/{pid}").get_json()["approvals"] == []
    # an approver scoped to the promotion's target is heard (the gates still block it)
    own = make_token(client, "prod-lead", ["approver"], apps=["demo"], stages=["production"])
    heard = anonymous.post(f"/api/v1/promotions/{pid}/approvals", json={}, headers=bearer(own))
    assert heard.status_code != 403, heard.get_json()


def test_a_promoter_of_another_app_cannot_cancel_or_roll_back(
    client, anonymous, production_promotion
):
    pid = production_promotion["id"]
    other = make_token(client, "shop-bot", ["promoter"], apps=["shop"])

    for action in ("cancel", "evaluate", "rollback"):
        body = {} if action == "rollback" else None
        answer = anonymous.post(
            f"/api/v1/promotions/{pid}/{action}", json=body, headers=bearer(other)
        )
        assert refused(answer), action
    assert (
        client.get(f"/api/v1/promotions/{pid}").get_json()["status"]
        == production_promotion["status"]
    )


def test_a_scoped_admin_cannot_mint_an_unscoped_admin_or_revoke_other_admins(client, anonymous):
    scoped = make_token(client, "dev-admin", ["admin"], apps=["demo"], stages=["development"])
    listed = client.get("/api/v1/tokens").get_json()
    root = next(t for t in listed if t["name"] == "bootstrap admin")

    minted = anonymous.post(
        "/api/v1/tokens",
        json={"name": "root", "owner": "mallory", "roles": ["admin"]},
        headers=bearer(scoped),
    )
    assert refused(minted)
    revoked = anonymous.delete(f"/api/v1/tokens/{root['id']}", headers=bearer(scoped))
    assert refused(revoked)
    assert (
        anonymous.get("/api/v1/pipeline", headers=bearer("test-admin-token-0123456789")).status_code
        == 200
    )
    # within its scope it may make tokens, and it sees only those and itself
    inside = anonymous.post(
        "/api/v1/tokens",
        json={
            "name": "dev-ci",
            "owner": "dev-ci",
            "roles": ["editor"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
        headers=bearer(scoped),
    )
    assert inside.status_code == 201, inside.get_json()
    seen = {t["name"] for t in anonymous.get("/api/v1/tokens", headers=bearer(scoped)).get_json()}
    assert seen == {"dev-admin", "dev-ci"}


def test_a_development_editor_cannot_edit_a_flag_defined_in_every_stage(
    client, anonymous, gitops_remote
):
    head = remote_head(gitops_remote)
    editor = make_token(client, "dev-editor", ["editor"], apps=["demo"], stages=["development"])

    answer = anonymous.patch(
        "/api/v1/apps/demo/flags/new_ui", json={"description": "mine now"}, headers=bearer(editor)
    )

    assert refused(answer)
    assert answer.get_json()["error"]["details"]["stage"] in ("staging", "production")
    assert remote_head(gitops_remote) == head
    # a flag only development has is its to describe
    client.post("/api/v1/apps/demo/flags", json={"key": "dev_only", "lifecycle": "experimental"})
    ok = anonymous.patch(
        "/api/v1/apps/demo/flags/dev_only", json={"description": "ok"}, headers=bearer(editor)
    )
    assert ok.status_code == 200, ok.get_json()


def test_reads_of_another_apps_promotions_and_audit_are_refused_or_filtered(
    client, anonymous, gitops_remote, production_promotion
):
    add_app(gitops_remote, "shop")
    reader = make_token(client, "shop-viewer", ["viewer"], apps=["shop"])
    pid = production_promotion["id"]

    assert refused(anonymous.get(f"/api/v1/promotions/{pid}", headers=bearer(reader)))
    assert refused(anonymous.get("/api/v1/apps/demo", headers=bearer(reader)))
    assert refused(anonymous.get("/api/v1/apps/demo/flags", headers=bearer(reader)))
    listed = anonymous.get("/api/v1/promotions", headers=bearer(reader)).get_json()["items"]
    assert listed == []  # the diff of demo's promotion is in none of them
    audit = anonymous.get("/api/v1/audit?app=demo", headers=bearer(reader)).get_json()["items"]
    assert audit == []


def test_every_role_that_acts_on_something_can_read_it(client, anonymous, production_promotion):
    pid = production_promotion["id"]
    for role in ("reporter", "editor", "promoter", "approver"):
        secret = make_token(client, f"{role}-1", [role], apps=["demo"], stages=["production"])
        assert anonymous.get(f"/api/v1/promotions/{pid}", headers=bearer(secret)).status_code == 200
        assert (
            anonymous.get("/api/v1/apps/demo/flags", headers=bearer(secret)).status_code == 200
        ), role
    client_only = make_token(client, "app", ["client"], apps=["demo"], stages=["production"])
    answer = anonymous.get(f"/api/v1/promotions/{pid}", headers=bearer(client_only))
    assert refused(answer, "missing_role")


def test_refused_writes_are_audited(client, anonymous):
    viewer = make_token(client, "curious", ["viewer"])
    answer = anonymous.patch(
        "/api/v1/apps/demo/stages/production/flags/new_ui",
        json={"enabled": False},
        headers=bearer(viewer),
    )
    assert refused(answer, "missing_role")

    entries = client.get("/api/v1/audit?actor=curious").get_json()["items"]
    assert [e["action"] for e in entries] == ["refused"]
    assert entries[0]["app"] == "demo" and entries[0]["stage"] == "production"
    assert entries[0]["target"] == "PATCH /api/v1/apps/<app>/stages/<stage>/flags/<key>"
    assert entries[0]["after"] == {"reason": "missing_role"}


def test_an_unmarked_endpoint_is_refused_to_everyone(app: Flask, client):
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: {"leak": True})

    answer = client.get("/api/v1/forgotten")

    assert refused(answer, "no_access_rule")


def test_failed_authentications_are_rate_limited_per_address(
    settings, stageflow, anonymous, client
):
    sf, _ = stageflow
    limit = settings.auth_failures_per_minute
    good = make_token(client, "good", ["viewer"])
    assert (
        anonymous.get("/api/v1/pipeline", headers=bearer(good)).status_code == 200
    )  # proven before the storm
    for attempt in range(limit):
        wrong = anonymous.get("/api/v1/pipeline", headers=bearer(f"sf_guess{attempt}"))
        assert wrong.status_code == 401, attempt

    limited = anonymous.get("/api/v1/pipeline", headers=bearer("sf_guess-again"))

    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.get_json()["error"]["code"] == "too_many_requests"
    # another address is not affected, and a token this process has seen succeed keeps working
    other = anonymous.get(
        "/api/v1/pipeline", headers=bearer("sf_x"), environ_base={"REMOTE_ADDR": "127.0.0.2"}
    )
    assert other.status_code == 401
    assert anonymous.get("/api/v1/pipeline", headers=bearer(good)).status_code == 200
    # ... but one it has not seen waits like any guess
    sf.token_cache.clear()
    assert anonymous.get("/api/v1/pipeline", headers=bearer(good)).status_code == 429


def test_tokens_record_when_they_were_last_used_and_expire(stageflow, client, anonymous):
    sf, _ = stageflow
    expiring = (sf.clock() + timedelta(hours=1)).isoformat()
    created = client.post(
        "/api/v1/tokens",
        json={"name": "temp", "owner": "temp", "roles": ["viewer"], "expires_at": expiring},
    ).get_json()
    assert created["last_used_at"] is None

    assert anonymous.get("/api/v1/pipeline", headers=bearer(created["token"])).status_code == 200

    listed = {t["id"]: t for t in client.get("/api/v1/tokens").get_json()}
    assert listed[created["id"]]["last_used_at"] is not None
    now = sf.clock()
    sf.clock = lambda: now + timedelta(hours=2)
    sf.token_cache.clear()
    expired = anonymous.get("/api/v1/pipeline", headers=bearer(created["token"]))
    assert expired.status_code == 401
    assert expired.get_json()["error"]["code"] == "token_inactive"


def test_a_revoked_token_stops_in_every_worker_within_a_second(settings, client, anonymous):
    # a second worker: its own Stageflow and app over the same database and remote
    other_sf, readiness = bootstrap.build(settings)
    try:
        other = create_app(settings, other_sf, readiness).test_client()
        made = client.post(
            "/api/v1/tokens", json={"name": "w", "owner": "w", "roles": ["viewer"]}
        ).get_json()
        assert (
            other.get("/api/v1/pipeline", headers=bearer(made["token"])).status_code == 200
        )  # cached there

        assert client.delete(f"/api/v1/tokens/{made['id']}").status_code == 200
        revoked_at = time.monotonic()

        assert token_service.CACHE_TTL <= 1.0
        while other.get("/api/v1/pipeline", headers=bearer(made["token"])).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revoking"
            time.sleep(0.05)
    finally:
        other_sf.close()
