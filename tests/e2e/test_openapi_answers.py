"""The OpenAPI document describes the fields of the write, pipeline, token, hold and event
answers, and the answers carry no field it leaves out (the schemas it is built from dump them)."""

from __future__ import annotations

from typing import Any

import pytest

WRITE = {"revision", "warnings"}
FLAG = {"key", "state", "variants", "defaultVariant", "targeting", "metadata"}
TOKEN = {
    "id",
    "name",
    "owner",
    "roles",
    "scope",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "active",
}
STAGE = {"name", "namespace", "flags", "gates", "approvals", "auto_rollback", "auto_promote"}
PIPELINE = {"revision", "stale_since", "problems", "repository", "stages", "apps"}

ANSWERS = {
    ("post", "/api/v1/apps/{app}/flags", "201"): WRITE | {"flag"},
    ("patch", "/api/v1/apps/{app}/flags/{key}", "200"): WRITE,
    ("patch", "/api/v1/apps/{app}/stages/{stage}/flags/{key}", "200"): WRITE | {"flag"},
    ("delete", "/api/v1/apps/{app}/stages/{stage}/flags/{key}", "200"): WRITE,
    ("put", "/api/v1/apps/{app}/stages/{stage}/images", "200"): WRITE | {"image"},
    ("get", "/api/v1/pipeline", "200"): PIPELINE,
    ("post", "/api/v1/tokens", "201"): TOKEN | {"token"},
    ("get", "/api/v1/tokens", "200"): TOKEN,
    ("delete", "/api/v1/tokens/{token_id}", "200"): TOKEN,
    ("post", "/api/v1/apps/{app}/stages/{stage}/hold", "201"): {"app", "stage", "reason", "by"},
    ("delete", "/api/v1/apps/{app}/stages/{stage}/hold", "200"): {"app", "stage", "released"},
    ("post", "/api/v1/stages/{stage}/freeze", "201"): {"stage", "reason", "by", "until"},
    ("delete", "/api/v1/stages/{stage}/freeze", "200"): {"stage", "frozen"},
    ("get", "/api/v1/freezes", "200"): {"stage", "reason", "by", "until", "at"},
    ("get", "/api/v1/apps/{app}/rejections", "200"): {
        "id",
        "app",
        "image",
        "tag",
        "digest",
        "reason",
        "by",
        "at",
        "promotion",
    },
    ("delete", "/api/v1/apps/{app}/rejections/{rejection_id}", "200"): {"released"},
}


