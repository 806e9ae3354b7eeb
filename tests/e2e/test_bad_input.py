"""Bad input gets a clear 4xx, and Git, the database and the clone are left as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import remote_head, third_party_commit
from tests.conftest import git

FLAG = "/api/v1/apps/demo/stages/development/flags/new_ui"
IMAGES = "/api/v1/apps/demo/stages/development/images"


def _assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"] and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "code"),
    [
        (
            "patch",
            "/api/v1/apps/nope/stages/development/flags/new_ui",
            {"enabled": True},
            404,
            "not_found",
        ),
        ("patch", "/api/v1/apps/demo/stages/qa/flags/new_ui", {"enabled": True}, 404, "not_found"),
        (
            "patch",
            "/api/v1/apps/demo/stages/development/flags/ghost",
            {"enabled": True},
            404,
            "flag_not_found",
        ),
        (
            "patch",
            "/api/v1/apps/demo/stages/staging/flags/ghost",
            {"enabled": True},
            404,
            "flag_not_found",
        ),
        ("patch", FLAG, {"enabled": "yes"}, 422, "invalid_request"),
        ("patch", FLAG, {}, 422, "invalid_request"),
        ("patch", FLAG, {"enabled": True, "colour": "red"}, 422, "unknown_field"),
        ("patch", FLAG, {"defaultVariant": "maybe"}, 422, "unknown_variant"),
        ("patch", FLAG, {"state": "HALF"}, 422, "invalid_request"),
        ("post", "/api/v1/apps/demo/flags", {"key": "../../etc/passwd"}, 422, "invalid_request"),
        ("post", "/api/v1/apps/demo/flags", {"key": "a/b"}, 422, "invalid_request"),
        (
            "post",
            "/api/v1/apps/demo/flags",
            {"key": "x", "lifecycle": "alpha"},
            422,
            "invalid_request",
        ),
        (
            "post",
            "/api/v1/apps/demo/flags",
            {"key": "x", "variants": {"a": 1, "b": "two"}, "defaultVariant": "a"},
            422,
            None,
        ),
        (
            "post",
            "/api/v1/apps/demo/flags",
            {"key": "x", "variants": {"a": 1}, "defaultVariant": "z"},
            422,
            None,
        ),
        ("put", IMAGES, {"name": "ghcr.io/acme/demo", "tag": "-bad tag"}, 422, None),
        ("put", IMAGES, {"name": "ghcr.io/acme/demo", "tag": "x" * 129}, 422, None),
        ("put", IMAGES, {"name": "ghcr.io/acme/demo", "digest": "md5:abc"}, 422, None),
        ("put", IMAGES, {"name": "GHCR.io/Acme/Demo", "tag": "1.0"}, 422, None),
        ("put", IMAGES, {"name": "ghcr.io/acme/other", "tag": "1.0"}, 422, "unknown_image"),
        ("put", IMAGES, {"name": "ghcr.io/acme/demo"}, 422, "invalid_request"),
        (
            "put",
            "/api/v1/apps/demo/stages/development/images/../../x",
            {"name": "a", "tag": "1"},
            404,
            None,
        ),
        (
            "delete",
            "/api/v1/apps/demo/stages/development/flags/..%2F..%2Fstageflow.yaml",
            None,
            404,
            None,
        ),
    ],
)
def test_bad_requests_are_clear_4xx_and_change_nothing(
    client, gitops_remote: Path, method, url, body, status, code
):
    before = remote_head(gitops_remote)
    audit_before = client.get("/api/v1/audit").get_json()["items"]

    response = getattr(client, method)(url, json=body)

    _assert_error(response, status, code)
    assert remote_head(gitops_remote) == before
    assert client.get("/api/v1/audit").get_json()["items"] == audit_before


def test_malformed_json_is_400(client, gitops_remote: Path):
    before = remote_head(gitops_remote)

    response = client.patch(FLAG, data="{not json", content_type="application/json")

    _assert_error(response, 400, "malformed_json")
    assert remote_head(gitops_remote) == before


def test_non_object_body_is_a_clear_4xx(client):
    response = client.patch(FLAG, json=["enabled", True])
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"]["message"]


def test_render_failure_is_422_with_kustomize_message_and_nothing_committed(
    client, gitops_remote: Path, stageflow
):
    sf, _ = stageflow
    overlay = "apps/demo/overlays/development/kustomization.yaml"
    broken = git("--git-dir", str(gitops_remote), "show", f"main:{overlay}") + (
        "patches:\n  - path: missing-patch.yaml\n"
    )
    third_party_commit(gitops_remote, overlay, broken, "break the overlay by hand")
    before = remote_head(gitops_remote)

    response = client.patch(FLAG, json={"enabled": False})

    error = _assert_error(response, 422, "render_failed")
    assert "missing-patch.yaml" in error["message"]
    assert "Nothing was committed" in error["message"]
    assert remote_head(gitops_remote) == before
    workdir = sf.repo.workdir
    assert git("status", "--porcelain", cwd=workdir) == ""
    assert git("rev-parse", "HEAD", cwd=workdir).strip() == before


def test_missing_token_is_401_and_bad_token_is_401(anonymous):
    missing = anonymous.get("/api/v1/pipeline")
    _assert_error(missing, 401, "token_missing")
    bad = anonymous.get("/api/v1/pipeline", headers={"Authorization": "Bearer nope"})
    _assert_error(bad, 401, "token_invalid")
    assert anonymous.get("/healthz").status_code == 200


def test_unknown_endpoint_and_method(client):
    _assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    _assert_error(client.delete("/api/v1/pipeline"), 405, "method_not_allowed")


def test_oversized_body_is_413(client, app):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post(
        "/api/v1/apps/demo/flags", json={"key": "big", "description": "x" * 5000}
    )
    _assert_error(response, 413, "body_too_large")


# -- every input validated before use (issue 11, part 2) ---------------------------------------

LONE_SURROGATE = b'"\\ud800"'
FLAGS = "/api/v1/apps/demo/flags"
# an admin token reads every stage: OFREP asks which one
OFREP_STAGE = {"X-Stageflow-App": "demo", "X-Stageflow-Stage": "development"}


@pytest.mark.parametrize(
    ("method", "url", "raw"),
    [
        ("post", FLAGS, b'{"key": "x", "description": ' + LONE_SURROGATE + b"}"),
        ("post", FLAGS, b'{"key": "x", "variants": {"a": ' + LONE_SURROGATE + b"}}"),
        ("post", FLAGS, b'{"key": "x", "variants": {' + LONE_SURROGATE + b': "a"}}'),
        ("patch", FLAG, b'{"targeting": {"if": [' + LONE_SURROGATE + b"]}}"),
        ("patch", "/api/v1/apps/demo/flags/new_ui", b'{"description": "ab\\udc00"}'),
        (
            "post",
            "/api/v1/tokens",
            b'{"name": "n", "owner": "o", "roles": ["viewer"], '
            b'"scope": {"apps": [' + LONE_SURROGATE + b"]}}",
        ),
        ("post", "/api/v1/apps/demo/promotions", b'{"to": "staging", "reason": "\\ud83d"}'),
        (
            "post",
            "/ofrep/v1/evaluate/flags",
            b'{"context": {"targetingKey": ' + LONE_SURROGATE + b"}}",
        ),
        ("post", "/ofrep/v1/evaluate/flags/new_ui", b'{"context": {"k": ' + LONE_SURROGATE + b"}}"),
        ("post", "/api/v1/webhooks/argocd", b'{"app": ' + LONE_SURROGATE + b"}"),
    ],
)
def test_lone_surrogates_in_a_json_body_are_400(client, gitops_remote: Path, method, url, raw):
    before = remote_head(gitops_remote)

    response = getattr(client, method)(
        url, data=raw, content_type="application/json", headers=OFREP_STAGE
    )

    message = _assert_bad_body(response, "invalid_unicode")
    assert "surrogate" in message and "UTF-8" in message
    assert remote_head(gitops_remote) == before


def _assert_bad_body(response, code: str) -> str:
    """A 400 in the API's error body, or in OFREP's own for the OFREP endpoints."""
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    if "errorCode" in body:
        assert body["errorCode"] == "PARSE_ERROR"
        return body["errorDetails"]
    error = _assert_error(response, 400, code)
    return error["message"]


def test_surrogate_pairs_are_fine(client):
    raw = b'{"key": "emoji_flag", "description": "\\ud83d\\ude80 launch \\\\ud800"}'
    response = client.post(FLAGS, data=raw, content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)
    matrix = client.get(FLAGS).get_json()
    assert matrix["emoji_flag"]["description"] == "\U0001f680 launch \\ud800"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit?actor=%ED%A0%80",
        "/api/v1/promotions?app=%ED%A0%80",
        "/api/v1/apps/%ED%A0%80",
        "/api/v1/apps/demo/stages/%ED%A0%80/checks",
        "/api/v1/apps/demo/stages/development/checks?kind=%ED%B0%80",
    ],
)
def test_surrogates_in_urls_are_4xx(client, url):
    response = client.get(url)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json()["error"]["message"]


def test_surrogate_bytes_in_headers_are_a_clear_4xx(client, gitops_remote: Path):
    before = remote_head(gitops_remote)
    headers = {"Idempotency-Key": "\xed\xa0\x80"}
    response = client.patch(FLAG, json={"enabled": False}, headers=headers)
    assert "Idempotency-Key" in _assert_error(response, 422)["message"]
    assert remote_head(gitops_remote) == before


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/audit?before=99999999999999999999",
        "/api/v1/audit?before=0",
        "/api/v1/audit?before=2147483648",
        "/api/v1/promotions?before=99999999999999999999",
        "/api/v1/promotions?before=-1",
        "/api/v1/apps/demo/stages/development/checks?before=99999999999999999999",
        "/api/v1/apps/demo/stages/development/checks?before=0",
        "/api/v1/audit?limit=99999999999999999999",
        "/api/v1/promotions?limit=0",
    ],
)
def test_integers_in_queries_have_ranges(client, query):
    error = _assert_error(client.get(query), 422, "invalid_request")
    assert "between" in error["message"] or "greater" in error["message"], error


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/audit?actor=" + "a" * 129,
        "/api/v1/audit?app=" + "a" * 64,
        "/api/v1/promotions?to=" + "s" * 64,
        "/api/v1/apps/demo/stages/development/checks?kind=" + "k" * 64,
    ],
)
def test_names_in_queries_have_lengths(client, query):
    error = _assert_error(client.get(query), 422, "invalid_request")
    assert "Longer than maximum length" in error["message"], error


@pytest.mark.parametrize(
    ("method", "url", "content_type"),
    [
        ("patch", FLAG, "text/plain"),
        ("patch", FLAG, "application/x-www-form-urlencoded"),
        ("post", FLAGS, "application/xml"),
        ("put", IMAGES, "multipart/form-data; boundary=x"),
        ("post", "/api/v1/tokens", "text/json"),
        ("post", "/ofrep/v1/evaluate/flags", "text/plain"),
        ("post", "/api/v1/webhooks/argocd", "text/plain"),
    ],
)
def test_a_body_that_is_not_json_is_415(client, gitops_remote: Path, method, url, content_type):
    before = remote_head(gitops_remote)

    response = getattr(client, method)(
        url, data=b'{"context": {}}', content_type=content_type, headers=OFREP_STAGE
    )

    assert response.status_code == 415, response.get_data(as_text=True)
    if url.startswith("/ofrep/"):  # OFREP's own error shape
        assert "application/json" in response.get_json()["errorDetails"]
    else:
        error = _assert_error(response, 415, "unsupported_media_type")
        assert "application/json" in error["message"]
        assert error["details"]["expected"] == "application/json"
    assert remote_head(gitops_remote) == before


def test_a_body_without_content_type_is_415(client):
    response = client.patch(FLAG, data=b'{"enabled": false}')
    _assert_error(response, 415, "unsupported_media_type")


def test_json_with_a_charset_or_suffix_is_fine(client):
    response = client.patch(
        FLAG, data=b'{"enabled": false}', content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    response = client.post("/api/v1/promotions/999/cancel")  # no body: no type needed
    _assert_error(response, 404)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("patch", FLAG, {"enabled": 1}),
        ("patch", FLAG, {"enabled": 0}),
        ("patch", FLAG, {"enabled": "true"}),
        ("patch", FLAG, {"enabled": "yes"}),
        ("patch", FLAG, {"enabled": 1.0}),
        ("post", "/api/v1/apps/demo/promotions", {"to": "staging", "dry_run": 1}),
        ("post", "/api/v1/apps/demo/promotions", {"to": "staging", "dry_run": "false"}),
    ],
)
def test_booleans_are_json_true_or_false_only(client, gitops_remote: Path, method, url, body):
    before = remote_head(gitops_remote)
    error = _assert_error(getattr(client, method)(url, json=body), 422, "invalid_request")
    assert "true or false" in error["message"], error
    assert remote_head(gitops_remote) == before


@pytest.mark.parametrize("owner", ["stageflow", "flux", "preview", "cli", "Stageflow", "FLUX"])
def test_token_owner_may_not_be_a_system_actor(client, owner):
    response = client.post(
        "/api/v1/tokens", json={"name": "ci", "owner": owner, "roles": ["editor"]}
    )
    error = _assert_error(response, 422, "invalid_request")
    assert "reserved" in error["message"]
    for name in ("stageflow", "flux", "preview", "cli"):
        assert name in error["message"]
    assert not [t for t in client.get("/api/v1/tokens").get_json() if t["name"] == "ci"]


@pytest.mark.parametrize(
    ("url", "raw"),
    [
        (FLAG, b'{"targeting": ' + b'{"if": [' * 40 + b"true" + b"]}" * 40 + b"}"),
        (FLAGS, b'{"key": "deep", "variants": {"a": ' + b"[" * 64 + b"]" * 64 + b"}}"),
        (
            "/api/v1/apps/demo/stages/development/checks",
            b'{"kind": "smoke", "revision": "abcd", "status": "passed", "details": '
            + b'{"a": ' * 64
            + b"1"
            + b"}" * 64
            + b"}",
        ),
        ("/ofrep/v1/evaluate/flags", b'{"context": ' + b'{"a": ' * 64 + b"1" + b"}" * 64 + b"}"),
    ],
)
def test_nesting_deeper_than_the_limit_is_400(client, gitops_remote: Path, url, raw):
    before = remote_head(gitops_remote)
    method = client.patch if url == FLAG else client.post
    response = method(url, data=raw, content_type="application/json", headers=OFREP_STAGE)
    message = _assert_bad_body(response, "too_deep")
    assert "32" in message
    assert remote_head(gitops_remote) == before


def test_the_cli_refuses_a_system_actor_as_owner_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from stageflow import cli

    monkeypatch.setenv("STAGEFLOW_DATA_DIR", str(tmp_path / "var"))
    argv = ["token", "create", "--name", "n", "--owner", "Stageflow", "--role", "viewer"]

    assert cli.main(argv) == 2

    said = capsys.readouterr().err
    assert "reserved" in said and "stageflow, flux, preview, cli" in said
    assert not (tmp_path / "var").exists()  # refused before anything was made


@pytest.mark.parametrize(
    "given", ["r" * 129, "\xed\xa0\x80", "a b", "x\x7f", "ü-🔑".encode().decode("latin-1")]
)
def test_an_unusable_request_id_is_replaced_not_echoed(client, given):
    response = client.get("/api/v1/pipeline", headers={"X-Request-Id": given})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] and response.headers["X-Request-Id"] != given


def test_a_plain_request_id_is_echoed(client):
    response = client.get("/api/v1/pipeline", headers={"X-Request-Id": "ci-run-42/step:3"})
    assert response.headers["X-Request-Id"] == "ci-run-42/step:3"
