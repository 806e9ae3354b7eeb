"""The dashboard's pages through Flask's client: sessions, CSRF, and the API's access rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stageflow.api import access
from stageflow.services.context import Stageflow
from stageflow.web import session
from tests.builders import remote_head
from tests.e2e.conftest import ADMIN
from tests.e2e.test_policies import deployment_patch, patch_deployment, with_policies

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OPEN_PAGES = {"web.login", "web.logout", "web.static"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages add no queries of their own (the services' run on PostgreSQL too)."""
    return f"sqlite:///{tmp_path / 'stageflow.db'}"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def signed_in(app: Flask, token: str = ADMIN) -> FlaskClient:
    browser = app.test_client()
    form = browser.get("/login")
    answer = browser.post("/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 302, answer.text
    return browser


def make_token(client: FlaskClient, roles: list[str], **scope: list[str]) -> str:
    body: dict[str, Any] = {"name": "-".join(roles), "owner": "-".join(roles), "roles": roles}
    if scope:
        body["scope"] = scope
    answer = client.post("/api/v1/tokens", json=body)
    assert answer.status_code == 201, answer.json
    return str(answer.json["token"])


def test_every_page_is_decided_by_the_api_access_rule(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("web.") or rule.endpoint in OPEN_PAGES:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            mark = access.access_of(app.view_functions[rule.endpoint], method)
            assert mark is not None, f"{method} {rule.rule} has no @requires mark"
            assert mark.principal is session.session_token, rule.rule


def test_pages_send_you_to_sign_in_and_the_session_cookie_is_http_only(
    app: Flask, anonymous: FlaskClient
) -> None:
    answer = anonymous.get("/apps/demo/flags")
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/login?next=/apps/demo/flags")
    form = anonymous.get("/login")
    assert "API token" in form.text and "Sign in" in form.text
    signed = anonymous.post(
        "/login", data={"token": ADMIN, "csrf_token": csrf_of(form.text), "next": "//evil.example"}
    )
    assert signed.headers["Location"] == "/"  # never off-site
    cookie = next(c for c in signed.headers.getlist("Set-Cookie") if "stageflow_session" in c)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    for page in ("/", "/apps/demo/flags", "/apps/demo/stages/staging", "/promotions", "/audit"):
        assert anonymous.get(page).status_code == 200, page


def test_a_bad_token_or_a_missing_csrf_token_does_not_sign_in(anonymous: FlaskClient) -> None:
    form = anonymous.get("/login")
    assert anonymous.post("/login", data={"token": ADMIN}).status_code == 403
    wrong = anonymous.post("/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert wrong.status_code == 401
    assert "not known" in wrong.text
    assert "stageflow_session" not in "".join(wrong.headers.getlist("Set-Cookie"))


def test_a_post_without_the_csrf_token_is_refused(
    app: Flask, gitops_remote: Any, stageflow: tuple[Stageflow, Any]
) -> None:
    browser = signed_in(app)
    before = remote_head(gitops_remote)
    url = "/apps/demo/stages/development/flags/new_ui"
    assert browser.post(url, data={"enabled": "false"}).status_code == 403
    assert browser.post(url, data={"enabled": "false", "csrf_token": "x" * 64}).status_code == 403
    assert remote_head(gitops_remote) == before
    assert browser.post("/logout").status_code == 403  # signing out needs it too


def test_toggling_a_cell_commits_and_answers_the_new_cell(app: Flask, gitops_remote: Any) -> None:
    browser = signed_in(app)
    token = csrf_of(browser.get("/apps/demo/flags").text)
    answer = browser.post(
        "/apps/demo/stages/development/flags/experimental_cache",
        data={"enabled": "false", "csrf_token": token},
        headers={"X-Fragment": "1"},
    )
    assert answer.status_code == 200, answer.text
    head = remote_head(gitops_remote)
    assert f"committed <code>{head[:7]}</code>" in answer.text
    assert 'aria-label="experimental_cache in development"' in answer.text
    assert 'aria-checked="false"' in answer.text
    # Turning an experimental flag ON in staging is refused by the lifecycle policy (409).
    refused = browser.post(
        "/apps/demo/stages/staging/flags/experimental_cache",
        data={"enabled": "true", "csrf_token": token},
        headers={"X-Fragment": "1"},
    )
    assert refused.status_code == 409
    assert remote_head(gitops_remote) == head


def test_a_viewer_gets_no_buttons_and_its_posts_are_refused_and_audited(
    app: Flask, client: FlaskClient
) -> None:
    browser = signed_in(app, make_token(client, ["viewer"]))
    pipeline = browser.get("/").text
    assert "Promote to" not in pipeline
    matrix = browser.get("/apps/demo/flags").text
    assert matrix.count('role="switch"') == matrix.count(" disabled aria-describedby") == 9
    refused = browser.post(
        "/apps/demo/stages/staging/promote", data={"csrf_token": csrf_of(pipeline)}
    )
    assert refused.status_code == 403
    assert "(missing_role)" in refused.text
    entries = client.get("/api/v1/audit?actor=viewer").json["items"]
    assert entries[0]["action"] == "refused"
    assert entries[0]["target"] == "POST /apps/<app>/stages/<stage>/promote"


def test_a_stage_scoped_token_sees_its_stages_and_no_others(
    app: Flask, client: FlaskClient
) -> None:
    token = make_token(client, ["promoter"], stages=["staging", "production"])
    browser = signed_in(app, token)
    pipeline = browser.get("/").text
    assert "Promote to production" in pipeline
    assert "Promote to staging" not in pipeline  # development lies outside: no boundary there
    assert browser.get("/apps/demo/stages/development").status_code == 403
    assert browser.get("/apps/demo/stages/staging").status_code == 200
    refused = browser.post(
        "/apps/demo/stages/staging/flags/new_ui",
        data={"enabled": "false", "csrf_token": csrf_of(pipeline)},
    )
    assert refused.status_code == 403  # a promoter is no editor


def test_promotion_pages_open_wait_and_poll_with_an_etag(
    app: Flask, client: FlaskClient, gitops_remote: Any
) -> None:
    browser = signed_in(app)
    token = csrf_of(browser.get("/").text)
    opened = browser.post("/apps/demo/stages/staging/promote", data={"csrf_token": token})
    assert opened.status_code == 303
    page_url = opened.headers["Location"]
    page = browser.get(page_url)
    assert ">blocked<" in page.text and "data-poll" in page.text
    assert "Re-evaluate" in page.text and "Cancel" in page.text and "Approve" not in page.text
    part = browser.get(page_url, headers={"X-Fragment": "1"})
    assert part.status_code == 200 and "<html" not in part.text
    etag = part.headers["ETag"]
    same = browser.get(page_url, headers={"X-Fragment": "1", "If-None-Match": etag})
    assert same.status_code == 304
    cancelled = browser.post(page_url + "/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    after = browser.get(page_url, headers={"X-Fragment": "1", "If-None-Match": etag})
    assert after.status_code == 200 and ">cancelled<" in after.text
    assert "data-live" not in after.text  # settled: no more asking each second
    listed = browser.get("/promotions?status=cancelled").text
    assert page_url in listed
    assert page_url not in browser.get("/promotions?status=applied").text
    history = browser.get("/audit?actor=admin").text
    assert "promotion.cancelled" in history


def test_holds_and_freezes_are_banners_on_the_pipeline(app: Flask, client: FlaskClient) -> None:
    assert (
        client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "db move"}).status_code
        == 201
    )
    assert (
        client.post("/api/v1/stages/production/freeze", json={"reason": "launch"}).status_code
        == 201
    )
    page = signed_in(app).get("/").text
    assert "On hold:</strong> db move" in page
    assert "Frozen:</strong> launch" in page


def test_an_approver_approves_from_the_page_but_never_its_own(
    app: Flask, client: FlaskClient
) -> None:
    requester = signed_in(app)
    opened = requester.post(
        "/apps/demo/stages/production/promote",
        data={"csrf_token": csrf_of(requester.get("/").text)},
    )
    page_url = opened.headers["Location"]
    own = requester.get(page_url).text
    assert ">blocked<" in own and "Approve</button>" not in own  # four eyes: not the requester
    approver = signed_in(app, make_token(client, ["approver"]))
    page = approver.get(page_url).text
    assert "Approve</button>" in page
    assert "Re-evaluate" not in page and "Cancel</button>" not in page  # an approver only approves
    approved = approver.post(
        page_url + "/approve", data={"csrf_token": csrf_of(page), "comment": "looks good"}
    )
    assert approved.status_code == 303
    after = approver.get(page_url).text
    assert "approver at " in after and "“looks good”" in after
    assert "Approve</button>" not in after  # approvals count distinct people: once is enough


def test_a_promotion_page_lists_every_parity_difference(
    app: Flask, client: FlaskClient, gitops_remote: Any
) -> None:
    with_policies(
        gitops_remote,
        "  - builtin: namespace-isolation\n    action: warn\n",
        parity="{with: staging, min_replica_ratio: 0.5, action: enforce}",
    )
    patch_deployment(gitops_remote, "production", deployment_patch("  replicas: 4\n"))
    patch_deployment(gitops_remote, "staging", deployment_patch("  replicas: 1\n"))
    opened = client.post("/api/v1/apps/demo/promotions", json={"to": "production"}).get_json()
    assert opened["status"] == "blocked"
    differences = next(g for g in opened["gates"] if g["kind"] == "parity")["evidence"]
    page = signed_in(app).get(f"/promotions/{opened['id']}").text
    section = page.split('<h2 id="parity">', 1)[1].split("</section>", 1)[0]
    assert section.startswith("Parity: staging against production")
    items = [re.sub(r"<[^>]+>", "", item) for item in re.findall(r"<li>(.*?)</li>", section, re.S)]
    # every difference, not only the five the gate's message names, each with its rule
    assert len(items) == len(differences["differences"])
    assert "fails replicas Deployment/demo: spec.replicas: 1 → 4" in items
    assert "action is <b>enforce</b>" in section
    # the gate's evidence cell points at the list instead of dumping it as JSON
    assert f'<a href="#parity">{len(items)}, listed below</a>' in page
    assert "&#34;difference&#34;" not in page and '"difference"' not in page
