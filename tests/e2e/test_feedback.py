"""Cluster feedback (Flux, Argo CD) and rollback, with the payloads those tools really send."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stageflow import bootstrap
from stageflow.api import create_app
from tests.builders import commit_message, remote_head, remote_log, render_remote

DATA = Path(__file__).parent / "data"
SECRET = "flux-hmac-secret"
PROD = "apps/demo/overlays/production"


@pytest.fixture
def settings(settings):
    return settings.with_overrides(flux_webhook_secret=SECRET)


def token(client, owner: str, roles: list[str]) -> dict[str, str]:
    created = client.post("/api/v1/tokens", json={"name": owner, "owner": owner, "roles": roles})
    return {"Authorization": f"Bearer {created.get_json()['token']}"}


def flux_event(name: str, revision: str, reason: str = "ReconciliationSucceeded") -> bytes:
    event = json.loads((DATA / "flux-generic-event-succeeded.json").read_text())
    event["involvedObject"]["name"] = name
    event["metadata"]["revision"] = revision
    event["reason"] = reason
    return json.dumps(event).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def deployments(client, stage: str) -> list[dict]:
    return client.get(f"/api/v1/apps/demo/stages/{stage}/deployments").get_json()


def test_flux_generic_provider_with_a_reporter_token(client, anonymous, gitops_remote: Path):
    head = remote_head(gitops_remote)
    reporter = token(client, "flux-bot", ["reporter"])

    answer = anonymous.post(
        "/api/v1/webhooks/flux",
        data=flux_event("demo-staging", f"main@sha1:{head}"),
        headers={**reporter, "Content-Type": "application/json"},
    )

    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["recorded"] is True
    assert deployments(client, "staging")[0]["revision"] == head
    assert deployments(client, "staging")[0]["source"] == "flux"


@pytest.mark.parametrize(
    "revision", ["main@sha1:{sha}", "main/{sha}", "{sha}", "refs/heads/main@sha1:{sha}"]
)
def test_flux_generic_hmac_provider_and_every_revision_format(
    client, anonymous, gitops_remote: Path, revision
):
    head = remote_head(gitops_remote)
    body = flux_event("demo-development", revision.format(sha=head))

    answer = anonymous.post("/api/v1/webhooks/flux", data=body, headers=signed(body))

    assert answer.status_code == 202, answer.get_json()
    assert deployments(client, "development")[0]["revision"] == head


def test_flux_controller_shape_with_group_prefixed_metadata(client, anonymous, gitops_remote):
    head = remote_head(gitops_remote)
    event = json.loads((DATA / "flux-event-from-controller-docs.json").read_text())
    event["involvedObject"]["name"] = "demo-production"
    event["metadata"] = {"kustomize.toolkit.fluxcd.io/revision": f"main/{head}"}
    body = json.dumps(event).encode()

    answer = anonymous.post("/api/v1/webhooks/flux", data=body, headers=signed(body))

    assert answer.status_code == 202
    recorded = deployments(client, "production")[0]
    assert recorded["health"] == "degraded"  # ValidationFailed


def test_a_flux_deployment_is_timed_by_the_events_timestamp(
    client, anonymous, gitops_remote: Path, stageflow
):
    sf, _ = stageflow
    head = remote_head(gitops_remote)
    event = json.loads(flux_event("demo-staging", f"main@sha1:{head}"))
    sent = (sf.clock() - timedelta(minutes=7)).replace(microsecond=0)
    event["timestamp"] = sent.strftime("%Y-%m-%dT%H:%M:%SZ")  # as kustomize-controller writes it
    late = json.dumps(event).encode()
    event["timestamp"] = (sf.clock() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ahead = json.dumps(event).encode()

    anonymous.post("/api/v1/webhooks/flux", data=late, headers=signed(late))
    first = deployments(client, "staging")[0]["at"]
    anonymous.post("/api/v1/webhooks/flux", data=ahead, headers=signed(ahead))
    second = deployments(client, "staging")[0]["at"]

    # delivered now, seven minutes after the controller saw it: the stage changed then
    assert datetime.fromisoformat(first) == sent
    # a clock ahead of ours counts as now, so soak time never starts in the future
    assert datetime.fromisoformat(second) <= sf.clock()


def test_bad_signature_is_401_and_records_nothing(client, anonymous, gitops_remote: Path):
    body = flux_event("demo-staging", remote_head(gitops_remote))

    wrong = anonymous.post("/api/v1/webhooks/flux", data=body, headers=signed(body, "nope"))
    unsigned = anonymous.post(
        "/api/v1/webhooks/flux", data=body, headers={"Content-Type": "application/json"}
    )

    assert wrong.status_code == 401
    assert wrong.get_json()["error"]["code"] == "bad_signature"
    assert unsigned.status_code == 401
    assert deployments(client, "staging") == []


def test_events_it_does_not_use_are_accepted_and_ignored(client, anonymous, gitops_remote):
    head = remote_head(gitops_remote)
    for body in (
        flux_event("demo-staging", head, reason="ArtifactUpToDate"),
        flux_event("someone-else", head),
        flux_event("demo-staging", "main@sha1:" + "0" * 40),
        json.dumps(
            {"involvedObject": {"kind": "HelmRelease", "name": "x"}, "reason": "y"}
        ).encode(),
    ):
        answer = anonymous.post("/api/v1/webhooks/flux", data=body, headers=signed(body))
        assert answer.status_code == 202, answer.get_json()
        assert answer.get_json()["recorded"] is False
        assert answer.get_json()["reason"]
    for body in (b"not json", b"[]", b"{}"):
        answer = anonymous.post("/api/v1/webhooks/flux", data=body, headers=signed(body))
        assert 400 <= answer.status_code < 500
    assert deployments(client, "staging") == []


def test_argocd_notification_template_body(client, anonymous, gitops_remote: Path):
    head = remote_head(gitops_remote)
    reporter = token(client, "argocd", ["reporter"])
    body = {
        "app": "demo-staging",
        "revision": head,
        "sync_status": "Synced",
        "health_status": "Healthy",
        "operation_phase": "Succeeded",
    }

    answer = anonymous.post("/api/v1/webhooks/argocd", json=body, headers=reporter)
    degraded = anonymous.post(
        "/api/v1/webhooks/argocd",
        json={**body, "health_status": "Degraded", "operation_phase": "Succeeded"},
        headers=reporter,
    )
    no_token = anonymous.post("/api/v1/webhooks/argocd", json=body)

    assert answer.status_code == 202 and answer.get_json()["recorded"] is True
    assert degraded.get_json()["health"] == "degraded"
    assert no_token.status_code == 401
    assert [d["health"] for d in deployments(client, "staging")] == ["degraded", "healthy"]


# -- rollback --------------------------------------------------------------------------------


def walk_to_production(client, anonymous, stageflow) -> dict:
    """The seed's flow, quickly: development -> staging -> production, all gates passed."""
    sf, _ = stageflow
    now = sf.clock()
    sf.clock = lambda: now
    dev = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
    ).get_json()["revision"]
    _report(client, "development", dev, "smoke")
    staging = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert staging["status"] == "applied", staging["message"]
    _report(client, "staging", staging["revision"], "smoke", "load")
    now += timedelta(minutes=5)
    promotion = client.post("/api/v1/apps/demo/promotions", json={"to": "production"}).get_json()
    approver = token(client, "bob", ["approver"])
    applied = anonymous.post(
        f"/api/v1/promotions/{promotion['id']}/approvals", json={}, headers=approver
    ).get_json()
    assert applied["status"] == "applied", applied["message"]
    _report(client, "production", applied["revision"])
    return applied


