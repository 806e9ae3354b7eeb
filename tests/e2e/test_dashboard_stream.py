"""The dashboard's event stream: the streams server (uvicorn, in a thread) signed in by the
session cookie the dashboard (Flask) set, the token's scope deciding what a page hears, and
Last-Event-ID resuming; the pages that name it and the fragments they ask for on each notice."""

from __future__ import annotations

import dataclasses
import html
import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from stageflow import bootstrap
from stageflow.config import Settings
from stageflow.web.live import POLL_SECONDS, STREAM_PATH, WAITING_POLL_SECONDS
from stageflow.web.session import SESSION_COOKIE
from tests.builders import make_token, remote_head
from tests.e2e.test_dashboard import csrf_of, signed_in
from tests.e2e.test_event_streams import Listener, StreamServer

PAGE_ORIGIN = "http://127.0.0.1:8080"  # the dashboard, as the browser sends it in `Origin`
PUBLIC = "https://stageflow.example.com"  # STAGEFLOW_PUBLIC_URL
STREAM_PORT = 18181  # what the pages name; the Flask tests render, nobody connects to it


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stageflow.db'}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, stream_port=STREAM_PORT)


@pytest.fixture
def streams(settings: Settings) -> Iterator[StreamServer]:
    sf, _ = bootstrap.build(settings)  # the streams process: its own Stageflow, same ledger
    server = StreamServer(sf, public_url=PUBLIC, recheck=0.0)
    yield server
    server.stop()
    sf.close()


def session_of(app: Flask, token: str | None = None) -> str:
    """Sign in to the dashboard with Flask's client; the session cookie it set."""
    browser = signed_in(app, token) if token else signed_in(app)
    cookie = browser.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    return cookie.value


def follow(streams: StreamServer, session: str | None, query: str = "", **headers: str) -> Listener:
    sent = {"Origin": PAGE_ORIGIN, **headers}
    if session is not None:
        sent["Cookie"] = f"{SESSION_COOKIE}={session}"
    return Listener(f"{streams.base}{STREAM_PATH}{query}", sent)


def refusal(streams: StreamServer, session: str | None, **headers: str) -> int:
    """The status a stream that should not open answers with."""
    listener = follow(streams, session, **headers)
    listener.close()
    return listener.status


def kinds_until(listener: Listener, last: str) -> list[tuple[str, dict[str, Any]]]:
    """The notices up to the first of kind ``last``."""
    seen: list[tuple[str, dict[str, Any]]] = []
    while not seen or seen[-1][1]["kind"] != last:
        event_id, data, _ = listener.next()
        seen.append((event_id, data))
    return seen


def record(client: FlaskClient, stage: str, kind: str = "smoke") -> None:
    """A passed check in ``stage`` (of the remote's head: a `check_passed` event there)."""
    revision = remote_head(client.application.extensions["stageflow.settings"].git_url)
    done = client.post(
        f"/api/v1/apps/demo/stages/{stage}/checks",
        json={"kind": kind, "revision": revision, "status": "passed"},
    )
    assert done.status_code == 201, done.get_json()


def test_a_page_hears_of_its_app_and_resumes_after_a_reconnect(
    app: Flask, client: FlaskClient, streams: StreamServer
) -> None:
    listener = follow(streams, session_of(app), "?app=demo")
    try:
        assert listener.status == 200
        assert listener.response.headers["access-control-allow-origin"] == PAGE_ORIGIN
        assert listener.response.headers["access-control-allow-credentials"] == "true"
        time.sleep(0.2)  # connected and watching
        opened = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"})
        answered = time.perf_counter()
        assert opened.status_code in (200, 201), opened.get_json()
        promotion = opened.get_json()
        assert promotion["status"] == "blocked"  # development has no reports yet
        event_id, notice = kinds_until(listener, "promotion_blocked")[-1]
        print(f"promotion_blocked {1000 * (time.perf_counter() - answered):.1f} ms after the 200")
        assert notice["subject"] == str(promotion["id"]) and notice["app"] == "demo"
        assert notice["stage"] == "staging" and event_id == str(notice["id"])
        assert set(notice) == {"id", "kind", "app", "stage", "subject", "revision"}

        # away for a while: what happened meanwhile comes first on the reconnect, in order
        listener.close()
        assert client.post(f"/api/v1/promotions/{promotion['id']}/cancel").status_code == 200
        toggled = client.patch(
            "/api/v1/apps/demo/stages/development/flags/new_ui", json={"enabled": False}
        )
        assert toggled.status_code == 200
        again = follow(streams, session_of(app), "?app=demo", **{"Last-Event-ID": event_id})
        try:
            missed = kinds_until(again, "state_changed")
            assert [data["kind"] for _, data in missed] == ["promotion_cancelled", "state_changed"]
            assert missed[1][1]["revision"] == toggled.get_json()["revision"]
            assert int(missed[0][0]) > int(event_id)
        finally:
            again.close()
    finally:
        listener.close()


