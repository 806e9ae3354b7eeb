"""A small HTTP client over one keep-alive connection (or a new connection per request)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    """Requests against one server with fixed headers (the Authorization of a token)."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        *,
        keep_alive: bool = True,
        timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.headers = dict(headers or {})
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request; the time covers sending it until the whole body has arrived."""
        data = None if body is None else json.dumps(body).encode()
        sent = {**self.headers, **(headers or {})}
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        if not self.keep_alive:
            sent["Connection"] = "close"
        for attempt in (1, 2):
            started = time.perf_counter()
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=sent)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed while idle: retry once, fresh.
                self.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            elapsed = time.perf_counter() - started
            answer = Answer(
                response.status, payload, {k.lower(): v for k, v in response.getheaders()}, elapsed
            )
            if not self.keep_alive or answer.headers.get("connection", "").lower() == "close":
                self.close()
            return answer
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.request("POST", path, body, **kw)


def expect(answer: Answer, *statuses: int, what: str) -> Any:
    """Return the JSON of an answer with one of ``statuses``, else fail naming ``what``."""
    if answer.status not in statuses:
        raise RuntimeError(f"{what}: HTTP {answer.status}: {answer.body[:500]!r}")
    return answer.json()
