"""The dashboard's pages follow the event stream in a real browser (Chromium under Playwright).

A promotion waits for an approval on its page; the approval comes through the API, as another
person's would; the page shows it applied without a reload. The network shows one EventSource
connection and no polling while nothing happens; with the event-stream server down, the page
polls as it did before the stream and still gets there. The pipeline and a stage's page do the
same: quiet over the stream, and without it polling every few seconds (a 304 while nothing
changed), saying so, and not while hidden.
"""

from __future__ import annotations

import re
from typing import Any

from stageflow.web.live import POLL_SECONDS, STREAM_PATH
from tests.browser.conftest import LiveServer
from tests.browser.test_dashboard_browser import (
    ADMIN,
    VIEWPORT,
    WAIT_MS,
    critical_violations,
    sign_in,
)
from tests.builders import remote_head, third_party_commit
from tests.conftest import SEED

POLL_PERIOD_S = 1.0  # a waiting promotion's page asks this often without the stream
PAUSED = f"Live updates paused — refreshing every {POLL_SECONDS} s"  # the pipeline's and stage's


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


class PartRequests:
    """The page's requests for its live part (``X-Fragment``), as the network saw them."""

    def __init__(self, page: Any) -> None:
        self.sent: list[tuple[str, str | None]] = []  # (url, If-None-Match)
        self.answered: list[tuple[str, int]] = []  # (url, status)
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request: Any) -> None:
        if request.resource_type == "fetch" and request.headers.get("x-fragment"):
            self.sent.append((request.url, request.headers.get("if-none-match")))

    def _response(self, response: Any) -> None:
        if response.request.resource_type == "fetch" and response.request.headers.get("x-fragment"):
            self.answered.append((response.url, response.status))

    def to(self, url: str) -> list[int]:
        """The statuses of the answers for ``url`` so far."""
        return [status for at, status in self.answered if at == url]

    def wait_for(self, page: Any, url: str, status: int) -> None:
        """Until an answer for ``url`` with ``status`` arrives (bounded by the page's timeout)."""
        page.wait_for_event(
            "response",
            lambda r: (
                r.url == url and r.status == status and bool(r.request.headers.get("x-fragment"))
            ),
        )


