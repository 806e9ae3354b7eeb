"""A running Stageflow over HTTP with a real Git remote, and Debian's Chromium under Playwright.

Playwright's own browser download does not work on these machines: the tests drive the `chromium`
Debian package (`.ci/run` installs it) through ``executable_path``; without it they are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from stageflow import bootstrap
from stageflow.api import create_app
from stageflow.config import Settings
from tests.e2e.test_event_streams import StreamServer
from tests.integration.conftest import prometheus  # noqa: F401 (the fixture, shared)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = "test-admin-token-0123456789"


@dataclass
class LiveServer:
    """The dashboard and the API served by werkzeug on 127.0.0.1, in a thread of this process."""

    base: str
    remote: Path
    metrics: bool  # a real Prometheus answers the charts' range queries
    streams: str | None = None  # the event-stream server's origin, when one runs
    # Starts the event-stream server on the port the pages name, when none runs yet.
    start_streams: Callable[[], None] | None = None

    def api(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> Any:
        """Call the HTTP API as a client (CI, the cluster's reporter) would."""
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture
def metrics_url(request: pytest.FixtureRequest) -> str | None:
    """The integration tests' real Prometheus (backfilled traffic of development), if installed."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        return None
    return str(request.getfixturevalue("prometheus"))


def _closed_port() -> int:
    """A port nobody listens on: the event-stream server out of reach."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    tmp_path: Path, gitops_remote: Path, metrics_url: str | None, *, streams: bool
) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'stageflow.db'}",
        git_url=str(gitops_remote),
        git_branch="main",
        git_head_ttl=0.0,
        admin_token=ADMIN,
        prometheus_url=metrics_url,  # the starter's metric gates stay off: charts only
    )
    bootstrap.prepare(settings)
    # The event-stream server as `stageflow serve` runs it: its own Stageflow, the same ledger.
    stream_sf, _ = bootstrap.build(settings)
    started = [StreamServer(stream_sf)] if streams else []
    port = int(started[0].base.rsplit(":", 1)[1]) if started else _closed_port()
    settings = dataclasses.replace(settings, stream_port=port)
    sf, readiness = bootstrap.build(settings)
    server = make_server("127.0.0.1", 0, create_app(settings, sf, readiness), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveServer(
        f"http://127.0.0.1:{server.server_port}",
        gitops_remote,
        metrics_url is not None,
        started[0].base if started else None,
    )
    if not started:

        def start_streams() -> None:  # the server comes back where the pages look for it
            started.append(StreamServer(stream_sf, port=port))
            live.streams = started[0].base

        live.start_streams = start_streams
    try:
        yield live
    finally:
        server.shutdown()
        thread.join(timeout=10)
        for stream_server in started:
            stream_server.stop()
        sf.close()
        stream_sf.close()


@pytest.fixture
def live_server(
    tmp_path: Path, gitops_remote: Path, metrics_url: str | None
) -> Iterator[LiveServer]:
    """The dashboard with its event-stream server (uvicorn, in a thread) next to it."""
    yield from _serve(tmp_path, gitops_remote, metrics_url, streams=True)


@pytest.fixture
def live_server_without_streams(tmp_path: Path, gitops_remote: Path) -> Iterator[LiveServer]:
    """The dashboard whose event-stream server is down: its pages must work without it."""
    yield from _serve(tmp_path, gitops_remote, None, streams=False)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: apt-get install chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
