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
