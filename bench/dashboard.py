"""The dashboard's live pages (issue #18 item 4): what open pages cost.

One `stageflow serve` (the starter repository, 100 flags) and its event-stream server. An
"open page" is what the dashboard's script opens: an SSE connection to
`/dashboard/v1/event-stream` signed in by the session cookie (the admin token), hearing every
event. One page is followed by a reader that records when each notice arrives; the others are
idle sockets that nobody reads (the server still writes every notice to each of them).

Toggles of one flag are taken in blocks, in turn — no other page open (the floor), then
``PAGES`` open, ``CYCLES`` times — and two things are compared with the floor: the toggle's own
latency (the API must not slow down while pages are open: ≤ 1.10x, the issue's bound for held
connections) and the delay from the toggle's 200 to the notice on the followed page (the
event-stream server's poll of the event log, `STAGEFLOW_STREAM_POLL`, 50 ms, is most of it).
The stream server's RSS
before and after opening the pages gives its memory per open page; a Flask streaming view would
instead hold one of gunicorn's `workers x threads` threads per page.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.gitops import APP, RepoShape, flag_key, remote_head
from bench.processes import children, command_line, free_port, status_kb
from bench.report import Row, ms, number, times
from bench.server import StageflowServer
from bench.stats import summary_ms
from bench.writes import FIRST, flag_on

PAGES = 500
CYCLES = 4  # blocks without and with the pages, in turn
GOAL = 1.10  # toggle median with the pages open / without
NOTICE_P99_MS = 250.0  # from the toggle's 200 to the notice on the page
PATH = "/dashboard/v1/event-stream"
COOKIE = "stageflow_session"


class Reader:
    """The followed page: every notice's JSON and when it arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.notices: queue.Queue[tuple[dict[str, Any], float]] = queue.Queue()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        request = self.client.build_request("GET", url, headers={"Cookie": f"{COOKIE}={token}"})
        self.response = self.client.send(request, stream=True)
        if self.response.status_code != 200:
            raise RuntimeError(f"the dashboard stream answered {self.response.status_code}")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                if line.startswith("data:"):
                    self.notices.put((json.loads(line[5:]), time.perf_counter()))
        except httpx.HTTPError:
            pass

    def arrival(self, revision: str, timeout: float = 10.0) -> float:
        """When the `state_changed` notice of ``revision`` arrived."""
        deadline = time.monotonic() + timeout
        while True:
            notice, at = self.notices.get(timeout=max(0.01, deadline - time.monotonic()))
            if notice.get("kind") == "state_changed" and notice.get("revision") == revision:
                return at

    def close(self) -> None:
        self.response.close()
        self.client.close()


def open_pages(port: int, token: str, count: int) -> list[socket.socket]:
    """``count`` idle pages: connected, signed in, answered 200, then never read."""
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: {COOKIE}={token}\r\n\r\n"
    ).encode()
    pages = []
    for _ in range(count):
        page = socket.create_connection(("127.0.0.1", port), timeout=10)
        page.sendall(request)
        head = page.recv(4096)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"an idle page was refused: {head[:200]!r}")
        pages.append(page)
    return pages


def _streams_pid(server: StageflowServer) -> int:
    assert server.process is not None
    for pid in children(server.process.pid, recursive=True):
        if "stageflow.streams" in command_line(pid):
            return pid
    raise RuntimeError("stageflow serve runs no event-stream server")


def _toggle_block(
    server: StageflowServer, reader: Reader, reps: int, state: list[bool]
) -> tuple[list[float], list[float]]:
    """``reps`` toggles: their latencies and their notices' delays after the 200 (seconds)."""
    client = server.admin()
    path = f"/api/v1/apps/{APP}/stages/{FIRST}/flags/{flag_key(7)}"
    toggles, delays = [], []
    try:
        for _ in range(reps):
            state[0] = not state[0]
            answer = client.request("PATCH", path, {"enabled": state[0]})
            answered = time.perf_counter()
            if answer.status != 200:
                raise RuntimeError(f"toggle: HTTP {answer.status}: {answer.body[:300]!r}")
            toggles.append(answer.seconds)
            delays.append(max(0.0, reader.arrival(answer.json()["revision"]) - answered))
    finally:
        client.close()
    return toggles, delays


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _extend(into: tuple[list[float], list[float]], block: tuple[list[float], list[float]]) -> None:
    into[0].extend(block[0])
    into[1].extend(block[1])


