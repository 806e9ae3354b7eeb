"""Tokens and the audit log."""

from __future__ import annotations

from pathlib import Path

from tests.builders import commit_message


def test_tokens_create_use_list_revoke(client, anonymous, gitops_remote: Path):
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": "ci",
            "owner": "alice",
            "roles": ["editor"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    secret = body["token"]
    auth = {"Authorization": f"Bearer {secret}"}

    toggled = anonymous.patch(
        "/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False}, headers=auth
    )
    assert toggled.status_code == 200
    assert "Stageflow-Actor: alice" in commit_message(gitops_remote, toggled.get_json()["revision"])
    entries = client.get("/api/v1/audit?actor=alice").get_json()["items"]
    assert [e["action"] for e in entries] == ["flag.update"]
    assert entries[0]["revision"] == toggled.get_json()["revision"]

    listed = client.get("/api/v1/tokens").get_json()
    assert any(t["id"] == body["id"] and "token" not in t for t in listed)

    # an editor is not an admin, and the scope keeps it out of other stages
    assert anonymous.get("/api/v1/tokens", headers=auth).status_code == 403
    out_of_scope = anonymous.patch(
        "/api/v1/apps/demo/stages/staging/flags/new_ui", json={"enabled": False}, headers=auth
    )
    assert out_of_scope.status_code == 403
    assert out_of_scope.get_json()["error"]["code"] == "out_of_scope"

    assert client.delete(f"/api/v1/tokens/{body['id']}").status_code == 200
    revoked = anonymous.get("/api/v1/pipeline", headers=auth)
    assert revoked.status_code == 401
    assert revoked.get_json()["error"]["code"] == "token_inactive"


def test_token_validation(client):
    bad_role = client.post("/api/v1/tokens", json={"name": "x", "owner": "bob", "roles": ["god"]})
    assert bad_role.status_code == 422
    bad_owner = client.post(
        "/api/v1/tokens", json={"name": "x", "owner": "bob smith", "roles": ["viewer"]}
    )
    assert bad_owner.status_code == 422
    assert "owner" in bad_owner.get_json()["error"]["message"]
    assert client.delete("/api/v1/tokens/does-not-exist").status_code == 404


def test_audit_pages_newest_first(client):
    for enabled in (False, True, False):
        client.patch("/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": enabled})
    first = client.get("/api/v1/audit?app=demo&limit=2").get_json()
    assert len(first["items"]) == 2 and first["next"] is not None
    rest = client.get(f"/api/v1/audit?app=demo&limit=2&before={first['next']}").get_json()
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    assert client.get("/api/v1/audit?limit=0").status_code == 422
