"""The hot reads' fast path (api/fastpath.py) answers exactly what Flask answers, or lets Flask.

Each request is sent twice to the same app and state: once with the fast path on, once with it
off (every request through Flask's views). Status, headers (but the generated request id) and
body must be equal; the fast path must have answered the successes itself and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from stageflow.api.fastpath import FastReads

DOC = "/api/v1/apps/demo/stages/development/flags"
BULK = "/ofrep/v1/evaluate/flags"


def _token(client: FlaskClient, roles: list[str], apps=(), stages=()) -> dict[str, Any]:
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": f"{'+'.join(roles)} {'/'.join([*apps, *stages]) or 'all'}",
            "owner": "svc-checkout",
            "roles": roles,
            "scope": {"apps": list(apps), "stages": list(stages)},
        },
    )
    assert created.status_code == 201, created.get_json()
    made: dict[str, Any] = created.get_json()
    return made


@pytest.fixture
def tokens(client: FlaskClient) -> dict[str, str]:
    """Flags to read (one with targeting: OFREP evaluates it per context), tokens to read with."""
    for key in ("new_checkout", "dark_mode"):
        created = client.post("/api/v1/apps/demo/flags", json={"key": key})
        assert created.status_code == 201, created.get_json()
    rollout = {"targeting": {"fractional": [["on", 50], ["off", 50]]}}
    changed = client.patch(f"{DOC}/new_checkout", json=rollout)
    assert changed.status_code == 200, changed.get_json()
    made = {
        "admin": client.environ_base["HTTP_AUTHORIZATION"].split()[1],
        "viewer_dev": _token(client, ["viewer"], ["demo"], ["development"])["token"],
        "client_dev": _token(client, ["client"], ["demo"], ["development"])["token"],
        "client_all": _token(client, ["client"])["token"],
    }
    revoked = _token(client, ["viewer"])
    assert client.delete(f"/api/v1/tokens/{revoked['id']}").status_code in (200, 204)
    made["revoked"] = revoked["token"]
    return made


def _fast(app: Flask) -> FastReads:
    middleware = app.wsgi_app
    assert isinstance(middleware, FastReads)
    return middleware


def _both(app: Flask, method: str, path: str, **kwargs: Any) -> tuple[Any, Any, int]:
    """Send the request with the fast path on, then off; return both answers and how many
    the fast path answered."""
    fast = _fast(app)
    http = app.test_client()
    served = fast.served
    on = http.open(path, method=method, **kwargs)
    answered_fast = fast.served - served
    fast.enabled = False
    try:
        off = http.open(path, method=method, **kwargs)
    finally:
        fast.enabled = True
    return on, off, answered_fast


def _same(on: Any, off: Any) -> None:
    assert on.status_code == off.status_code, (on.get_data(), off.get_data())
    assert on.get_data() == off.get_data()
    drop = {"X-Request-Id"}
    assert sorted((k, v) for k, v in on.headers.items() if k not in drop) == sorted(
        (k, v) for k, v in off.headers.items() if k not in drop
    )
    assert on.headers["X-Request-Id"] and off.headers["X-Request-Id"]


def _bearer(secret: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **more}


READS = ["/api/v1/apps/demo", "/api/v1/apps/demo/flags", DOC]


@pytest.mark.parametrize("path", READS)
def test_a_read_is_answered_by_the_fast_path_as_flask_answers_it(
    app: Flask, tokens: dict[str, str], path: str
):
    on, off, answered_fast = _both(app, "GET", path, headers=_bearer(tokens["viewer_dev"]))

    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    assert on.headers["Content-Type"] == "application/json"
    etag = on.headers["ETag"]
    # a stage-scoped reader's answer is its own (its stages only), and so is its ETag
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        on, off, answered_fast = _both(
            app, "GET", path, headers=_bearer(tokens["viewer_dev"], **{"If-None-Match": given})
        )
        _same(on, off)
        assert on.status_code == 304 and answered_fast == 1 and on.get_data() == b""
    on, off, answered_fast = _both(
        app, "GET", path, headers=_bearer(tokens["admin"], **{"If-None-Match": '"stale"'})
    )
    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/v1/apps/nope", "admin", 404),
        ("/api/v1/apps/nope/flags", "admin", 404),
        ("/api/v1/apps/demo/stages/nope/flags", "admin", 404),
        ("/api/v1/apps/demo/stages/production/flags", "viewer_dev", 403),
        ("/api/v1/apps/demo", "client_dev", 403),
        ("/api/v1/apps/demo", "revoked", 401),
        ("/api/v1/apps/demo", "unknown", 401),
        ("/api/v1/apps/demo/", "admin", 404),
        ("/api/v1/apps/d%C3%A9mo", "admin", 404),
    ],
)
def test_a_read_that_fails_is_left_to_flask(
    app: Flask, tokens: dict[str, str], path: str, token: str, status: int
):
    secret = tokens.get(token, "sf_not-a-token")
    on, off, answered_fast = _both(app, "GET", path, headers=_bearer(secret))

    _same(on, off)
    assert on.status_code == status and answered_fast == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer "}],
)
def test_a_read_without_a_bearer_token_is_left_to_flask(
    app: Flask, tokens: dict[str, str], headers: dict[str, str]
):
    on, off, answered_fast = _both(app, "GET", DOC, headers=headers)

    _same(on, off)
    assert on.status_code == 401 and answered_fast == 0


def test_head_and_a_given_request_id_are_answered_as_flask_answers_them(
    app: Flask, tokens: dict[str, str]
):
    on, off, answered_fast = _both(app, "HEAD", DOC, headers=_bearer(tokens["admin"]))
    _same(on, off)
    assert on.status_code == 200 and answered_fast == 0

    headers = _bearer(tokens["admin"], **{"X-Request-Id": "ci-job-42"})
    on, off, answered_fast = _both(app, "GET", DOC, headers=headers)
    _same(on, off)
    assert answered_fast == 1
    assert on.headers["X-Request-Id"] == off.headers["X-Request-Id"] == "ci-job-42"

    # an id that is not 1-128 plain characters is replaced on both paths, never echoed
    unusable = "x" * 129
    headers = _bearer(tokens["admin"], **{"X-Request-Id": unusable})
    on, off, answered_fast = _both(app, "GET", DOC, headers=headers)
    assert answered_fast == 1
    assert unusable not in (on.headers["X-Request-Id"], off.headers["X-Request-Id"])


@pytest.mark.parametrize(
    "context",
    [{}, {"targetingKey": "user-1"}, {"targetingKey": "user-2", "plan": "pro"}],
)
def test_ofrep_bulk_is_answered_by_the_fast_path_as_flask_answers_it(
    app: Flask, tokens: dict[str, str], context: dict[str, Any]
):
    body = {"context": context}
    on, off, answered_fast = _both(
        app, "POST", BULK, json=body, headers=_bearer(tokens["client_dev"])
    )

    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    assert {flag["key"] for flag in on.get_json()["flags"]} >= {"new_checkout", "dark_mode"}
    assert on.headers["Access-Control-Allow-Origin"] == "*"
    headers = _bearer(tokens["client_dev"], **{"If-None-Match": on.headers["ETag"]})
    on, off, answered_fast = _both(app, "POST", BULK, json=body, headers=headers)
    _same(on, off)
    assert on.status_code == 304 and answered_fast == 1


@pytest.mark.parametrize(
    ("token", "kwargs", "status"),
    [
        ("client_dev", {"data": b"{not json", "content_type": "application/json"}, 400),
        ("client_dev", {"json": {"ctx": {}}}, 400),
        ("client_dev", {"data": b""}, 400),
        ("client_all", {"json": {"context": {}}}, 400),  # which app and stage: a header says
        ("client_all", {"json": {"context": {}}, "headers": {"X-Stageflow-Stage": "nope"}}, 400),
        ("viewer_dev", {"json": {"context": {}}}, 403),
        ("revoked", {"json": {"context": {}}}, 401),
    ],
)
def test_an_ofrep_bulk_request_that_fails_is_left_to_flask(
    app: Flask, tokens: dict[str, str], token: str, kwargs: dict[str, Any], status: int
):
    headers = {**_bearer(tokens[token]), **kwargs.pop("headers", {})}
    on, off, answered_fast = _both(app, "POST", BULK, headers=headers, **kwargs)

    _same(on, off)
    assert on.status_code == status and answered_fast == 0


def test_headers_pick_the_flag_set_on_the_fast_path_too(app: Flask, tokens: dict[str, str]):
    pick = {"X-Stageflow-App": "demo", "X-Stageflow-Stage": "development"}
    body = {"context": {"targetingKey": "user-7"}}
    on, off, answered_fast = _both(
        app, "POST", BULK, json=body, headers=_bearer(tokens["client_all"], **pick)
    )
    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    single = app.test_client().post(BULK, json=body, headers=_bearer(tokens["client_dev"]))
    assert single.get_data() == on.get_data()


def test_a_fast_answer_is_counted_in_the_request_metrics_under_the_flask_rule(
    app: Flask, tokens: dict[str, str]
):
    labels = {"method": "GET", "endpoint": "/api/v1/apps/<app>/flags", "status": "200"}

    def count() -> float:
        return REGISTRY.get_sample_value("stageflow_http_requests_total", labels) or 0.0

    before = count()
    served = _fast(app).served
    answer = app.test_client().get("/api/v1/apps/demo/flags", headers=_bearer(tokens["admin"]))

    assert answer.status_code == 200 and _fast(app).served == served + 1
    assert count() == before + 1
