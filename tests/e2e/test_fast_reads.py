"""The hot reads' fast path (api/fastpath.py) answers exactly what Flask answers, or lets Flask.

Each request is sent twice to the same app and state: once with the fast path on, once with it
off (every request through Flask's views). Status, headers (but the generated request id) and
body must be equal; the fast path must have answered the successes itself and nothing else
(``FastProbe`` sees which requests reached Flask).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from stageflow.api.fastpath import fast_read, routes_of
from tests.e2e.fast_probe import REACHED_FLASK, FastProbe

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


@pytest.fixture
def probe(app: Flask) -> Iterator[FastProbe]:
    watching = FastProbe(app)
    yield watching
    watching.close()


def _both(probe: FastProbe, method: str, path: str, **kwargs: Any) -> tuple[Any, Any, int]:
    """Send the request with the fast path on, then off; return both answers and how many
    the fast path answered."""
    http = probe.app.test_client()
    on = http.open(path, method=method, **kwargs)
    with probe.flask():
        off = http.open(path, method=method, **kwargs)
    assert not probe.answered_fast(off)
    return on, off, int(probe.answered_fast(on))


def _same(on: Any, off: Any) -> None:
    assert on.status_code == off.status_code, (on.get_data(), off.get_data())
    assert on.get_data() == off.get_data()
    drop = {"X-Request-Id", REACHED_FLASK}
    assert sorted((k, v) for k, v in on.headers.items() if k not in drop) == sorted(
        (k, v) for k, v in off.headers.items() if k not in drop
    )
    assert on.headers["X-Request-Id"] and off.headers["X-Request-Id"]


def _bearer(secret: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **more}


READS = ["/api/v1/apps/demo", "/api/v1/apps/demo/flags", DOC]


@pytest.mark.parametrize("path", READS)
def test_a_read_is_answered_by_the_fast_path_as_flask_answers_it(
    probe: FastProbe, tokens: dict[str, str], path: str
):
    on, off, answered_fast = _both(probe, "GET", path, headers=_bearer(tokens["viewer_dev"]))

    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    assert on.headers["Content-Type"] == "application/json"
    etag = on.headers["ETag"]
    # a stage-scoped reader's answer is its own (its stages only), and so is its ETag
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        on, off, answered_fast = _both(
            probe, "GET", path, headers=_bearer(tokens["viewer_dev"], **{"If-None-Match": given})
        )
        _same(on, off)
        assert on.status_code == 304 and answered_fast == 1 and on.get_data() == b""
    on, off, answered_fast = _both(
        probe, "GET", path, headers=_bearer(tokens["admin"], **{"If-None-Match": '"stale"'})
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
    probe: FastProbe, tokens: dict[str, str], path: str, token: str, status: int
):
    secret = tokens.get(token, "sf_not-a-token")
    on, off, answered_fast = _both(probe, "GET", path, headers=_bearer(secret))

    _same(on, off)
    assert on.status_code == status and answered_fast == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer "}],
)
def test_a_read_without_a_bearer_token_is_left_to_flask(
    probe: FastProbe, tokens: dict[str, str], headers: dict[str, str]
):
    on, off, answered_fast = _both(probe, "GET", DOC, headers=headers)

    _same(on, off)
    assert on.status_code == 401 and answered_fast == 0


def test_head_and_a_given_request_id_are_answered_as_flask_answers_them(
    probe: FastProbe, tokens: dict[str, str]
):
    on, off, answered_fast = _both(probe, "HEAD", DOC, headers=_bearer(tokens["admin"]))
    _same(on, off)
    assert on.status_code == 200 and answered_fast == 0

    headers = _bearer(tokens["admin"], **{"X-Request-Id": "ci-job-42"})
    on, off, answered_fast = _both(probe, "GET", DOC, headers=headers)
    _same(on, off)
    assert answered_fast == 1
    assert on.headers["X-Request-Id"] == off.headers["X-Request-Id"] == "ci-job-42"

    # an id that is not 1-128 plain characters is replaced on both paths, never echoed
    unusable = "x" * 129
    headers = _bearer(tokens["admin"], **{"X-Request-Id": unusable})
    on, off, answered_fast = _both(probe, "GET", DOC, headers=headers)
    assert answered_fast == 1
    assert unusable not in (on.headers["X-Request-Id"], off.headers["X-Request-Id"])


@pytest.mark.parametrize(
    "context",
    [{}, {"targetingKey": "user-1"}, {"targetingKey": "user-2", "plan": "pro"}],
)
def test_ofrep_bulk_is_answered_by_the_fast_path_as_flask_answers_it(
    probe: FastProbe, tokens: dict[str, str], context: dict[str, Any]
):
    body = {"context": context}
    on, off, answered_fast = _both(
        probe, "POST", BULK, json=body, headers=_bearer(tokens["client_dev"])
    )

    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    assert {flag["key"] for flag in on.get_json()["flags"]} >= {"new_checkout", "dark_mode"}
    assert on.headers["Access-Control-Allow-Origin"] == "*"
    headers = _bearer(tokens["client_dev"], **{"If-None-Match": on.headers["ETag"]})
    on, off, answered_fast = _both(probe, "POST", BULK, json=body, headers=headers)
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
        # the selection headers are decided by the view's own resolver (selected_flag_set)
        (
            "client_dev",
            {"json": {"context": {}}, "headers": {"X-Stageflow-Stage": "production"}},
            403,
        ),
        ("revoked", {"json": {"context": {}}}, 401),
    ],
)
def test_an_ofrep_bulk_request_that_fails_is_left_to_flask(
    probe: FastProbe, tokens: dict[str, str], token: str, kwargs: dict[str, Any], status: int
):
    kwargs = dict(kwargs)  # the parameters are shared by the sqlite and postgres runs
    headers = {**_bearer(tokens[token]), **kwargs.pop("headers", {})}
    on, off, answered_fast = _both(probe, "POST", BULK, headers=headers, **kwargs)

    _same(on, off)
    assert on.status_code == status and answered_fast == 0


def test_headers_pick_the_flag_set_on_the_fast_path_too(probe: FastProbe, tokens: dict[str, str]):
    pick = {"X-Stageflow-App": "demo", "X-Stageflow-Stage": "development"}
    body = {"context": {"targetingKey": "user-7"}}
    on, off, answered_fast = _both(
        probe, "POST", BULK, json=body, headers=_bearer(tokens["client_all"], **pick)
    )
    _same(on, off)
    assert on.status_code == 200 and answered_fast == 1
    single = probe.app.test_client().post(BULK, json=body, headers=_bearer(tokens["client_dev"]))
    # the same flags; each token's eventStreams carry its own ticket
    assert single.get_json()["flags"] == on.get_json()["flags"]
    assert single.get_json()["eventStreams"] != on.get_json()["eventStreams"]


def test_a_fast_answer_is_counted_in_the_request_metrics_under_the_flask_rule(
    probe: FastProbe, tokens: dict[str, str]
):
    labels = {"method": "GET", "endpoint": "/api/v1/apps/<app>/flags", "status": "200"}

    def count() -> float:
        return REGISTRY.get_sample_value("stageflow_http_requests_total", labels) or 0.0

    before = count()
    answer = probe.app.test_client().get(
        "/api/v1/apps/demo/flags", headers=_bearer(tokens["admin"])
    )

    assert answer.status_code == 200 and probe.answered_fast(answer)
    assert count() == before + 1


def test_the_fast_reads_are_the_marked_views_of_the_flask_url_map(probe: FastProbe):
    routes = {(method, route.rule) for (_, method), route in probe.middleware.routes.items()}

    assert routes == {
        ("GET", "/api/v1/apps/<app>"),
        ("GET", "/api/v1/apps/<app>/flags"),
        ("GET", "/api/v1/apps/<app>/stages/<stage>/flags"),
        ("POST", BULK),
    }
    for route in probe.middleware.routes.values():
        assert route.access.role in {"viewer", "client"}


def test_a_view_marked_fast_without_an_access_rule_is_refused_when_the_app_is_built():
    app = Flask("marks")

    @app.get("/api/v1/unmarked")
    @fast_read(lambda read: None)
    def unmarked() -> str:
        return "never"

    with pytest.raises(TypeError, match="without @requires"):
        routes_of(app)


def test_a_bug_on_the_fast_path_is_answered_as_a_failing_view_is(
    probe: FastProbe,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in the fast path")

    route = probe.middleware.routes[("reads.FlagMatrix", "GET")]
    monkeypatch.setitem(
        probe.middleware.routes, ("reads.FlagMatrix", "GET"), replace(route, builder=broken)
    )
    answer = probe.app.test_client().get(
        "/api/v1/apps/demo/flags", headers=_bearer(tokens["admin"], **{"X-Request-Id": "bug-1"})
    )

    assert answer.status_code == 500 and not probe.answered_fast(answer)
    assert answer.get_json()["error"]["code"] == "internal_error"
    assert answer.get_json()["error"]["details"] == {"request_id": "bug-1"}
    assert any(
        record.exc_info and "a bug in the fast path" in str(record.exc_info[1])
        for record in caplog.records
    )