@pytest.fixture
def spec(anonymous) -> dict[str, Any]:
    return anonymous.get("/openapi.json").get_json()


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a ``$ref`` names, and a list's items for a list."""
    if "$ref" in schema:
        return resolve(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
    if schema.get("type") == "array" and "items" in schema:
        return resolve(spec, schema["items"])
    return schema


def answer(spec: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    content = spec["paths"][path][method]["responses"][status]["content"]
    return resolve(spec, content["application/json"]["schema"])


def fields(spec: dict[str, Any], schema: dict[str, Any], *at: str) -> set[str]:
    for name in at:
        schema = resolve(spec, schema["properties"][name])
    return set(schema["properties"])


@pytest.mark.parametrize(("method", "path", "status"), list(ANSWERS))
def test_the_document_names_each_answers_fields(spec, method, path, status):
    assert fields(spec, answer(spec, method, path, status)) == ANSWERS[method, path, status]


def test_the_document_describes_what_the_answers_nest(spec):
    created = answer(spec, "post", "/api/v1/apps/{app}/flags", "201")
    assert fields(spec, created, "flag") == FLAG
    assert fields(spec, created, "warnings") >= {"policy", "object", "message", "allowed"}
    image = answer(spec, "put", "/api/v1/apps/{app}/stages/{stage}/images", "200")
    assert fields(spec, image, "image") == {"name", "tag", "digest"}
    token = answer(spec, "get", "/api/v1/tokens", "200")
    assert fields(spec, token, "scope") == {"apps", "stages"}
    assert token["properties"]["roles"]["items"]["enum"]
    pipeline = answer(spec, "get", "/api/v1/pipeline", "200")
    assert fields(spec, pipeline, "repository") == {"url", "branch"}
    assert fields(spec, pipeline, "apps") == {"name", "path", "stages"}
    assert fields(spec, pipeline, "stages") == STAGE
    assert fields(spec, pipeline, "stages", "gates") == {"checks", "metrics", "soak"}
    assert fields(spec, pipeline, "stages", "flags") == {"allow"}
    assert fields(spec, pipeline, "problems") >= {"file", "revision", "problem", "serving_revision"}
    events = answer(spec, "get", "/api/v1/events", "200")
    assert fields(spec, events, "items") == {
        *("id", "kind", "at", "actor", "app", "stage", "subject", "revision", "data")
    }
    chain = answer(spec, "get", "/api/v1/evidence", "200")
    assert fields(spec, chain, "items") == {
        *("id", "promotion_id", "at", "record", "record_json", "digest", "previous_digest")
    }
    notifications = answer(spec, "get", "/api/v1/notifications", "200")
    assert fields(spec, notifications, "items") >= {
        "id",
        "event",
        "target",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "next_at",
    }


def documented(spec: dict[str, Any], body: Any, schema: dict[str, Any]) -> None:
    """Every field of ``body`` (and of the objects it nests) is in ``schema``."""
    schema = resolve(spec, schema)
    if isinstance(body, list):
        for item in body:
            documented(spec, item, schema)
        return
    if not isinstance(body, dict) or "properties" not in schema:
        return
    assert set(body) <= set(schema["properties"]), (set(body), set(schema["properties"]))
    for name, value in body.items():
        documented(spec, value, schema["properties"][name])


def test_the_answers_carry_only_documented_fields(client, spec):
    def check(response, method: str, path: str, status: str) -> dict[str, Any]:
        assert str(response.status_code) == status, response.get_json()
        body = response.get_json()
        documented(spec, body, answer(spec, method, path, status))
        return body

    flags = "/api/v1/apps/demo/flags"
    made = client.post(flags, json={"key": "tidy", "description": "one flag"})
    flag = check(made, "post", "/api/v1/apps/{app}/flags", "201")["flag"]
    assert flag["key"] == "tidy" and "targeting" not in flag
    edited = client.patch(f"{flags}/tidy", json={"lifecycle": "beta"})
    assert set(check(edited, "patch", "/api/v1/apps/{app}/flags/{key}", "200")) == {"revision"}
    stage_flag = "/api/v1/apps/{app}/stages/{stage}/flags/{key}"
    on = client.patch(
        "/api/v1/apps/demo/stages/development/flags/tidy",
        json={"targeting": {"if": [True, "on", "off"]}},
    )
    assert check(on, "patch", stage_flag, "200")["flag"]["targeting"]
    image = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
    )
    body = check(image, "put", "/api/v1/apps/{app}/stages/{stage}/images", "200")
    assert body["image"] == {"name": "ghcr.io/acme/demo", "tag": "1.5.0", "digest": None}
    check(client.get("/api/v1/pipeline"), "get", "/api/v1/pipeline", "200")
    token = client.post("/api/v1/tokens", json={"name": "ci", "owner": "ci", "roles": ["viewer"]})
    created = check(token, "post", "/api/v1/tokens", "201")
    assert created["token"] and created["active"] is True
    check(client.get("/api/v1/tokens"), "get", "/api/v1/tokens", "200")
    revoked = client.delete(f"/api/v1/tokens/{created['id']}")
    assert check(revoked, "delete", "/api/v1/tokens/{token_id}", "200")["active"] is False
    held = client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "tidy"})
    check(held, "post", "/api/v1/apps/{app}/stages/{stage}/hold", "201")
    released = client.delete("/api/v1/apps/demo/stages/staging/hold")
    check(released, "delete", "/api/v1/apps/{app}/stages/{stage}/hold", "200")
    frozen = client.post("/api/v1/stages/staging/freeze", json={"reason": "tidy"})
    assert check(frozen, "post", "/api/v1/stages/{stage}/freeze", "201")["until"] is None
    (listed,) = check(client.get("/api/v1/freezes"), "get", "/api/v1/freezes", "200")
    assert listed["stage"] == "staging" and listed["at"]
    thawed = client.delete("/api/v1/stages/staging/freeze")
    assert check(thawed, "delete", "/api/v1/stages/{stage}/freeze", "200") == {
        "stage": "staging",
        "frozen": False,
    }
    deleted = client.delete("/api/v1/apps/demo/stages/development/flags/tidy")
    check(deleted, "delete", stage_flag, "200")
    listed = check(client.get("/api/v1/events?limit=1000"), "get", "/api/v1/events", "200")
    assert {"state_changed", "stage_held", "stage_frozen"} <= {e["kind"] for e in listed["items"]}