def _report(client, stage: str, revision: str, *checks: str) -> None:
    client.post(
        f"/api/v1/apps/demo/stages/{stage}/deployments",
        json={"revision": revision, "health": "healthy"},
    )
    for kind in checks:
        client.post(
            f"/api/v1/apps/demo/stages/{stage}/checks",
            json={"kind": kind, "revision": revision, "status": "passed"},
        )


def test_failed_smoke_in_production_rolls_back_at_once(
    client, anonymous, gitops_remote: Path, stageflow
):
    promotion = walk_to_production(client, anonymous, stageflow)
    promoted = promotion["revision"]
    before_render = render_remote(gitops_remote, f"{promoted}^", PROD)
    # a later commit that only touches development: production's state is unchanged
    later = client.patch(
        "/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False}
    ).get_json()["revision"]

    failed = client.post(
        "/api/v1/apps/demo/stages/production/checks",
        json={"kind": "smoke", "revision": later, "status": "failed", "summary": "HTTP 500"},
    )

    assert failed.status_code == 201
    rollback = failed.get_json()["rollback"]
    assert rollback["promotion"] == promotion["id"]
    head = remote_head(gitops_remote)
    assert rollback["revision"] == head
    assert remote_log(gitops_remote, 2) == [head, later]  # unrelated later commit kept
    assert f"Stageflow-Rollback: {promotion['id']}" in commit_message(gitops_remote, head)
    assert render_remote(gitops_remote, head, PROD) == before_render
    assert "new_ui" in render_remote(gitops_remote, head, "apps/demo/overlays/development")
    body = client.get(f"/api/v1/promotions/{promotion['id']}").get_json()
    assert body["status"] == "rolled_back"
    state = client.get("/api/v1/apps/demo").get_json()["stages"][2]
    assert state["hold"]["reason"].startswith("automatic rollback")
    rejected = client.get("/api/v1/apps/demo/rejections").get_json()
    assert [(r["image"], r["tag"]) for r in rejected] == [("ghcr.io/acme/demo", "1.5.0")]

    # a second failure report does nothing more
    again = client.post(
        "/api/v1/apps/demo/stages/production/checks",
        json={"kind": "smoke", "revision": promoted, "status": "failed"},
    )
    assert again.get_json()["rollback"] is None
    assert remote_head(gitops_remote) == head

    # the rejected tag cannot be promoted again, even once the hold is released
    client.delete("/api/v1/apps/demo/stages/production/hold")
    refused = client.post("/api/v1/apps/demo/promotions", json={"to": "production"})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "image_rejected"


