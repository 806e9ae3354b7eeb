"""OFREP over HTTP: real OpenFeature clients against a running Stageflow, compared with flagd.

The comparison evaluator is ``openfeature-flagd-core``, the reference flagd evaluator, loaded with
the very file Stageflow committed to the remote: what a flagd sidecar mounting the ConfigMap would
read.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from openfeature import api as openfeature_api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails
from werkzeug.serving import make_server

from stageflow.api import create_app
from stageflow.config import Settings
from stageflow.services import tokens
from tests.builders import make_token, read_remote, remote_head, third_party_commit
from tests.e2e.conftest import ADMIN

DEV = "apps/demo/overlays/development"
SINGLE = "/ofrep/v1/evaluate/flags"

# flag key -> (variants, defaultVariant, targeting); created in development through REST.
FLAGS: dict[str, tuple[dict[str, Any] | None, str | None, dict[str, Any]]] = {
    "checkout_v2": (None, None, {"fractional": [["on", 30], ["off", 70]]}),
    "theme": (
        {"blue": "#0000ff", "green": "#00ff00", "red": "#ff0000"},
        "blue",
        {
            "if": [
                {"ends_with": [{"var": "email"}, "@acme.com"]},
                "green",
                {"fractional": [["blue", 50], ["red", 50]]},
            ]
        },
    ),
    "max_items": (
        {"small": 10, "large": 100},
        "small",
        {"if": [{"==": [{"var": "plan"}, "pro"]}, "large", None]},
    ),
    "discount": (
        {"none": 0.0, "some": 0.15, "lots": 0.3},
        "none",
        {"fractional": [["none", 50], ["some", 30], ["lots", 20]]},
    ),
    "layout": (
        {"classic": {"columns": 1, "sidebar": False}, "grid": {"columns": 3, "sidebar": True}},
        "classic",
        {"if": [{"sem_ver": [{"var": "app_version"}, ">=", "2.0.0"]}, "grid", "classic"]},
    ),
}
# How the SDK and flagd read each flag: (SDK details method, flagd-core method, code default).
KINDS: dict[str, tuple[str, str, Any]] = {
    "new_ui": ("get_boolean_details", "resolve_boolean_value", False),
    "beta_api": ("get_boolean_details", "resolve_boolean_value", False),
    "experimental_cache": ("get_boolean_details", "resolve_boolean_value", False),
    "checkout_v2": ("get_boolean_details", "resolve_boolean_value", False),
    "theme": ("get_string_details", "resolve_string_value", "code-default"),
    "max_items": ("get_integer_details", "resolve_integer_value", -1),
    "discount": ("get_float_details", "resolve_float_value", -1.0),
    "layout": ("get_object_details", "resolve_object_value", {"code": "default"}),
}


def _context(index: int) -> dict[str, Any]:
    context: dict[str, Any] = {"targetingKey": f"user-{index}"}
    if index % 7 == 0:
        context["email"] = f"user-{index}@acme.com"
    if index % 3 == 0:
        context["plan"] = "pro"
    context["app_version"] = f"{1 + index % 3}.{index % 5}.0"
    return context


def _token(client: FlaskClient, roles: list[str], apps=(), stages=(), name="app") -> str:
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": name,
            "owner": "svc-checkout",
            "roles": roles,
            "scope": {"apps": list(apps), "stages": list(stages)},
        },
    )
    assert created.status_code == 201, created.get_json()
    return str(created.get_json()["token"])


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def fractional() -> str:
    """The ``fractional`` bucketing the app runs with (a test parametrizes it to change it)."""
    return "string"


@pytest.fixture
def settings(settings: Settings, fractional: str) -> Settings:
    return settings.with_overrides(flagd_fractional=fractional)


@pytest.fixture
def dev_token(client: FlaskClient) -> str:
    """A client token scoped to demo/development: it needs no header to pick app and stage."""
    return _token(client, ["client"], ["demo"], ["development"], name="checkout in dev")


@pytest.fixture
def typed_flags(client: FlaskClient) -> str:
    """Create FLAGS in development through REST; return the head revision after the last one."""
    revision = ""
    for key, (variants, default, targeting) in FLAGS.items():
        body: dict[str, Any] = {"key": key, "lifecycle": "experimental"}
        if variants is not None:
            body.update(variants=variants, defaultVariant=default)
        created = client.post("/api/v1/apps/demo/flags", json=body)
        assert created.status_code == 201, created.get_json()
        patch: dict[str, Any] = {"targeting": targeting}
        if variants is not None:
            patch["enabled"] = True  # non-boolean flags start DISABLED
        changed = client.patch(f"/api/v1/apps/demo/stages/development/flags/{key}", json=patch)
        assert changed.status_code == 200, changed.get_json()
        revision = changed.get_json()["revision"]
    return revision


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on 127.0.0.1 (a free port), stopped at the end."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="stageflow-test-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=30)
        httpd.server_close()


@pytest.fixture
def openfeature_client(server: str, dev_token: str) -> Iterator[OpenFeatureClient]:
    """The OpenFeature SDK with its OFREP provider pointed at the running Stageflow."""
    provider = OFREPProvider(server, headers_factory=lambda: _bearer(dev_token), timeout=30)
    provider.session.trust_env = False  # straight to 127.0.0.1, whatever proxy is configured
    openfeature_api.set_provider_and_wait(provider, domain="stageflow-test")
    try:
        yield openfeature_api.get_client("stageflow-test")
    finally:
        openfeature_api.clear_providers()
        provider.session.close()


def _flagd(bare: Path, revision: str) -> FlagdCore:
    core = FlagdCore()
    core.set_flags(read_remote(bare, revision, f"{DEV}/flags.json"))
    return core


def _sdk(client: OpenFeatureClient, key: str, context: dict[str, Any]) -> FlagEvaluationDetails:
    method, _, default = KINDS[key]
    ctx = EvaluationContext(
        context.get("targetingKey"), {k: v for k, v in context.items() if k != "targetingKey"}
    )
    return getattr(client, method)(key, default, ctx)  # type: ignore[no-any-return]


# -- real clients, compared with flagd ------------------------------------------------------------


@pytest.mark.parametrize("fractional", ["cbor"])
def test_with_cbor_bucketing_the_sdk_over_ofrep_answers_what_flagd_core_2_answers(
    openfeature_client: OpenFeatureClient, typed_flags: str, gitops_remote: Path
):
    """``STAGEFLOW_FLAGD_FRACTIONAL=cbor``: the answers of ``openfeature-flagd-core`` 2.

    The default bucketing (flagd v0.16's) is compared with ``@openfeature/flagd-core`` 4 in
    ``tests/interop`` and with flagd's own vectors in ``test_flagd_vectors.py``.
    """
    flagd = _flagd(gitops_remote, remote_head(gitops_remote))
    seen: dict[str, set[str]] = {key: set() for key in KINDS}

    for index in range(200):
        context = _context(index)
        flagd_ctx = EvaluationContext(
            context["targetingKey"], {k: v for k, v in context.items() if k != "targetingKey"}
        )
        for key, (_, resolve, default) in KINDS.items():
            got = _sdk(openfeature_client, key, context)
            want = getattr(flagd, resolve)(key, default, flagd_ctx)
            assert got.error_code is None, (key, context, got.error_message)
            assert (got.value, got.variant, str(got.reason)) == (
                want.value,
                want.variant,
                str(want.reason),
            ), (key, context)
            assert type(got.value) is type(want.value)
            seen[key].add(str(got.variant))

    # the rollouts and rules really split the 200 users, so the comparison covered every branch
    assert seen["checkout_v2"] == {"on", "off"}
    assert seen["theme"] == {"blue", "green", "red"}
    assert seen["max_items"] == {"small", "large"}
    assert seen["discount"] == {"none", "some", "lots"}
    assert seen["layout"] == {"classic", "grid"}
    assert seen["new_ui"] == {"on"} and seen["experimental_cache"] == {"on"}


def test_sdk_reasons_and_metadata_are_flagds(
    openfeature_client: OpenFeatureClient, typed_flags: str
):
    static = _sdk(openfeature_client, "new_ui", {})
    assert (static.value, static.variant, static.reason) == (True, "on", "STATIC")
    assert static.flag_metadata["flagSetId"] == "demo"
    # the document's version moves with every commit; a flag's answer does not carry it
    assert "version" not in static.flag_metadata
    assert static.flag_metadata["lifecycle"] == "stable"

    matched = _sdk(openfeature_client, "max_items", {"targetingKey": "u1", "plan": "pro"})
    assert (matched.value, matched.variant, matched.reason) == (100, "large", "TARGETING_MATCH")
    fallback = _sdk(openfeature_client, "max_items", {"targetingKey": "u1", "plan": "free"})
    assert (fallback.value, fallback.variant, fallback.reason) == (10, "small", "DEFAULT")

    unknown = openfeature_client.get_boolean_details("no_such_flag", True)
    assert unknown.value is True
    assert unknown.error_code == "FLAG_NOT_FOUND"


def test_a_flag_turned_off_through_rest_is_off_over_ofrep_in_the_next_request(
    openfeature_client: OpenFeatureClient, server: str
):
    before = openfeature_client.get_boolean_details("beta_api", False)
    assert (before.value, before.variant) == (True, "on")

    off = requests.patch(
        f"{server}/api/v1/apps/demo/stages/development/flags/beta_api",
        json={"enabled": False},
        headers=_bearer(ADMIN),
        timeout=60,
    )
    assert off.status_code == 200, off.text

    after = openfeature_client.get_boolean_details("beta_api", True)
    assert (after.value, after.variant, after.reason) == (False, "off", "STATIC")


def test_a_rollout_switched_off_is_disabled_and_clients_get_their_code_default(
    client: FlaskClient,
    anonymous: FlaskClient,
    dev_token: str,
    typed_flags: str,
    openfeature_client: OpenFeatureClient,
):
    context = {"context": {"targetingKey": "user-1"}}
    off = client.patch(
        "/api/v1/apps/demo/stages/development/flags/checkout_v2", json={"enabled": False}
    )
    assert off.status_code == 200

    answer = anonymous.post(f"{SINGLE}/checkout_v2", json=context, headers=_bearer(dev_token))

    assert answer.status_code == 200
    body = answer.get_json()
    # OFREP's codeDefaultFlag: no value (and an empty variant); the client uses its code default
    assert list(body) == ["key", "reason", "variant", "metadata"]
    assert body["variant"] == ""
    assert body["reason"] == "DISABLED"
    assert body["key"] == "checkout_v2"
    ctx = EvaluationContext("user-1")
    for code_default in (True, False):
        details = openfeature_client.get_boolean_details("checkout_v2", code_default, ctx)
        assert (details.value, details.reason, details.error_code) == (
            code_default,
            "DISABLED",
            None,
        )


# -- the protocol, request by request -------------------------------------------------------------


def test_single_evaluation_has_exactly_the_ofrep_success_shape(
    anonymous: FlaskClient, dev_token: str, typed_flags: str
):
    answer = anonymous.post(
        f"{SINGLE}/layout",
        json={"context": {"targetingKey": "user-9", "app_version": "2.1.0"}},
        headers=_bearer(dev_token),
    )

    assert answer.status_code == 200
    body = answer.get_json()
    assert list(body) == ["key", "value", "reason", "variant", "metadata"]
    assert body["value"] == {"columns": 3, "sidebar": True}
    assert (body["key"], body["variant"], body["reason"]) == ("layout", "grid", "TARGETING_MATCH")
    assert body["metadata"]["flagSetId"] == "demo"
    assert body["metadata"]["lifecycle"] == "experimental"


@pytest.mark.parametrize(
    ("data", "error_code", "words"),
    [
        (b"{not json", "PARSE_ERROR", "not valid JSON"),
        (b"", "PARSE_ERROR", "no body"),
        (b"[1, 2]", "PARSE_ERROR", "JSON object"),
        (b"{}", "INVALID_CONTEXT", "no context"),
        (b'{"context": "user-1"}', "INVALID_CONTEXT", "context must be a JSON object"),
        (b'{"context": {"targetingKey": 42}}', "INVALID_CONTEXT", "targetingKey must be a string"),
    ],
)
def test_bad_requests_are_400_with_the_ofrep_error_code(
    anonymous: FlaskClient, dev_token: str, data: bytes, error_code: str, words: str
):
    headers = {**_bearer(dev_token), "Content-Type": "application/json"}

    single = anonymous.post(f"{SINGLE}/new_ui", data=data, headers=headers)
    bulk = anonymous.post(SINGLE, data=data, headers=headers)

    assert single.status_code == 400
    assert single.get_json()["key"] == "new_ui"
    assert single.get_json()["errorCode"] == error_code
    assert words in single.get_json()["errorDetails"]
    assert bulk.status_code == 400
    assert set(bulk.get_json()) == {"errorCode", "errorDetails"}
    assert bulk.get_json()["errorCode"] == error_code


def test_unknown_flag_is_404_flag_not_found(anonymous: FlaskClient, dev_token: str):
    answer = anonymous.post(f"{SINGLE}/nope", json={"context": {}}, headers=_bearer(dev_token))

    assert answer.status_code == 404
    body = answer.get_json()
    assert (body["key"], body["errorCode"]) == ("nope", "FLAG_NOT_FOUND")
    assert "demo/development" in body["errorDetails"]


def test_a_flags_file_flagd_cannot_read_is_answered_as_its_last_valid_version_naming_it(
    anonymous: FlaskClient, dev_token: str, gitops_remote: Path
):
    before = anonymous.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=_bearer(dev_token))
    third_party_commit(gitops_remote, f"{DEV}/flags.json", '{"flags": {"x": ', "broken by hand")

    single = anonymous.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=_bearer(dev_token))
    bulk = anonymous.post(SINGLE, json={"context": {}}, headers=_bearer(dev_token))

    assert single.status_code == 200
    assert single.get_json() == before.get_json()
    assert bulk.status_code == 200
    for answer in (single, bulk):
        assert f"{DEV}/flags.json" in answer.headers["Warning"]
        assert answer.headers["Warning"].startswith("110 ")


def test_a_rollout_without_targeting_key_is_400_targeting_key_missing(
    anonymous: FlaskClient, dev_token: str, typed_flags: str
):
    single = anonymous.post(
        f"{SINGLE}/checkout_v2", json={"context": {}}, headers=_bearer(dev_token)
    )
    bulk = anonymous.post(SINGLE, json={"context": {}}, headers=_bearer(dev_token))

    assert single.status_code == 400
    assert single.get_json()["errorCode"] == "TARGETING_KEY_MISSING"
    assert "targetingKey" in single.get_json()["errorDetails"]
    items = {item["key"]: item for item in bulk.get_json()["flags"]}
    assert items["checkout_v2"]["errorCode"] == "TARGETING_KEY_MISSING"
    # a rule that does not bucket by user still answers, and so does an email-matched theme
    assert items["max_items"]["variant"] == "small"
    assert items["new_ui"]["value"] is True


def test_bulk_answers_every_flag_like_single_requests_with_an_etag(
    anonymous: FlaskClient, dev_token: str, typed_flags: str
):
    headers = _bearer(dev_token)
    context = {"context": _context(21)}

    bulk = anonymous.post(SINGLE, json=context, headers=headers)

    assert bulk.status_code == 200
    body = bulk.get_json()
    assert set(body) == {"flags", "metadata", "eventStreams"}
    assert body["metadata"]["flagSetId"] == "demo"
    (stream,) = body["eventStreams"]  # where its clients hear of changes (ADR-0008)
    assert stream["type"] == "sse" and stream["inactivityDelaySec"] == 120
    assert stream["endpoint"]["origin"] == "http://127.0.0.1:8081"
    # the token's ticket (services.stream_tickets): what a browser's EventSource can carry
    path, _, query = stream["endpoint"]["requestUri"].partition("?")
    assert path == "/ofrep/v1/event-stream"
    assert urllib.parse.parse_qs(query).keys() == {"app", "stage", "ticket"}
    assert query.startswith("app=demo&stage=development&ticket=") and dev_token not in query
    assert [item["key"] for item in body["flags"]] == [*KINDS]
    for item in body["flags"]:
        single = anonymous.post(f"{SINGLE}/{item['key']}", json=context, headers=headers)
        assert single.get_json() == item
    etag = bulk.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert "ETag" in bulk.headers["Access-Control-Expose-Headers"]


def test_after_a_toggle_only_the_toggled_flags_answer_differs(
    client: FlaskClient, anonymous: FlaskClient, dev_token: str, typed_flags: str
):
    """A client that compares answers (the OFREP web provider) sees one flag change, not all."""
    headers = _bearer(dev_token)
    context = {"context": _context(4)}
    before = anonymous.post(SINGLE, json=context, headers=headers).get_json()

    toggled = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"enabled": False}
    )
    assert toggled.status_code == 200
    after = anonymous.post(SINGLE, json=context, headers=headers).get_json()

    # the web provider's test: JSON.stringify of each flag's answer, old against new
    changed = [
        new["key"]
        for old, new in zip(before["flags"], after["flags"], strict=True)
        if json.dumps(old) != json.dumps(new)
    ]
    assert changed == ["beta_api"]
    # the document's version is the flag set's, and moves with the commit
    assert before["metadata"]["version"] != after["metadata"]["version"]


def test_bulk_if_none_match_is_304_until_the_answer_changes(
    client: FlaskClient, anonymous: FlaskClient, dev_token: str, typed_flags: str
):
    headers = _bearer(dev_token)
    context = {"context": {"targetingKey": "user-1"}}
    first = anonymous.post(SINGLE, json=context, headers=headers)
    etag = first.headers["ETag"]

    same = anonymous.post(SINGLE, json=context, headers={**headers, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.data == b""
    assert same.headers["ETag"] == etag
    assert (
        anonymous.post(
            SINGLE, json=context, headers={**headers, "If-None-Match": f'"other", W/{etag}'}
        ).status_code
        == 304
    )

    # the ETag is the answer's: a context attribute no rule reads changes nothing, ...
    unread = {"context": {"targetingKey": "user-1", "country": "FR"}}
    assert (
        anonymous.post(SINGLE, json=unread, headers={**headers, "If-None-Match": etag}).status_code
        == 304
    )
    # ... one that a rule reads does (max_items is large for pro users)
    pro = {"context": {"targetingKey": "user-1", "plan": "pro"}}
    other_answer = anonymous.post(SINGLE, json=pro, headers={**headers, "If-None-Match": etag})
    assert other_answer.status_code == 200
    assert other_answer.headers["ETag"] != etag
    # ... and so does another token: its answer names its own event-stream ticket
    twin = make_token(client, "app-dev-twin", ["client"], apps=["demo"], stages=["development"])
    theirs = anonymous.post(SINGLE, json=context, headers={**_bearer(twin), "If-None-Match": etag})
    assert theirs.status_code == 200
    assert theirs.get_json()["flags"] == first.get_json()["flags"]
    assert theirs.get_json()["eventStreams"] != first.get_json()["eventStreams"]

    client.patch("/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False})
    changed = anonymous.post(SINGLE, json=context, headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    new_ui = next(item for item in changed.get_json()["flags"] if item["key"] == "new_ui")
    assert new_ui["value"] is False


# -- who may ask, and for which app and stage -----------------------------------------------------


def test_missing_or_bad_token_is_401(anonymous: FlaskClient):
    missing = anonymous.post(f"{SINGLE}/new_ui", json={"context": {}})
    bad = anonymous.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=_bearer("sf_nope"))

    assert missing.status_code == 401
    assert "Authorization: Bearer" in missing.get_json()["errorDetails"]
    assert bad.status_code == 401
    assert bad.get_json()["errorCode"] == "GENERAL"


def test_a_token_without_the_client_role_is_403(client: FlaskClient, anonymous: FlaskClient):
    editor = _token(client, ["editor"], ["demo"], ["development"], name="an editor")

    answer = anonymous.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=_bearer(editor))

    assert answer.status_code == 403
    assert "'client'" in answer.get_json()["errorDetails"]


def test_the_token_scope_picks_app_and_stage(client: FlaskClient, anonymous: FlaskClient):
    production = _token(client, ["client"], ["demo"], ["production"], name="prod app")

    answer = anonymous.post(f"{SINGLE}/beta_api", json={"context": {}}, headers=_bearer(production))

    assert answer.status_code == 200
    assert (answer.get_json()["value"], answer.get_json()["variant"]) == (False, "off")


def test_a_token_that_may_read_several_stages_must_name_one_in_a_header(anonymous: FlaskClient):
    # the admin token may read every stage of demo (the only app)
    admin = _bearer(ADMIN)

    unnamed = anonymous.post(f"{SINGLE}/beta_api", json={"context": {}}, headers=admin)
    named = anonymous.post(
        f"{SINGLE}/beta_api",
        json={"context": {}},
        headers={**admin, "X-Stageflow-Stage": "staging", "X-Stageflow-App": "demo"},
    )
    unknown = anonymous.post(
        f"{SINGLE}/beta_api", json={"context": {}}, headers={**admin, "X-Stageflow-Stage": "qa"}
    )

    assert unnamed.status_code == 400
    assert unnamed.get_json()["errorCode"] == "GENERAL"
    message = unnamed.get_json()["errorDetails"]
    assert "X-Stageflow-Stage" in message
    assert "development, staging, production" in message
    assert named.status_code == 200
    assert named.get_json()["variant"] == "on"
    assert unknown.status_code == 400
    assert "'qa'" in unknown.get_json()["errorDetails"]


def test_a_header_cannot_widen_the_token_scope(anonymous: FlaskClient, dev_token: str):
    answer = anonymous.post(
        f"{SINGLE}/beta_api",
        json={"context": {}},
        headers={**_bearer(dev_token), "X-Stageflow-Stage": "production"},
    )

    assert answer.status_code == 403
    assert "production" in answer.get_json()["errorDetails"]


def test_cors_preflight_needs_no_token_and_allows_the_ofrep_headers(anonymous: FlaskClient):
    preflight = anonymous.options(
        SINGLE,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, if-none-match",
        },
    )

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"]
    for header in ("Authorization", "Content-Type", "If-None-Match", "X-Stageflow-App"):
        assert header in allowed
    assert "ETag" in preflight.headers["Access-Control-Expose-Headers"]


def test_rate_limit_is_per_token_with_an_integer_retry_after(
    settings: Settings, stageflow, client: FlaskClient, dev_token: str
):
    sf, readiness = stageflow
    limited = create_app(settings.with_overrides(ofrep_rate_limit=2), sf, readiness)
    limiter = limited.extensions["stageflow.ofrep_limiter"]
    limiter.clock = lambda: 1000.0  # time stands still: no request is refilled
    other = _token(client, ["client"], ["demo"], ["development"], name="another app")
    http = limited.test_client()

    answers = [
        http.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=_bearer(dev_token))
        for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [200, 200, 429]
    retry_after = answers[2].headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert answers[2].headers["Access-Control-Allow-Origin"] == "*"
    # another token has its own bucket
    assert http.post(SINGLE, json={"context": {}}, headers=_bearer(other)).status_code == 200


def test_answers_come_from_memory_not_from_git_or_the_database(
    app: Flask, anonymous: FlaskClient, dev_token: str, monkeypatch: pytest.MonkeyPatch
):
    sf = app.extensions["stageflow"]
    headers = _bearer(dev_token)
    warm = anonymous.post(SINGLE, json={"context": {"targetingKey": "u"}}, headers=headers)
    assert warm.status_code == 200
    monkeypatch.setattr(tokens, "CACHE_TTL", 3600.0)  # keep the authenticated token cached

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("evaluation read Git or the database")

    monkeypatch.setattr(sf, "uow", refuse)
    monkeypatch.setattr(sf.repo, "read_blob", refuse)
    monkeypatch.setattr(sf.repo, "blob_id", refuse)
    monkeypatch.setattr(sf.repo, "read", refuse)

    for index in range(20):
        context = {"context": _context(index)}
        assert anonymous.post(f"{SINGLE}/new_ui", json=context, headers=headers).status_code == 200
        assert anonymous.post(SINGLE, json=context, headers=headers).status_code == 200


def test_ofrep_paths_are_in_the_openapi_document(anonymous: FlaskClient):
    spec = anonymous.get("/openapi.json").get_json()

    single = spec["paths"]["/ofrep/v1/evaluate/flags/{key}"]["post"]
    bulk = spec["paths"]["/ofrep/v1/evaluate/flags"]["post"]
    assert {"200", "400", "404", "401", "403", "429"} <= set(single["responses"])
    assert {"200", "304", "400", "429"} <= set(bulk["responses"])
    assert "ETag" in bulk["responses"]["200"]["headers"]


# -- targeting is tried with flagd before it is committed -----------------------------------------


@pytest.mark.parametrize(
    ("targeting", "words"),
    [
        ({"cat": ["o", "x"]}, "ox"),
        ({"var": "targetingKey"}, "stageflow-trial-user"),
    ],
)
def test_targeting_that_flagd_cannot_turn_into_a_variant_is_422_and_not_committed(
    client: FlaskClient, gitops_remote: Path, targeting: dict[str, Any], words: str
):
    before = remote_head(gitops_remote)

    refused = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"targeting": targeting}
    )

    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_targeting"
    assert "beta_api" in error["message"] and words in error["message"]
    assert error["details"]["flag"] == "beta_api"
    assert remote_head(gitops_remote) == before


def test_valid_targeting_is_committed_and_served(
    client: FlaskClient, anonymous: FlaskClient, dev_token: str, gitops_remote: Path
):
    rule = {"if": [{"in": [{"var": "country"}, ["DE", "AT"]]}, "off", "on"]}

    changed = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"targeting": rule}
    )

    assert changed.status_code == 200, changed.get_json()
    committed = json.loads(
        read_remote(gitops_remote, changed.get_json()["revision"], f"{DEV}/flags.json")
    )
    assert committed["flags"]["beta_api"]["targeting"] == rule
    german = anonymous.post(
        f"{SINGLE}/beta_api",
        json={"context": {"targetingKey": "u", "country": "DE"}},
        headers=_bearer(dev_token),
    )
    assert (german.get_json()["value"], german.get_json()["reason"]) == (False, "TARGETING_MATCH")


# -- every flags.json Stageflow ever committed is a flagd document --------------------------------


def test_every_committed_flags_file_in_a_busy_history_is_valid_flagd(
    client: FlaskClient, gitops_remote: Path, typed_flags: str
):
    from stageflow.adapters.flagd_schema import FlagdSchema
    from tests.conftest import git

    changes = [
        ("patch", "/api/v1/apps/demo/stages/development/flags/new_ui", {"enabled": False}),
        ("patch", "/api/v1/apps/demo/stages/development/flags/theme", {"state": "DISABLED"}),
        ("patch", "/api/v1/apps/demo/stages/development/flags/theme", {"targeting": None}),
        ("patch", "/api/v1/apps/demo/flags/checkout_v2", {"lifecycle": "beta"}),
        ("patch", "/api/v1/apps/demo/flags/layout", {"description": "Grid for new apps"}),
        ("patch", "/api/v1/apps/demo/stages/production/flags/beta_api", {"enabled": False}),
        ("patch", "/api/v1/apps/demo/stages/staging/flags/new_ui", {"enabled": False}),
        ("delete", "/api/v1/apps/demo/stages/development/flags/discount", None),
        ("post", "/api/v1/apps/demo/flags", {"key": "banner", "description": 'A "quoted" é'}),
        (
            "put",
            "/api/v1/apps/demo/stages/development/images",
            {"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
        ),
    ]
    for method, path, body in changes:
        answer = getattr(client, method)(path, json=body)
        assert answer.status_code in (200, 201), (path, answer.get_json())

    schema = FlagdSchema()
    revisions = git("--git-dir", str(gitops_remote), "rev-list", "main").split()
    checked: set[str] = set()
    for revision in revisions:
        listing = git("--git-dir", str(gitops_remote), "ls-tree", "-r", revision).splitlines()
        changed = git(
            "--git-dir",
            str(gitops_remote),
            "diff-tree",
            "--no-commit-id",
            "--name-only",
            "-r",
            "--root",
            revision,
        ).split()
        message = git("--git-dir", str(gitops_remote), "log", "-1", "--format=%B", revision)
        for line in listing:
            meta, path = line.split("\t", 1)
            if not path.endswith("/flags.json"):
                continue
            blob = meta.split()[2]
            text = read_remote(gitops_remote, revision, path)
            document = json.loads(text)
            if blob not in checked:
                assert schema.problems(document) == [], (revision, path)
                FlagdCore().set_flags(text)  # flagd's own reader takes it unchanged
                checked.add(blob)
            assert document["metadata"]["flagSetId"] == path.split("/")[1]
            if path in changed and "Stageflow-Change:" in message:
                parent = git("--git-dir", str(gitops_remote), "rev-parse", f"{revision}^").strip()
                assert document["metadata"]["version"] == parent, (revision, path)
    assert len(revisions) >= len(FLAGS) * 2 + len(changes)
    assert len(checked) >= len(FLAGS) * 2 + len(changes) - 1


def test_evaluations_are_logged_at_debug_and_changes_at_info(
    client: FlaskClient, anonymous: FlaskClient, dev_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Evaluations are reads at read rates; one INFO line each cost a sixth of their time.
    caplog.set_level(logging.DEBUG, logger="stageflow.http")
    headers = _bearer(dev_token)
    assert anonymous.post(SINGLE, json={"context": {}}, headers=headers).status_code == 200
    assert (
        anonymous.post(f"{SINGLE}/new_ui", json={"context": {}}, headers=headers).status_code == 200
    )
    assert (
        anonymous.post(f"{SINGLE}/nope", json={"context": {}}, headers=headers).status_code == 404
    )
    client.patch("/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False})

    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "stageflow.http"]
    assert ("DEBUG", f"POST {SINGLE} 200") in logged
    assert ("DEBUG", f"POST {SINGLE}/new_ui 200") in logged
    assert ("INFO", f"POST {SINGLE}/nope 404") in logged  # a failure stays visible
    assert ("INFO", "PATCH /api/v1/apps/demo/stages/development/flags/new_ui 200") in logged
