"""The OFREP web provider on Stageflow's event streams (ADR-0008), under Node.

``@openfeature/ofrep-web-provider`` (tests/interop; 0.4.3 is the newest release) follows the
bulk answer's ``eventStreams`` with the global ``EventSource`` (its default ``changeDetection``
is ``sse``). Node 20 has no EventSource, so ``tests/interop/streams.mjs`` installs the
``eventsource`` package as one, unchanged: like a browser's, it sends no ``Authorization``
header, and the URL's ticket is the credential (tests/browser has the same in Chromium). A toggle
made after the stream is open must reach the provider as a configuration change, re-fetched with
the notice's etag as ``flagConfigEtag``, without polling.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from flask import Flask
from flask.testing import FlaskClient

from stageflow import bootstrap
from stageflow.config import Settings
from stageflow.streams.app import PATH, create_streams_app
from tests.builders import make_token
from tests.e2e.interop import node_harness, serving

FLAG = "new_ui"  # on in the starter's development stage


@pytest.fixture
def stream_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def settings(settings: Settings, stream_socket: socket.socket) -> Settings:
    """The suite's settings, with bulk answers naming the stream server started below."""
    port = stream_socket.getsockname()[1]
    return dataclasses.replace(settings, stream_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def streams(settings: Settings, stream_socket: socket.socket, stageflow: Any) -> Iterator[str]:
    """The event-stream server (its own Stageflow on the same ledger, as the process has)."""
    sf, _ = bootstrap.build(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_streams_app(sf, poll=0.02), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [stream_socket]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield str(settings.stream_url)
    server.should_exit = True
    thread.join(10)
    sf.close()


class Node:
    """``node streams.mjs``: each JSON line it prints lands in ``lines``."""

    def __init__(self, job: dict[str, Any]) -> None:
        harness = node_harness()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(job, handle)
        self.job = Path(handle.name)
        self.process = subprocess.Popen(
            ["node", "streams.mjs", str(self.job)],
            cwd=harness,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def next(self, timeout: float) -> dict[str, Any]:
        """The next line; fails at once when node has exited without one (not after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
        self.process.kill()
        assert self.process.stderr is not None
        pytest.fail(f"node streams.mjs gave no answer: {self.process.stderr.read()[-2000:]}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        self.job.unlink()


def test_the_web_provider_hears_a_toggle_on_the_event_stream(
    app: Flask, client: FlaskClient, streams: str
):
    token = make_token(client, "web-app", ["client"], apps=["demo"], stages=["development"])
    with serving(app) as url:
        node = Node({"url": url, "token": token, "flag": FLAG})
        try:
            ready = node.next(timeout=60)
            assert ready["value"] is True
            (opened,) = ready["streams"]
            assert opened.startswith(f"{streams}{PATH}?app=demo&stage=development&ticket=")
            assert token not in opened

            toggled = client.patch(
                f"/api/v1/apps/demo/stages/development/flags/{FLAG}", json={"enabled": False}
            )
            assert toggled.status_code == 200, toggled.get_json()
            revision = toggled.get_json()["revision"]

            changed = node.next(timeout=20)
            assert changed["value"] is False
            assert FLAG in changed["flagsChanged"]
            assert any(f"flagConfigEtag={revision}" in asked for asked in changed["refetches"])
        finally:
            node.close()
