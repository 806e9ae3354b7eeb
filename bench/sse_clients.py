"""`python -m bench.sse_clients URL N [TOKEN]`: hold N idle SSE connections to URL.

A process of its own, so that holding (and draining) the connections does not take the GIL from
the threads that time the rows. Each connection is one ``asyncio`` stream that sends the GET and
then reads and discards whatever arrives (keep-alive comments, refetch notices), so the server's
queues never fill. It prints one JSON line when every connection has its answer's head (or gave
up waiting for it), then holds them until its stdin closes, and prints a second JSON line: how
many were still open, how many the server closed, and how many notices arrived.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import urllib.parse
from dataclasses import dataclass, field

HEAD_TIMEOUT = 10.0  # seconds a connection waits for its answer's head before it counts as stuck
OPENING = 100  # connections being opened at once (the server's accept backlog is 2048)


@dataclass
class Tally:
    statuses: dict[str, int] = field(default_factory=dict)
    notices: int = 0
    closed_by_server: int = 0
    open: int = 0


def raise_fd_limit(wanted: int) -> None:
    """A socket per connection: the soft limit of open files up to the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _drain(reader: asyncio.StreamReader, tally: Tally) -> None:
    try:
        while line := await reader.readline():
            if line.startswith(b"data:") and b"refetchEvaluation" in line:
                tally.notices += 1
    except (ConnectionError, OSError):
        pass
    tally.open -= 1
    tally.closed_by_server += 1


async def _open(
    url: urllib.parse.SplitResult, token: str, tally: Tally, gate: asyncio.Semaphore
) -> asyncio.StreamWriter | None:
    target = url.path + (f"?{url.query}" if url.query else "")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    async with gate:
        try:
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
        except OSError as exc:
            tally.statuses[type(exc).__name__] = tally.statuses.get(type(exc).__name__, 0) + 1
            return None
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n"
            f"{auth}\r\n".encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            status = head.split(b" ", 2)[1].decode()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, IndexError):
            status = "no answer"
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status == "200":
        tally.open += 1
        asyncio.get_running_loop().create_task(_drain(reader, tally))
    return writer


async def hold(url: str, count: int, token: str) -> None:
    raise_fd_limit(count + 100)
    parts = urllib.parse.urlsplit(url)
    tally = Tally()
    gate = asyncio.Semaphore(OPENING)
    started = time.perf_counter()
    writers = await asyncio.gather(*(_open(parts, token, tally, gate) for _ in range(count)))
    print(
        json.dumps(
            {
                "statuses": tally.statuses,
                "open": tally.open,
                "seconds": round(time.perf_counter() - started, 2),
            }
        ),
        flush=True,
    )
    await asyncio.to_thread(sys.stdin.read)  # until the benchmark closes our stdin
    still_open = tally.open
    for writer in writers:
        if writer is not None:
            writer.close()
    print(
        json.dumps(
            {
                "open": still_open,
                "closed_by_server": tally.closed_by_server,
                "notices": tally.notices,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""))