def test_degraded_report_in_production_rolls_back(client, anonymous, gitops_remote, stageflow):
    promotion = walk_to_production(client, anonymous, stageflow)
    reporter = token(client, "argocd", ["reporter"])

    anonymous.post(
        "/api/v1/webhooks/argocd",
        json={
            "app": "demo-production",
            "revision": promotion["revision"],
            "sync_status": "Synced",
            "health_status": "Degraded",
            "operation_phase": "Succeeded",
        },
        headers=reporter,
    )

    assert client.get(f"/api/v1/promotions/{promotion['id']}").get_json()["status"] == "rolled_back"
    production = client.get("/api/v1/apps/demo").get_json()["stages"][2]
    assert production["deployed"]["status"] == "degraded"


def test_staging_has_no_auto_rollback_but_manual_rollback_works(client, gitops_remote, stageflow):
    dev = remote_head(gitops_remote)
    _report(client, "development", dev, "smoke")
    promotion = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    failed = client.post(
        "/api/v1/apps/demo/stages/staging/checks",
        json={"kind": "smoke", "revision": promotion["revision"], "status": "failed"},
    )
    assert failed.get_json()["rollback"] is None

    manual = client.post(
        f"/api/v1/promotions/{promotion['id']}/rollback", json={"reason": "bad build"}
    )

    assert manual.status_code == 200, manual.get_json()
    assert manual.get_json()["status"] == "rolled_back"
    assert manual.get_json()["revision"] == remote_head(gitops_remote)
    assert "bad build" in commit_message(gitops_remote, remote_head(gitops_remote))
    assert client.post(f"/api/v1/promotions/{promotion['id']}/rollback", json={}).status_code == 409


