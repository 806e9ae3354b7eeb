"""Input rules that only a real HTTP server shows: chunked bodies (the Flask test client sends
every body with a Content-Length)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.builders import remote_head
from tests.e2e.conftest import ADMIN, LiveServer

FLAGS = "/api/v1/apps/demo/flags"


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    head = b'{"key": "big", "description": "'
    yield head
    left = total - len(head) - 2
    while left > 0:
        yield b"x" * min(size, left)
        left -= size
    yield b'"}'


def send_chunked(
    server: Any, path: str, body: Iterator[bytes], token: str = ADMIN
) -> tuple[int, dict]:
    """POST ``body`` with ``Transfer-Encoding: chunked`` to ``server.base``."""
    port = int(server.base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in (
            ("Authorization", f"Bearer {token}"),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ):
            connection.putheader(name, value)
        connection.endheaders()
        try:
            for chunk in body:
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_chunked_body_over_the_limit_is_413(app, live_server: LiveServer, gitops_remote: Path):
    before = remote_head(gitops_remote)
    limit = app.config["MAX_CONTENT_LENGTH"]

    status, body = send_chunked(live_server, FLAGS, chunks(limit + 100 * 1024))

    assert status == 413, body
    assert body["error"]["code"] == "body_too_large"
    assert str(limit) in body["error"]["message"]
    assert remote_head(gitops_remote) == before


def test_a_chunked_body_within_the_limit_is_read(live_server: LiveServer):
    status, body = send_chunked(live_server, FLAGS, chunks(900, size=100))
    assert status == 201, body
    assert body["flag"]["key"] == "big"
