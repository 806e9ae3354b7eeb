"""Operate: liveness, readiness that names what is broken, metrics, the OpenAPI document, docs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from stageflow import bootstrap
from stageflow.api import create_app
from stageflow.config import Settings
from tests.builders import remote_head
from tests.e2e.conftest import ADMIN

TOGGLE = "/api/v1/apps/demo/stages/development/flags/beta_api"

# API.md, "Read", "Change" and the token and audit rows of "Report" / "Administer"
CONTRACT = {
    ("get", "/api/v1/pipeline"),
    ("get", "/api/v1/apps"),
    ("get", "/api/v1/apps/{app}"),
    ("get", "/api/v1/apps/{app}/flags"),
    ("get", "/api/v1/apps/{app}/stages/{stage}/flags"),
    ("post", "/api/v1/apps/{app}/flags"),
    ("patch", "/api/v1/apps/{app}/flags/{key}"),
    ("patch", "/api/v1/apps/{app}/stages/{stage}/flags/{key}"),
    ("delete", "/api/v1/apps/{app}/stages/{stage}/flags/{key}"),
    ("put", "/api/v1/apps/{app}/stages/{stage}/images"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/audit"),
}
WRITES = {(m, p) for m, p in CONTRACT if m != "get"}


def _template(path: str) -> str:
    """The path with its parameter names blanked, so {id} and {token_id} compare equal."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    """The value of one sample in /metrics (0 when it is not there yet)."""
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def app_client(settings: Settings) -> Iterator[FlaskClient]:
    bootstrap.prepare(settings)
    sf, readiness = bootstrap.build(settings)
    app = create_app(settings, sf, readiness)
    app.config["TESTING"] = True
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
    yield client
    sf.close()


@pytest.fixture
def misconfigured(settings: Settings) -> Iterator[FlaskClient]:
    """The app composed with a kustomize command that does not exist."""
    yield from app_client(settings.with_overrides(kustomize="/nonexistent/kustomize"))


def test_healthz_needs_no_token(anonymous):
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


PARTS = {"state", "remote", "files", "database", "disk", "kustomize"}


def test_readyz_names_every_dependency(anonymous):
    for path in ("/readyz", "/readyz/writes"):
        response = anonymous.get(path)

        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["status"] == "ready" and body["degraded"] == []
        assert set(body["checks"]) >= PARTS
        for name in PARTS:
            assert body["checks"][name]["ok"] is True, body
        assert re.search(r"\b[0-9a-f]{40}\b", body["checks"]["remote"]["detail"])


def test_readyz_stays_200_without_the_remote_and_writes_name_it(anonymous, gitops_remote: Path):
    shutil.rmtree(gitops_remote)

    reads = anonymous.get("/readyz")
    writes = anonymous.get("/readyz/writes")

    # reads are served from the clone: the pod stays in the load balancer
    assert reads.status_code == 200, reads.get_json()
    assert reads.get_json()["degraded"] == ["remote"]
    assert reads.get_json()["checks"]["remote"]["ok"] is False
    assert str(gitops_remote) in reads.get_json()["checks"]["remote"]["detail"]
    assert writes.status_code == 503
    error = writes.get_json()["error"]
    assert error["code"] == "not_ready"
    assert "remote" in error["message"] and str(gitops_remote) in error["message"]
    assert error["details"]["remote"]["ok"] is False
    assert error["details"]["database"]["ok"] is True
    assert error["details"]["kustomize"]["ok"] is True


def test_a_write_without_the_remote_is_503(client, gitops_remote: Path):
    shutil.rmtree(gitops_remote)

    response = client.patch(TOGGLE, json={"enabled": False})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "git_unavailable"


def test_readyz_is_503_naming_kustomize_when_it_is_misconfigured(misconfigured, gitops_remote):
    before = remote_head(gitops_remote)

    assert misconfigured.get("/readyz").status_code == 200  # reads need no kustomize
    response = misconfigured.get("/readyz/writes")

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert "kustomize" in error["message"]
    assert "/nonexistent/kustomize" in error["message"]
    assert error["details"]["kustomize"]["ok"] is False
    assert error["details"]["remote"]["ok"] is True
    # and a write that needs a render is a 503 too, committing nothing
    write = misconfigured.patch(TOGGLE, json={"enabled": False})
    assert write.status_code == 503, write.get_json()
    assert write.get_json()["error"]["code"] == "kustomize_unavailable"
    assert remote_head(gitops_remote) == before


def test_metrics_count_requests_pushes_and_renders(client):
    requests_before = metric(
        client,
        "stageflow_http_requests_total",
        method="PATCH",
        endpoint="/api/v1/apps/<app>/stages/<stage>/flags/<key>",
        status="200",
    )
    pushes_before = metric(client, "stageflow_git_push_seconds_count", outcome="ok")
    renders_before = metric(client, "stageflow_kustomize_render_seconds_count", outcome="ok")

    assert client.patch(TOGGLE, json={"enabled": False}).status_code == 200

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert (
        metric(
            client,
            "stageflow_http_requests_total",
            method="PATCH",
            endpoint="/api/v1/apps/<app>/stages/<stage>/flags/<key>",
            status="200",
        )
        == requests_before + 1
    )
    assert metric(client, "stageflow_git_push_seconds_count", outcome="ok") == pushes_before + 1
    assert (
        metric(client, "stageflow_kustomize_render_seconds_count", outcome="ok")
        >= renders_before + 1
    )
    text = response.get_data(as_text=True)
    assert "stageflow_git_push_seconds_bucket{" in text
    assert "stageflow_kustomize_render_seconds_bucket{" in text


def test_metrics_need_no_token(anonymous):
    assert anonymous.get("/metrics").status_code == 200


def test_openapi_lists_the_contract_with_the_error_schema(anonymous):
    response = anonymous.get("/openapi.json")

    assert response.status_code == 200
    spec = response.get_json()
    published = {
        (method, _template(path))
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    missing = {(m, p) for m, p in CONTRACT if (m, _template(p)) not in published}
    assert not missing, f"API.md paths missing from /openapi.json: {sorted(missing)}"

    schemas = spec["components"]["schemas"]
    error = schemas["Error"]
    assert error["required"] == ["error"]
    detail = schemas[error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
    assert {"code", "message", "details"} <= set(detail["properties"])
    assert set(detail["required"]) >= {"code", "message"}
    error_ref = "#/components/schemas/Error"
    assert spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"][
        "schema"
    ] == {"$ref": error_ref}
    for method, path in CONTRACT:
        (operation,) = [
            ops[method] for p, ops in spec["paths"].items() if _template(p) == _template(path)
        ]
        assert operation.get("summary"), (method, path)
        # every error status listed (no catch-all `default`, so that schemathesis's status
        # check means something), each with the error body
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        expected = {"400", "401", "403", "409", "422", "503"}
        if method != "get":
            expected |= {"413", "415"}
        if "{" in path and path.startswith("/api/"):
            expected.add("404")
        if path.startswith("/api/"):
            assert expected <= set(responses), (method, path, sorted(responses))
            for status in expected:
                answer = responses[status]
                if "$ref" in answer:  # a view's own alt_response
                    answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_ref}, (method, path, status)
        if (method, path) in WRITES and method != "delete":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert "$ref" in body, (method, path)


def test_docs_serve_html_listing_the_api(anonymous):
    response = anonymous.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert page.startswith("<!doctype html>")
    assert "/openapi.json" in page
    for _, path in CONTRACT:
        if "{id}" not in path:
            assert path in page, path


def test_html_answers_carry_the_security_headers(client):
    page = client.get("/docs")

    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # the page runs no script


def test_an_answer_with_a_token_secret_is_never_stored_or_sniffed(client):
    made = client.post("/api/v1/tokens", json={"name": "ci", "owner": "ci", "roles": ["viewer"]})

    assert made.status_code == 201 and made.get_json()["token"]
    assert made.headers["Cache-Control"] == "no-store"
    assert made.headers["X-Content-Type-Options"] == "nosniff"
    listed = client.get("/api/v1/tokens")
    assert "token" not in listed.get_json()[0]
