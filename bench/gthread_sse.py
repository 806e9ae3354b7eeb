"""`python -m bench.gthread_sse`: the worker model we did not choose for event streams, measured.

An SSE route in Flask under gunicorn's ``gthread`` worker (what serves Stageflow's API) holds a
thread for as long as a client listens. This starts one gthread worker with a trivial streaming
route (a keep-alive comment every 15 s, as ours sends) and (1) with ``--threads 1000`` opens
1,000 idle connections to it: its RSS per connection, set against the uvicorn process's in
`python -m bench --only streams`; (2) with ``--threads 8`` (the API's worker) opens 100: how many
get an answer at all, and whether a plain request still does. Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.processes import free_port, status_kb, stop_group
from bench.sse_clients import raise_fd_limit

ROOT = Path(__file__).resolve().parents[1]


def app() -> Any:
    """The WSGI app gunicorn loads (``bench.gthread_sse:app()``)."""
    from flask import Flask, Response

    flask_app = Flask("gthread-sse")

    @flask_app.get("/sse")
    def sse() -> Response:
        def comments() -> Any:
            yield ": open\n\n"
            while True:
                time.sleep(15)
                yield ": keep-alive\n\n"

        return Response(comments(), mimetype="text/event-stream")

    @flask_app.get("/ping")
    def ping() -> str:
        return "pong"

    return flask_app


def _gunicorn(port: int, threads: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-k",
            "gthread",
            "-w",
            "1",
            "--threads",
            str(threads),
            "--timeout",
            "600",
            "--worker-connections",
            "4000",
            "-b",
            f"127.0.0.1:{port}",
            "bench.gthread_sse:app()",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _ping(port, 1.0) is not None:
            return process
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def _ping(port: int, timeout: float) -> float | None:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=timeout) as answer:
            answer.read()
    except OSError:
        return None
    return time.perf_counter() - started


def _worker(master: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == master:
                return int(entry)
    raise RuntimeError("no gunicorn worker")


def measure(threads: int, count: int) -> dict[str, Any]:
    port = free_port()
    process = _gunicorn(port, threads)
    try:
        worker = _worker(process.pid)
        time.sleep(1.0)
        rss_before = status_kb(worker, "VmRSS")
        clients = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_clients", f"http://127.0.0.1:{port}/sse", str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert clients.stdout is not None and clients.stdin is not None
        opened = json.loads(clients.stdout.readline() or "{}")
        time.sleep(1.0)
        rss_open = status_kb(worker, "VmRSS")
        ping = _ping(port, 5.0)
        clients.stdin.close()
        clients.wait(30)
        return {
            "threads": threads,
            "connections": count,
            "opened": opened,
            "rss_before_kb": rss_before,
            "rss_open_kb": rss_open,
            "per_connection_kb": (rss_open - rss_before) / max(opened.get("open", 0), 1),
            "ping_s": ping,
        }
    finally:
        # its threads sleep in the streams: a graceful stop would wait for them
        stop_group(process, grace=2.0)


def main() -> int:
    raise_fd_limit(4000)
    rows = [measure(1000, 1000), measure(8, 100)]
    print(
        "| gthread worker | connections | answered (200) | RSS per connection "
        "| GET /ping meanwhile |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        ping = "no answer in 5 s" if row["ping_s"] is None else f"{row['ping_s'] * 1000:.1f} ms"
        print(
            f"| 1 worker, {row['threads']} threads | {row['connections']:,} | "
            f"{row['opened'].get('open', 0):,} | {row['per_connection_kb']:.1f} KiB "
            f"(VmRSS {row['rss_before_kb'] / 1024:.1f} → {row['rss_open_kb'] / 1024:.1f} MiB) | "
            f"{ping} |"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