def _wait_for_streams(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the event-stream server did not answer /healthz")


def dashboard_rows(
    root: Path, reps: int, prometheus_url: str, pages: int = PAGES
) -> tuple[list[Row], dict[str, Any]]:
    """Start a server, take the three blocks of toggles, return the rows."""
    port = free_port()  # not the API's port + 1, which another process may hold
    server = StageflowServer(
        root / "dashboard",
        RepoShape(),
        prometheus_url=prometheus_url,
        env={"STAGEFLOW_STREAM_PORT": str(port)},
    )
    server.start()
    idle: list[socket.socket] = []
    reader: Reader | None = None
    floor: tuple[list[float], list[float]] = ([], [])
    loaded: tuple[list[float], list[float]] = ([], [])
    memory = (0, 0)
    cpu = [0.0, 0.0]  # the stream server's CPU seconds during the blocks without and with
    try:
        _wait_for_streams(port)
        pid = _streams_pid(server)
        reader = Reader(f"http://127.0.0.1:{port}{PATH}", server.admin_token)
        state = [flag_on(server.remote, remote_head(server.remote), FIRST, flag_key(7))]
        _toggle_block(server, reader, 3, state)  # warm-up
        # In turn, so that both see the same minutes of a shared machine: a block without
        # other pages, then one with them, CYCLES times.
        per = max(1, reps // CYCLES)
        for cycle in range(CYCLES):
            started = _cpu_seconds(pid)
            _extend(floor, _toggle_block(server, reader, per, state))
            cpu[0] += _cpu_seconds(pid) - started
            before_kb = status_kb(pid, "VmRSS")
            idle = open_pages(port, server.admin_token, pages)
            opened_kb = status_kb(pid, "VmRSS")
            started = _cpu_seconds(pid)
            _extend(loaded, _toggle_block(server, reader, per, state))
            cpu[1] += _cpu_seconds(pid) - started
            if cycle == 0:
                memory = (before_kb, max(opened_kb, status_kb(pid, "VmRSS")))
            for page in idle:
                page.close()
            idle = []
    finally:
        for page in idle:
            page.close()
        if reader is not None:
            reader.close()
        server.stop()
    per_page_kib = (memory[1] - memory[0]) / pages
    rows = [
        _row("toggle (PATCH flag), pages open vs none", loaded[0], floor[0], pages, GOAL),
        _row("toggle's 200 → notice on the page", loaded[1], floor[1], pages, None),
        Row(
            "dashboard",
            "event-stream server RSS per open page",
            cells={"n": str(pages), "median": f"{per_page_kib:.1f} KiB"},
            values={"before_kib": memory[0], "open_kib": memory[1]},
            note=f"RSS {number(memory[0] / 1024, ' MiB')} before, "
            f"{number(memory[1] / 1024, ' MiB')} with {pages} pages",
        ),
    ]
    per_event_ms = [
        1000 * spent / max(1, len(block[0]))
        for spent, block in zip(cpu, (floor, loaded), strict=True)
    ]
    rows.append(
        Row(
            "dashboard",
            "event-stream server CPU per toggle's event",
            cells={
                "n": str(len(loaded[0])),
                "median": f"{per_event_ms[1]:.1f} ms",
                "floor": f"0 other pages (vs {pages})",
                "floor median": f"{per_event_ms[0]:.1f} ms",
            },
            values={"cpu_s": cpu, "per_event_ms": per_event_ms},
            note="mean, not median: CPU time over each block / its toggles",
        )
    )
    samples = {
        "dashboard": {
            "floor_toggle_s": floor[0],
            "floor_notice_s": floor[1],
            "loaded_toggle_s": loaded[0],
            "loaded_notice_s": loaded[1],
        }
    }
    return rows, samples


def _row(name: str, ours: list[float], floor: list[float], pages: int, goal: float | None) -> Row:
    mine, base = summary_ms(ours), summary_ms(floor)
    ratio = mine["median"] / base["median"] if base["median"] else None
    if goal is not None:
        target, ok = f"≤ {goal}x", ratio is not None and ratio <= goal
    else:
        target, ok = f"p99 < {NOTICE_P99_MS:.0f} ms", mine["p99"] < NOTICE_P99_MS
    return Row(
        "dashboard",
        name,
        cells={
            "n": str(mine["n"]),
            "median": ms(mine["median"]),
            "p95": ms(mine["p95"]),
            "floor": f"0 other pages (vs {pages})",
            "floor median": ms(base["median"]),
            "ratio": times(ratio),
            "vs floor": times(ratio),
        },
        values={"ours_ms": mine, "floor_ms": base, "ratio": ratio},
        target=target,
        ok=ok,
    )
