"""The dashboard's pages follow the event stream in a real browser (Chromium under Playwright).

A promotion waits for an approval on its page; the approval comes through the API, as another
person's would; the page shows it applied without a reload. The network shows one EventSource
connection and no polling while nothing happens; with the event-stream server down, the page
polls as it did before the stream and still gets there.
"""

from __future__ import annotations

import re
from typing import Any

from stageflow.web.live import STREAM_PATH
from tests.browser.conftest import LiveServer
from tests.browser.test_dashboard_browser import ADMIN, VIEWPORT, WAIT_MS, sign_in
from tests.builders import third_party_commit
from tests.conftest import SEED

POLL_PERIOD_S = 1.0  # the promotion page's fallback asks this often (app.js)


def approvals_into_staging(server: LiveServer) -> None:
    """Staging takes one approval; development runs its head with a passed smoke check, so a
    promotion into staging waits for that approval alone."""
    text = (SEED / "stageflow.yaml").read_text()
    text = text.replace("    namespace: staging\n", "    namespace: staging\n    approvals: 1\n")
    head = third_party_commit(server.remote, "stageflow.yaml", text, "staging takes approvals")
    stage = "/api/v1/apps/demo/stages/development"
    server.api("POST", f"{stage}/deployments", {"revision": head, "health": "healthy"})
    server.api("POST", f"{stage}/checks", {"kind": "smoke", "revision": head, "status": "passed"})


def open_waiting_promotion(page: Any, server: LiveServer) -> tuple[int, Any]:
    """Promote to staging from the pipeline; the promotion's page and its status badge."""
    from playwright.sync_api import expect

    sign_in(page, server.base, ADMIN)
    page.get_by_role("button", name="Promote to staging").click()
    page.wait_for_url(re.compile(r"/promotions/\d+$"))
    status = page.locator("#promotion-status")
    expect(status).to_have_text("pending approval")
    return int(page.url.rsplit("/", 1)[1]), status


def approve_as_bob(server: LiveServer, promotion_id: int) -> None:
    bob = server.api(
        "POST", "/api/v1/tokens", {"name": "bob", "owner": "bob", "roles": ["approver"]}
    )["token"]
    approved = server.api("POST", f"/api/v1/promotions/{promotion_id}/approvals", {}, token=bob)
    assert approved["status"] == "applied"


def test_an_approval_through_the_api_reaches_the_open_page_over_the_stream(
    browser: Any, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    approvals_into_staging(live_server)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.resource_type, r.url)))
    promotion_id, status = open_waiting_promotion(page, live_server)
    holder = page.locator("#promotion")
    expect(holder).to_have_attribute("data-stream", "open")
    page.evaluate("window.notReloaded = true")
    part = f"{live_server.base}/promotions/{promotion_id}"

    def asked() -> int:  # the page's requests for its part (the poll URL)
        return sum(1 for kind, url in requests if kind == "fetch" and url == part)

    # Nothing happens for longer than two poll periods: the page asks for nothing.
    page.wait_for_timeout(2.5 * POLL_PERIOD_S * 1000)
    assert asked() == 0
    approve_as_bob(live_server, promotion_id)
    expect(status).to_have_text("applied")
    assert page.evaluate("window.notReloaded === true")
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()
    # One EventSource connection to the event-stream server, signed in by the cookie, and at
    # most one request for the part per event of the app since the page was rendered.
    # (The pipeline page before it had its own.)
    streams = [url for kind, url in requests if kind == "eventsource" and "app=demo" in url]
    assert len(streams) == 1 and streams[0].startswith(f"{live_server.streams}{STREAM_PATH}")
    after = int(re.findall(r"after=(\d+)", streams[0])[0])
    heard = live_server.api("GET", f"/api/v1/events?app=demo&after={after}")["items"]
    assert 1 <= asked() <= len(heard), (asked(), [event["kind"] for event in heard])
    assert not console_errors, console_errors
    context.close()


def test_with_the_stream_server_down_the_page_polls_and_still_follows(
    browser: Any, live_server_without_streams: LiveServer
) -> None:
    from playwright.sync_api import expect

    server = live_server_without_streams
    approvals_into_staging(server)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.resource_type, r.url)))
    promotion_id, status = open_waiting_promotion(page, server)
    holder = page.locator("#promotion")
    expect(holder).not_to_have_attribute("data-stream", re.compile("^(open|connecting)$"))
    page.evaluate("window.notReloaded = true")
    part = f"{server.base}/promotions/{promotion_id}"
    page.wait_for_function(  # it polls: two requests for its part before anything changed
        "() => performance.getEntriesByType('resource')"
        f".filter(e => e.name === {part!r}).length >= 2"
    )
    approve_as_bob(server, promotion_id)
    expect(status).to_have_text("applied")
    assert page.evaluate("window.notReloaded === true")
    context.close()