def hide(page: Any, hidden: bool) -> None:
    """Tell the page it went to a background tab (or came back): headless Chromium keeps every
    page visible, so the document's visibilityState is set as a browser sets it, and the event
    fired."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, "visibilityState",
                {configurable: true, get: () => hidden ? "hidden" : "visible"});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_with_the_stream_server_down_the_pipeline_and_stage_pages_poll_and_follow(
    browser: Any, live_server_without_streams: LiveServer
) -> None:
    from playwright.sync_api import expect

    server = live_server_without_streams
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    parts = PartRequests(page)
    sign_in(page, server.base, ADMIN)

    # The pipeline: the stream is out of reach, and the page says it polls instead.
    holder = page.locator("#live")
    expect(holder).to_have_attribute("data-stream", re.compile("^(retrying|closed)$"))
    expect(page.get_by_role("status").filter(has_text="Live updates paused")).to_have_text(PAUSED)
    assert not critical_violations(page), critical_violations(page)
    page.evaluate("window.notReloaded = true")
    pipeline = f"{server.base}/"
    # Nothing changed since the page was rendered: the poll is answered 304 (the page came with
    # its part's tag) and the page stays as it is.
    parts.wait_for(page, pipeline, 304)
    assert all(tag for url, tag in parts.sent if url == pipeline), parts.sent
    # The cluster reports staging degraded: the open page shows it without a reload.
    staging = page.get_by_role("region", name="demo").get_by_role("article", name="staging")
    expect(staging).not_to_contain_text("degraded")
    head = remote_head(server.remote)
    server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/deployments",
        {"revision": head, "health": "degraded"},
    )
    expect(staging).to_contain_text("degraded", timeout=WAIT_MS)  # within a period or two
    assert page.evaluate("window.notReloaded === true")
    assert 200 in parts.to(pipeline) and 304 in parts.to(pipeline), parts.answered

    # A stage's page polls too; hidden, it asks for nothing; back in sight, it asks at once.
    page.get_by_role("link", name="staging", exact=True).click()
    expect(page.get_by_role("heading", name="demo in staging")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Live updates paused")).to_have_text(PAUSED)
    assert not critical_violations(page), critical_violations(page)
    page.evaluate("window.notReloaded = true")
    stage = f"{server.base}/apps/demo/stages/staging"
    parts.wait_for(page, stage, 304)
    hide(page, True)
    asked = len(parts.to(stage))
    server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/checks",
        {"kind": "smoke", "revision": head, "status": "passed", "summary": "7 passed"},
    )
    page.wait_for_timeout(1.5 * POLL_SECONDS * 1000)  # longer than a period: no ask came
    assert len(parts.to(stage)) == asked, parts.answered
    expect(page.get_by_role("cell", name="7 passed")).to_have_count(0)
    hide(page, False)
    # At once, not a period later: a bound well under the period, for a loaded machine.
    page.wait_for_event(
        "response", lambda r: r.url == stage and r.status == 200, timeout=0.8 * POLL_SECONDS * 1000
    )
    expect(page.get_by_role("cell", name="7 passed")).to_be_visible(timeout=WAIT_MS)
    assert page.evaluate("window.notReloaded === true")
    # The EventSource's attempts at the closed port are the browser's to log; nothing else.
    unexpected = [text for text in console_errors if "ERR_CONNECTION_REFUSED" not in text]
    assert not unexpected, unexpected
    context.close()


def test_with_the_stream_open_the_pipeline_asks_for_nothing_until_an_event(
    browser: Any, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    parts = PartRequests(page)
    sign_in(page, live_server.base, ADMIN)
    expect(page.locator("#live")).to_have_attribute("data-stream", "open")
    status = page.locator("#live-updates")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_have_text("")  # the stream is open: nothing to say
    page.evaluate("window.notReloaded = true")
    # Nothing happens for longer than a poll period: the page asks for nothing.
    page.wait_for_timeout(1.5 * POLL_SECONDS * 1000)
    assert parts.sent == []
    staging = page.get_by_role("region", name="demo").get_by_role("article", name="staging")
    head = remote_head(live_server.remote)
    live_server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/deployments",
        {"revision": head, "health": "degraded"},
    )
    expect(staging).to_contain_text("degraded")  # the event told it
    assert page.evaluate("window.notReloaded === true")
    assert 1 <= len(parts.sent) <= 2, parts.sent  # the event's ask (and a deferred one at most)
    expect(status).to_have_text("")
    context.close()


def test_when_the_stream_server_comes_back_the_pipeline_stops_polling(
    browser: Any, live_server_without_streams: LiveServer
) -> None:
    from playwright.sync_api import expect

    server = live_server_without_streams
    assert server.start_streams is not None
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    parts = PartRequests(page)
    sign_in(page, server.base, ADMIN)
    holder, status = page.locator("#live"), page.locator("#live-updates")
    expect(status).to_have_text(PAUSED)
    pipeline = f"{server.base}/"
    parts.wait_for(page, pipeline, 304)  # polling
    page.evaluate("window.notReloaded = true")
    server.start_streams()
    # The browser's EventSource tries again by itself (every few seconds) and gets through.
    expect(holder).to_have_attribute("data-stream", "open", timeout=WAIT_MS)
    expect(status).to_have_text("")
    asked = len(parts.sent)
    page.wait_for_timeout(1.5 * POLL_SECONDS * 1000)  # longer than a period: no ask came
    assert len(parts.sent) == asked, parts.sent
    # What changes now comes over the stream.
    staging = page.get_by_role("region", name="demo").get_by_role("article", name="staging")
    head = remote_head(server.remote)
    server.api(
        "POST",
        "/api/v1/apps/demo/stages/staging/deployments",
        {"revision": head, "health": "degraded"},
    )
    expect(staging).to_contain_text("degraded")
    assert page.evaluate("window.notReloaded === true")
    context.close()
