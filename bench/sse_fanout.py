"""What telling one SSE connection of a notice costs the server: the response, the ASGI server.

``python -m bench.sse_fanout [--connections 1000] [--notices 100]``

For each response (sse-starlette's ``EventSourceResponse``, Stageflow's ``streams.sse.EventStream``)
and each uvicorn setup (asyncio + h11, uvloop + httptools), a server process holds
``connections`` streams opened by an asyncio client process and puts ``notices`` frames into
every stream's queue (20 ms apart), as the hub does; the server's CPU time (``getrusage``)
across the notices, divided by the frames written, is the cost of telling one connection once.
Nothing of Stageflow but the response runs: no token check, no event log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench.processes import free_port

FRAME = (
    b'event: message\r\ndata: {"type":"refetchEvaluation","etag":"0123456789abcdef0123456789'
    b'abcdef01234567","lastModified":1764590000}\r\nid: 123\r\n\r\n'
)
SETUPS = [
    ("sse-starlette", "asyncio", "h11"),
    ("sse-starlette", "uvloop", "httptools"),
    ("EventStream", "asyncio", "h11"),
    ("EventStream", "uvloop", "httptools"),
]


def serve(response: str, loop: str, http: str, port: int) -> None:
    """The server: ``/s`` a stream, ``/fire?n=`` the notices, ``/cpu`` its CPU seconds."""
    import uvicorn
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from stageflow.streams.sse import EventStream

    queues: set[asyncio.Queue[bytes | None]] = set()

    async def frames(queue: asyncio.Queue[bytes | None]) -> Any:
        try:
            while (frame := await queue.get()) is not None:
                yield frame
        finally:
            queues.discard(queue)

    async def same(frame: bytes) -> bytes:
        return frame

    async def stream(request: Request) -> Response:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(100)
        queues.add(queue)
        if response == "sse-starlette":
            return EventSourceResponse(frames(queue), ping=15)
        return EventStream(
            queue, same, keepalive=15, headers={}, closed=lambda: queues.discard(queue)
        )

    async def fire(request: Request) -> Response:
        for _ in range(int(request.query_params.get("n", "1"))):
            for queue in list(queues):
                queue.put_nowait(FRAME)
            await asyncio.sleep(0.02)
        return JSONResponse({"told": len(queues)})

    async def cpu(request: Request) -> Response:
        used = resource.getrusage(resource.RUSAGE_SELF)
        return JSONResponse({"cpu": used.ru_utime + used.ru_stime, "open": len(queues)})

    app = Starlette(routes=[Route("/s", stream), Route("/fire", fire), Route("/cpu", cpu)])
    uvicorn.run(app, host="127.0.0.1", port=port, loop=loop, http=http, log_level="warning")


async def measure(port: int, connections: int, notices: int) -> float:
    """µs of server CPU per connection told, with ``connections`` streams held here."""
    received = [0]

    async def hold() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        await writer.drain()
        while data := await reader.read(65536):
            received[0] += data.count(b"refetchEvaluation")

    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as answer:
            return dict(json.loads(answer.read()))

    loop = asyncio.get_running_loop()
    held = [asyncio.create_task(hold()) for _ in range(connections)]
    while (await loop.run_in_executor(None, get, "/cpu"))["open"] < connections:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    before = (await loop.run_in_executor(None, get, "/cpu"))["cpu"]
    await loop.run_in_executor(None, get, f"/fire?n={notices}")
    deadline = time.monotonic() + 60
    while received[0] < connections * notices and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    after = (await loop.run_in_executor(None, get, "/cpu"))["cpu"]
    for task in held:
        task.cancel()
    return float((after - before) / max(received[0], 1) * 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_fanout", description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--notices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=4, metavar=("RESPONSE", "LOOP", "HTTP", "PORT"))
    args = parser.parse_args(argv)
    if args.serve:
        response, loop, http, port = args.serve
        serve(response, loop, http, int(port))
        return 0
    from bench.sse_clients import raise_fd_limit

    raise_fd_limit(args.connections + 100)
    print("| response | uvicorn | µs of server CPU per connection told (each round) |")
    print("| --- | --- | --- |")
    for response, loop, http in SETUPS:
        costs = []
        for _ in range(args.rounds):
            port = free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.sse_fanout",
                    "--serve",
                    response,
                    loop,
                    http,
                    str(port),
                ]
            )
            try:
                time.sleep(1.5)
                costs.append(asyncio.run(measure(port, args.connections, args.notices)))
            finally:
                server.terminate()
                server.wait(10)
        shown = ", ".join(f"{cost:.1f}" for cost in costs)
        print(f"| {response} | {loop} + {http} | {shown} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
