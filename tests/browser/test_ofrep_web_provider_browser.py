"""``@openfeature/ofrep-web-provider`` in a real browser follows Stageflow's event stream.

The provider opens the bulk answer's ``eventStreams`` with the browser's own ``EventSource``,
which cannot send an ``Authorization`` header: the URL's ticket (services.stream_tickets) is the
credential. The app's page is served from an origin of its own (``localhost``; Stageflow's API
and stream server are on ``127.0.0.1``), so every request crosses origins as an app's would. A
toggle made through the API while the page is open reaches it as a configuration change,
re-fetched with the notice's etag as ``flagConfigEtag``, without a poll.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser.conftest import LiveServer
from tests.e2e.interop import node_harness

PAGE = Path(__file__).parent / "ofrep"
WAIT_MS = 15_000


class _AppFiles(http.server.SimpleHTTPRequestHandler):
    """The page and its ES modules: ``/`` from tests/browser/ofrep, ``/node_modules/`` from the
    interop harness (the npm packages as installed)."""

    def __init__(self, *args: Any, modules: Path, **kwargs: Any) -> None:
        self.modules = modules
        super().__init__(*args, directory=str(PAGE), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/node_modules/"):
            local = (self.modules / path.split("?", 1)[0].removeprefix("/node_modules/")).resolve()
            if self.modules in local.parents:
                return str(local)
            return str(self.modules / "missing")
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def app_origin() -> Iterator[str]:
    """Another origin than Stageflow's: ``localhost`` on a port of its own."""
    modules = (node_harness() / "node_modules").resolve()
    handler = functools.partial(_AppFiles, modules=modules)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)
    server.server_close()


def test_the_web_provider_hears_a_toggle_over_its_stream_in_a_browser(
    browser: Any, live_server: LiveServer, app_origin: str
) -> None:
    token = live_server.api(
        "POST",
        "/api/v1/tokens",
        {
            "name": "web-app",
            "owner": "web-app",
            "roles": ["client"],
            "scope": {"apps": ["demo"], "stages": ["development"]},
        },
    )["token"]
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{app_origin}/index.html?{urlencode({'api': live_server.base, 'token': token})}")
    page.wait_for_function("window.seen && window.seen.ready && window.seen.opened > 0")
    seen = page.evaluate("window.seen")
    assert seen["values"] == [True]  # new_ui is on in the starter's development stage
    (stream,) = seen["streams"]
    assert live_server.streams is not None and stream.startswith(live_server.streams)
    assert "ticket=" in stream and token not in stream
    bulk_before = len(seen["bulk"])

    revision = live_server.api(
        "PATCH", "/api/v1/apps/demo/stages/development/flags/new_ui", {"enabled": False}
    )["revision"]
    toggled = time.perf_counter()
    page.wait_for_function("window.seen.values.length > 1")
    heard = time.perf_counter()
    seen = page.evaluate("window.seen")
    assert seen["values"] == [True, False]
    assert page.locator("#new_ui").text_content() == "false"
    refetches = seen["bulk"][bulk_before:]
    assert refetches and f"flagConfigEtag={revision}" in refetches[0]
    assert seen["errors"] == 0 and seen["opened"] == 1  # one connection, never dropped
    assert not console_errors, console_errors
    print(f"the toggle's 200 → the page's new value: {1000 * (heard - toggled):.0f} ms")
    context.close()