def test_after_replays_what_happened_since_the_page_was_rendered(
    app: Flask, client: FlaskClient, streams: StreamServer
) -> None:
    page = signed_in(app).get("/apps/demo/stages/development").text
    found = re.search(r'data-events="[^"]*after=(\d+)"', page)
    assert found, "the stage page names no event stream"
    record(client, "development")  # between the render and the connection
    listener = follow(streams, session_of(app), f"?app=demo&stage=development&after={found[1]}")
    try:
        _, notice, _ = listener.next()
        assert notice["kind"] == "check_passed" and notice["stage"] == "development"
    finally:
        listener.close()


def test_the_token_scope_and_the_page_decide_what_is_heard(
    app: Flask, client: FlaskClient, streams: StreamServer
) -> None:
    staging_viewer = make_token(client, "sam", ["viewer"], stages=["staging"])
    scoped = follow(streams, session_of(app, staging_viewer))
    narrowed = follow(streams, session_of(app), "?app=demo&stage=staging")
    everything = follow(streams, session_of(app))
    try:
        time.sleep(0.2)
        record(client, "development")
        record(client, "staging", "load")
        for listener in (scoped, narrowed):  # development's check never reaches them
            _, notice, _ = listener.next()
            assert (notice["kind"], notice["stage"]) == ("check_passed", "staging")
        heard = [everything.next()[1]["stage"], everything.next()[1]["stage"]]
        assert heard == ["development", "staging"]
    finally:
        for listener in (scoped, narrowed, everything):
            listener.close()


def test_no_session_no_dashboard_role_or_another_site_is_refused(
    app: Flask, client: FlaskClient, streams: StreamServer
) -> None:
    assert refusal(streams, None) == 401
    assert refusal(streams, "sf_not_a_token") == 401
    evaluator = make_token(client, "svc", ["client"])  # evaluates flags; may not sign in
    assert refusal(streams, evaluator) == 403
    session = session_of(app)
    assert refusal(streams, session, Origin="http://evil.example") == 403
    assert refusal(streams, session, Origin="null") == 403
    public = follow(streams, session, Origin=PUBLIC)
    try:
        assert public.status == 200
        assert public.response.headers["access-control-allow-origin"] == PUBLIC
    finally:
        public.close()
    preflight = httpx.options(
        f"{streams.base}{STREAM_PATH}",
        headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Headers": "last-event-id"},
    )
    assert preflight.status_code == 204
    assert "Last-Event-ID" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-allow-credentials"] == "true"


def test_a_revoked_token_hears_nothing_more(
    app: Flask, client: FlaskClient, streams: StreamServer
) -> None:
    created = client.post(
        "/api/v1/tokens", json={"name": "vic", "owner": "vic", "roles": ["viewer"]}
    ).get_json()
    listener = follow(streams, session_of(app, created["token"]))
    try:
        time.sleep(0.2)
        record(client, "development")
        assert listener.next()[1]["kind"] == "check_passed"
        assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 200
        time.sleep(0.6)  # past the token cache's half second
        record(client, "staging", "load")
        with pytest.raises(queue.Empty):
            listener.next(timeout=1.0)
        assert refusal(streams, created["token"]) == 401  # the reconnect
    finally:
        listener.close()


