"""Every operation of /openapi.json, for every role, in scope and out: the decision is right.

Generated from the app's own OpenAPI document: the operations, the role each needs
(``x-stageflow-role``) and the bodies come from it, and what a request touches comes from its path
parameters (``{app}``, ``{stage}``, a promotion's app and target). So an endpoint added later is
checked without anyone editing this file, and one that forgets its scope fails here. The few
operations that touch more than their URL says (a new flag enters the first stage, a freeze touches
every app, a token's scope) are listed in ``TOUCHES``; that list is the documented rule, not an
exemption.

Allowed means: neither 401 nor a 403 of the authorization (``missing_role`` / ``out_of_scope``),
and never a 5xx; the answer may be a 4xx of the state (a 404, a 409, a 422 for a made-up body).
Refused means: 403 ``missing_role`` or ``out_of_scope``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from stageflow.domain.identity import ROLES
from tests.builders import add_app, bearer, make_token, remote_head

EVERY = "*"
READERS = set(ROLES) - {"client"}
SCOPES: dict[str, dict[str, list[str]]] = {
    "unscoped": {},
    "demo/production": {"apps": ["demo"], "stages": ["production"]},
    "demo/development": {"apps": ["demo"], "stages": ["development"]},
    "shop": {"apps": ["shop"]},
}
METHODS = ("get", "post", "put", "patch", "delete")
AUTHZ_CODES = {"missing_role", "out_of_scope", "no_access_rule"}

# What an operation's example request touches beyond what its path parameters say (the default:
# {app} and {stage} of the path; a promotion's app and target stage, here demo/production).
TOUCHES: dict[tuple[str, str], list[tuple[str | None, str | None]]] = {
    # a new flag enters the first stage
    ("POST", "/api/v1/apps/{app}/flags"): [("demo", "development")],
    # a definition edit touches every stage that has the flag (new_ui is in all three)
    ("PATCH", "/api/v1/apps/{app}/flags/{key}"): [
        ("demo", "development"),
        ("demo", "staging"),
        ("demo", "production"),
    ],
    # the example body promotes into production
    ("POST", "/api/v1/apps/{app}/promotions"): [("demo", "production")],
    # a freeze stops every app's promotions into the stage
    ("POST", "/api/v1/stages/{stage}/freeze"): [(EVERY, "production")],
    ("DELETE", "/api/v1/stages/{stage}/freeze"): [(EVERY, "production")],
    # a rejected image version blocks promotions of the app into every stage
    ("DELETE", "/api/v1/apps/{app}/rejections/{rejection_id}"): [("demo", EVERY)],
    # the example token is scoped to demo/production
    ("POST", "/api/v1/tokens"): [("demo", "production")],
    # the example token was made by another admin: only an admin without a scope manages it
    ("DELETE", "/api/v1/tokens/{token_id}"): [(EVERY, EVERY)],
    # the webhooks' payloads name the Kustomization / Application demo-production
    ("POST", "/api/v1/webhooks/flux"): [("demo", "production")],
    ("POST", "/api/v1/webhooks/argocd"): [("demo", "production")],
    # the evidence chain links every app's records: only a token without a scope reads it
    ("GET", "/api/v1/evidence"): [(EVERY, EVERY)],
    # DORA figures of the last stage unless the query names one
    ("GET", "/api/v1/apps/{app}/metrics/dora"): [("demo", "production")],
    # the selection headers name demo/production
    ("POST", "/ofrep/v1/evaluate/flags/{key}"): [("demo", "production")],
    ("POST", "/ofrep/v1/evaluate/flags"): [("demo", "production")],
}


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    # The decision does not depend on the database; one is enough for a thousand requests.
    yield f"sqlite:///{tmp_path / 'stageflow.db'}"


@pytest.fixture
def world(client: FlaskClient, gitops_remote: Path) -> dict[str, Any]:
    """A second app, a production promotion by someone else, a token to manage, tokens per cell."""
    add_app(gitops_remote, "shop")
    bot = make_token(client, "release-bot", ["promoter"])
    promoted = client.post(
        "/api/v1/apps/demo/promotions", json={"to": "production"}, headers=bearer(bot)
    )
    assert promoted.status_code == 201, promoted.get_json()
    managed = client.post(
        "/api/v1/tokens",
        json={
            "name": "managed",
            "owner": "someone",
            "roles": ["viewer"],
            "scope": SCOPES["demo/production"],
        },
    )
    cells = {
        (role, scope): make_token(client, f"m-{role}-{scope.replace('/', '-')}", [role], **spec)
        for role in ROLES
        for scope, spec in SCOPES.items()
    }
    return {
        "promotion_id": promoted.get_json()["id"],
        "token_id": managed.get_json()["id"],
        "head": remote_head(gitops_remote),
        "cells": cells,
    }


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith(("/api/", "/ofrep/"))
    ]


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value of ``schema`` made from its required fields (enough to pass or fail validation)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    if "enum" in schema:
        return schema["enum"][0]
    if "example" in schema:
        return schema["example"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example(props[k], components) for k in schema.get("required", []) if k in props}
    if kind == "array":
        return []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if schema.get("format") == "date-time":
        return datetime.now(UTC).isoformat()
    return "x"


def request_for(
    method: str, path: str, operation: dict[str, Any], world: dict[str, Any], doc: dict[str, Any]
) -> tuple[str, Any]:
    values = {
        "app": "demo",
        "stage": "production",
        "key": "new_ui",
        "promotion_id": world["promotion_id"],
        "token_id": world["token_id"],
        "rejection_id": 1,
    }
    url = path
    for name, value in values.items():
        url = url.replace("{" + name + "}", str(value))
    assert "{" not in url, f"{method} {path}: add a value for its path parameter to this test"
    head = world["head"]
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/v1/apps/{app}/promotions"): {"to": "production"},
        ("POST", "/api/v1/tokens"): {
            "name": "made",
            "owner": "made-in-matrix",
            "roles": ["viewer"],
            "scope": SCOPES["demo/production"],
        },
        ("POST", "/api/v1/webhooks/argocd"): {
            "app": "demo-production",
            "revision": head,
            "sync_status": "Synced",
            "health_status": "Healthy",
        },
        ("POST", "/api/v1/webhooks/flux"): {
            "involvedObject": {"kind": "Kustomization", "name": "demo-production"},
            "reason": "ReconciliationSucceeded",
            "metadata": {"revision": f"main@sha1:{head}"},
            "message": "Reconciliation finished",
            "severity": "info",
        },
    }
    if (method, path) in bodies:
        return url, bodies[(method, path)]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return url, None
    return url, example(content["schema"], doc["components"]["schemas"])


def touched(method: str, path: str) -> list[tuple[str | None, str | None]]:
    if (method, path) in TOUCHES:
        return TOUCHES[(method, path)]
    if "{promotion_id}" in path:
        return [("demo", "production")]
    app = "demo" if "{app}" in path else None
    stage = "production" if "{stage}" in path else None
    return [(app, stage)]


def covers(scope: dict[str, list[str]], app: str | None, stage: str | None) -> bool:
    def inside(name: str | None, allowed: list[str]) -> bool:
        return name is None or not allowed or (name != EVERY and name in allowed)

    return inside(app, scope.get("apps", [])) and inside(stage, scope.get("stages", []))


def role_allows(held: str, needed: str) -> bool:
    return held in ("admin", needed) or (needed == "viewer" and held in READERS)


def test_every_operation_for_every_role_in_scope_and_out(client, anonymous, world):
    doc = client.get("/openapi.json").get_json()
    ops = operations(doc)
    assert len(ops) >= 30  # the document lists the API, not a fraction of it
    wrong: list[str] = []
    checked = 0
    for method, path, operation in ops:
        needed = operation.get("x-stageflow-role")
        assert needed in ROLES, f"{method} {path} documents no x-stageflow-role"
        if method != "GET" and not path.startswith("/ofrep/"):
            assert needed not in ("viewer", "client"), f"{method} {path} writes as a reader"
        url, body = request_for(method, path, operation, world, doc)
        targets = touched(method, path)
        for (role, scope_name), secret in world["cells"].items():
            scope = SCOPES[scope_name]
            allowed = role_allows(role, needed) and all(covers(scope, a, s) for a, s in targets)
            headers = {
                **bearer(secret),
                "X-Stageflow-App": "demo",
                "X-Stageflow-Stage": "production",
            }
            answer = anonymous.open(url, method=method, json=body, headers=headers)
            checked += 1
            payload = answer.get_json(silent=True)
            error = payload.get("error") if isinstance(payload, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if path.startswith("/ofrep/") and answer.status_code == 403:
                code = "out_of_scope" if role_allows(role, needed) else "missing_role"
            what = f"{method} {path} as {role} scoped {scope_name}: {answer.status_code} {code}"
            if answer.status_code >= 500:
                wrong.append(f"{what} (a 5xx)")
            elif allowed and (answer.status_code == 401 or code in AUTHZ_CODES):
                wrong.append(f"{what}, but it is allowed")
            elif not allowed and not (answer.status_code == 403 and code in AUTHZ_CODES):
                wrong.append(f"{what}, but it must be refused with 403")
    assert not wrong, f"{len(wrong)} of {checked} decisions are wrong:\n" + "\n".join(wrong)


def test_lists_show_only_what_the_scope_covers(client, anonymous, world, gitops_remote):
    # something of the other app in each list: a promotion, audit entries
    shop = client.post("/api/v1/apps/shop/promotions", json={"to": "production"})
    assert shop.status_code == 201, shop.get_json()
    cells = world["cells"]

    def get(path: str, who: tuple[str, str]) -> Any:
        answer = anonymous.get(path, headers=bearer(cells[who]))
        assert answer.status_code == 200, (path, who, answer.get_json())
        return answer.get_json()

    shop_viewer = ("viewer", "shop")
    assert [a["name"] for a in get("/api/v1/apps", shop_viewer)] == ["shop"]
    assert [a["name"] for a in get("/api/v1/pipeline", shop_viewer)["apps"]] == ["shop"]
    assert {p["app"] for p in get("/api/v1/promotions", shop_viewer)["items"]} == {"shop"}
    assert {e["app"] for e in get("/api/v1/audit", shop_viewer)["items"]} <= {"shop"}

    dev_viewer = ("viewer", "demo/development")
    assert get("/api/v1/promotions", dev_viewer)["items"] == []  # both go into production
    state = get("/api/v1/apps/demo", dev_viewer)
    assert [s["stage"] for s in state["stages"]] == ["development"]
    matrix = get("/api/v1/apps/demo/flags", dev_viewer)
    assert matrix and all(list(row["stages"]) == ["development"] for row in matrix.values())
    audit = get("/api/v1/audit", dev_viewer)["items"]
    assert all(e["app"] == "demo" and e["stage"] == "development" for e in audit)

    everything = get("/api/v1/promotions", ("viewer", "unscoped"))["items"]
    assert {p["app"] for p in everything} == {"demo", "shop"}
    prod_viewer = ("viewer", "demo/production")
    assert [p["app"] for p in get("/api/v1/promotions", prod_viewer)["items"]] == ["demo"]

    # tokens: a scoped admin lists only what it made (here: nothing but itself)
    scoped_admin = ("admin", "demo/production")
    listed = get("/api/v1/tokens", scoped_admin)
    assert [t["owner"] for t in listed] == ["m-admin-demo-production"]
    assert len(get("/api/v1/tokens", ("admin", "unscoped"))) > 20


def test_a_scoped_admin_manages_the_tokens_it_made_within_its_scope(anonymous, world):
    admin = bearer(world["cells"][("admin", "demo/production")])
    made = anonymous.post(
        "/api/v1/tokens",
        json={
            "name": "ci",
            "owner": "ci",
            "roles": ["reporter"],
            "scope": {"apps": ["demo"], "stages": ["production"]},
        },
        headers=admin,
    )
    assert made.status_code == 201, made.get_json()
    wider = anonymous.post(
        "/api/v1/tokens",
        json={"name": "root", "owner": "root", "roles": ["admin"]},
        headers=admin,
    )
    assert wider.status_code == 403 and wider.get_json()["error"]["code"] == "out_of_scope"
    listed = anonymous.get("/api/v1/tokens", headers=admin).get_json()
    assert {t["name"] for t in listed} == {"ci", "m-admin-demo-production"}
    assert anonymous.delete(f"/api/v1/tokens/{made.get_json()['id']}", headers=admin).status_code
    revoked = anonymous.delete(f"/api/v1/tokens/{world['token_id']}", headers=admin)
    assert revoked.status_code == 403 and revoked.get_json()["error"]["code"] == "out_of_scope"


def test_the_openapi_document_names_each_operations_role(client):
    doc = client.get("/openapi.json").get_json()
    roles = {(m, p): op.get("x-stageflow-role") for m, p, op in operations(doc)}
    assert None not in roles.values()
    # the contract's roles for a few operations (API.md): a change of these is a change of contract
    assert roles[("POST", "/api/v1/tokens")] == "admin"
    assert roles[("POST", "/api/v1/promotions/{promotion_id}/approvals")] == "approver"
    assert roles[("POST", "/api/v1/webhooks/argocd")] == "reporter"
    assert roles[("POST", "/ofrep/v1/evaluate/flags")] == "client"
