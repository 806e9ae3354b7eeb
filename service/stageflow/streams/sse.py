"""A ``text/event-stream`` response fed by a queue: what each open stream is.

Why not sse-starlette's ``EventSourceResponse``: a notice goes to every connection of its
channel at once, so what one send costs is multiplied by the connections told. sse-starlette
wraps each send in an anyio cancel scope (for its send timeout), logs each chunk at debug level
and pulls frames through an async generator; with 1,000 connections told 100 notices each
(uvicorn on uvloop and httptools; ``python -m bench.sse_fanout``) that took 26-27 µs of the
server's CPU per connection told, and this response 19-20 µs (docs/benchmarks.md). Here a
connection is its queue and two coroutines:

- the response's own, which takes each item from the queue, asks ``frame`` for its bytes (None:
  nothing to send for it; ``END``: the stream is over) and sends them;
- a watcher, which waits for the client to go (``http.disconnect``: it puts ``None`` in the
  queue, which ends the stream) and writes a keep-alive comment whenever ``keepalive`` seconds
  pass without one.

A client that does not read fills its queue, and the hub skips it (it re-fetches when it
reconnects); a send to a full socket waits for it to drain, as uvicorn's flow control says.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

END: Final = b""  # what ``frame`` returns to end the stream (a token revoked meanwhile)
KEEPALIVE: Final = b": ping\r\n\r\n"


class EventStream(Response, Generic[T]):
    """The ASGI response of one stream: ``first`` frames, then one per item of ``queue``."""

    def __init__(
        self,
        queue: asyncio.Queue[T | None],
        frame: Callable[[T], Awaitable[bytes | None]],
        *,
        keepalive: float,
        headers: Mapping[str, str],
        first: Iterable[bytes] = (),
        closed: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.frame = frame
        self.keepalive = keepalive
        # as StreamingResponse does: no body, so no Content-Length; the type with its charset
        self.status_code = 200
        self.background = None
        self.media_type = "text/event-stream"
        self.init_headers(headers)
        self.first = list(first)
        self.closed = closed
        self.sent_at = 0.0  # when the last bytes went out (the watcher's keep-alive clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        self.sent_at = loop.time()
        watcher = asyncio.create_task(self._watch(receive, send))
        try:
            for replayed in self.first:
                await self._send(send, replayed)
            while (item := await self.queue.get()) is not None:
                data = await self.frame(item)
                if data == END:
                    break
                if data is not None:
                    await self._send(send, data)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.closed()

    async def _send(self, send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})
        self.sent_at = asyncio.get_running_loop().time()

    async def _watch(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.sent_at + self.keepalive - loop.time()
            message: dict[str, Any] | None = None
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        message = dict(await receive())
            if message is None:
                if loop.time() - self.sent_at >= self.keepalive:
                    await self._send(send, KEEPALIVE)
                continue
            if message.get("type") == "http.disconnect":
                self._end()
                return

    def _end(self) -> None:
        """Wake the response to end it, even when its queue is full."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