def test_live_pages_name_their_stream_and_answer_their_part(
    app: Flask, client: FlaskClient
) -> None:
    browser = signed_in(app)
    stream = f"http://localhost:{STREAM_PORT}"  # the host the page was opened at
    pipeline = browser.get("/")
    assert f"connect-src 'self' {stream}" in pipeline.headers["Content-Security-Policy"]
    assert f'data-events="{stream}{STREAM_PATH}?after=' in pipeline.text
    stage = browser.get("/apps/demo/stages/staging?hours=1").text
    assert "app=demo&amp;stage=staging&amp;after=" in stage
    assert 'data-refresh="/apps/demo/stages/staging?hours=1"' in stage
    opened = browser.post("/apps/demo/stages/staging/promote", data={"csrf_token": csrf_of(stage)})
    promotion = browser.get(opened.headers["Location"]).text
    assert "data-poll" in promotion and f"{STREAM_PATH}?app=demo&amp;after=" in promotion

    part = browser.get("/", headers={"X-Fragment": "1"})
    assert part.status_code == 200 and "<html" not in part.text and "Promote to" in part.text
    unchanged = browser.get("/", headers={"X-Fragment": "1", "If-None-Match": part.headers["ETag"]})
    assert unchanged.status_code == 304
    assert client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "db move"})
    changed = browser.get("/", headers={"X-Fragment": "1", "If-None-Match": part.headers["ETag"]})
    assert changed.status_code == 200 and "db move" in changed.text


def test_live_pages_carry_their_part_tag_poll_period_and_a_quiet_status(
    app: Flask, client: FlaskClient
) -> None:
    """The script's first ask (an event, or a poll without the stream) is a 304 when nothing
    moved since the page was rendered; the period to poll at and an empty status region (the
    script fills it only while the stream is out of reach) come with the page."""
    browser = signed_in(app)
    token = csrf_of(browser.get("/").text)
    opened = browser.post("/apps/demo/stages/staging/promote", data={"csrf_token": token})
    promotion = opened.headers["Location"]
    tags: dict[str, str] = {}
    for url, holder in (
        ("/", "live"),
        ("/apps/demo/stages/staging?hours=1", "live"),
        (promotion, "promotion"),
    ):
        page = browser.get(url).text
        tag = re.search(rf'id="{holder}"[^>]* data-etag="([^"]+)"', page)
        assert tag is not None, url
        assert f'data-poll="{POLL_SECONDS}"' in page and f'data-status="{holder}-updates"' in page
        assert f'<p id="{holder}-updates" class="live-updates small" role="status"></p>' in page
        tags[url] = html.unescape(tag[1])
        same = browser.get(url, headers={"X-Fragment": "1", "If-None-Match": tags[url]})
        assert same.status_code == 304, url
    # A waiting promotion's part asks to be polled faster than the page; settled, it does not.
    assert f'data-live data-poll="{WAITING_POLL_SECONDS}"' in browser.get(promotion).text
    assert client.post("/api/v1/apps/demo/stages/staging/hold", json={"reason": "db move"})
    changed = browser.get("/", headers={"X-Fragment": "1", "If-None-Match": tags["/"]})
    assert changed.status_code == 200 and "db move" in changed.text
    browser.post(promotion + "/cancel", data={"csrf_token": token})
    assert "data-live" not in browser.get(promotion).text


def test_with_streams_off_pages_poll_as_before(app: Flask, settings: Settings) -> None:
    app.extensions["stageflow.settings"] = dataclasses.replace(settings, stream_port=0)
    browser = signed_in(app)
    pipeline = browser.get("/")
    assert "connect-src" not in pipeline.headers["Content-Security-Policy"]
    assert "data-events" not in pipeline.text and 'data-refresh="/"' in pipeline.text
    token = csrf_of(pipeline.text)
    opened = browser.post("/apps/demo/stages/staging/promote", data={"csrf_token": token})
    promotion = browser.get(opened.headers["Location"]).text
    assert "data-poll" in promotion and "data-events" not in promotion