def test_rollback_refuses_when_the_overlay_changed_since(client, gitops_remote, stageflow):
    dev = remote_head(gitops_remote)
    _report(client, "development", dev, "smoke")
    promotion = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    client.patch("/api/v1/apps/demo/stages/staging/flags/new_ui", json={"enabled": False})
    head = remote_head(gitops_remote)

    refused = client.post(f"/api/v1/promotions/{promotion['id']}/rollback", json={})

    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "rollback_conflict"
    assert "flags.json" in refused.get_json()["error"]["message"]
    assert remote_head(gitops_remote) == head


def test_app_view_shows_desired_and_running_revision(client, gitops_remote: Path):
    head = remote_head(gitops_remote)
    _report(client, "staging", head)
    client.patch("/api/v1/apps/demo/stages/staging/flags/new_ui", json={"enabled": False})

    staging = client.get("/api/v1/apps/demo").get_json()["stages"][1]

    assert staging["deployed"]["revision"] == head
    assert staging["deployed"]["in_sync"] is False
    assert staging["deployed"]["status"] == "behind"
    development = client.get("/api/v1/apps/demo").get_json()["stages"][0]
    assert development["deployed"] is None
    assert staging["overlay_revision"] == remote_head(gitops_remote)


def test_app_view_answers_what_its_schema_documents(client, gitops_remote: Path):
    from stageflow.api.schemas import AppStateSchema

    head = remote_head(gitops_remote)
    _report(client, "development", head, "smoke", "load")
    _report(client, "staging", head)
    client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "bad build"})

    body = client.get("/api/v1/apps/demo").get_json()

    # built as a dict and sent without a marshmallow dump: it must be the documented shape
    assert AppStateSchema().dump(body) == body
    development, staging, production = body["stages"]
    assert development["deployed"]["status"] == "in_sync"
    assert sorted(check["kind"] for check in development["checks"]) == ["load", "smoke"]
    assert development["hold"] is None and production["deployed"] is None
    assert staging["hold"] == {"reason": "bad build", "by": staging["hold"]["by"]}
    assert staging["checks"] == []
    documented = client.get("/openapi.json").get_json()["paths"]["/api/v1/apps/{app}"]["get"]
    assert "AppState" in json.dumps(documented["responses"]["200"])


def test_app_view_follows_the_ledger_written_by_another_worker(client, settings, gitops_remote):
    # Another gunicorn worker: its own caches, the same database and remote.
    other_sf, readiness = bootstrap.build(settings)
    other = create_app(settings, other_sf, readiness).test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = client.environ_base["HTTP_AUTHORIZATION"]
    head = remote_head(gitops_remote)

    def stage(name: str) -> dict:
        stages = client.get("/api/v1/apps/demo").get_json()["stages"]
        return next(s for s in stages if s["stage"] == name)

    try:
        first = client.get("/api/v1/apps/demo")
        etag = first.headers["ETag"]
        assert client.get("/api/v1/apps/demo", headers={"If-None-Match": etag}).status_code == 304

        other.post(
            "/api/v1/apps/demo/stages/development/checks",
            json={"kind": "smoke", "revision": head, "status": "passed"},
        )
        assert [c["kind"] for c in stage("development")["checks"]] == ["smoke"]
        again = client.get("/api/v1/apps/demo", headers={"If-None-Match": etag})
        assert again.status_code == 200 and again.headers["ETag"] != etag

        other.post(
            "/api/v1/apps/demo/stages/staging/deployments",
            json={"revision": head, "health": "healthy"},
        )
        assert stage("staging")["deployed"]["revision"] == head
        other.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "bad build"})
        assert stage("staging")["hold"]["reason"] == "bad build"
        other.delete("/api/v1/apps/demo/stages/staging/hold")  # a release adds no row
        assert stage("staging")["hold"] is None
        other.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "again"})
        assert stage("staging")["hold"]["reason"] == "again"
    finally:
        other_sf.close()
