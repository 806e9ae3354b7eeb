"""Idle OFREP event streams (issue #18): what 1,000 held SSE connections cost the other rows.

One `stageflow serve` with its event-stream process on a port of its own. The toggle row and the
OFREP bulk read row run four times: without idle connections; while ``IDLE`` idle connections to
the staging stream are open (held by ``bench.sse_clients`` in a process of its own; the rows
change development only, so these are never told anything: the cost of holding them); while
``IDLE`` are open to the development stream (each toggle is a notice to every one of them: the
cost of telling them); and without again. The change is against the two "without" runs pooled,
so that drift of the shared machine over the minutes reads less as a cost. The stream process's
VmRSS before and after the connections open gives the memory per connection. While the
development ones are open, one more connection in this process times each toggle's 200 until
its `refetchEvaluation` notice arrives.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import load, writes
from bench.client import Client, expect
from bench.gitops import APP, STAGES, RepoShape, flag_key
from bench.processes import free_port, status_kb
from bench.report import Row, ms, number
from bench.server import StageflowServer
from bench.sse_clients import raise_fd_limit
from bench.stats import percentile, summary_ms

IDLE = 1000
GOAL_PCT = 10.0
READ_CLIENTS = 8
OFREP_BULK = "/ofrep/v1/evaluate/flags"
TOGGLED = flag_key(3)  # the flag the toggle row flips
NOTIFIED = flag_key(5)  # the flag whose toggles are timed until the notice arrives


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Listener:
    """One SSE connection read in a thread: when each notice (by its etag) arrived."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
        self.conn.request(
            "GET",
            f"{parts.path}?{parts.query}",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"event stream: HTTP {self.response.status}")
        self.arrived: dict[str, float] = {}
        self._thread = threading.Thread(target=self._read, name="sse-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while line := self.response.readline():
                if line.startswith(b"data:"):
                    data = json.loads(line[5:])
                    if data.get("type") == "refetchEvaluation" and data.get("etag"):
                        self.arrived.setdefault(str(data["etag"]), time.perf_counter())
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close(): http.client drops its file under the reading thread

    def wait_for(self, etag: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while etag not in self.arrived and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.arrived.get(etag)

    def close(self) -> None:
        self.conn.close()


class IdleClients:
    """``python -m bench.sse_clients``: ``count`` idle connections until ``close``."""

    def __init__(self, url: str, count: int, token: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_clients", url, str(count), token],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.opened: dict[str, Any] = json.loads(self.process.stdout.readline() or "{}")

    def close(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            closed = json.loads(self.process.stdout.readline() or "{}")
            self.process.wait(timeout=30)
        except (ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            closed = {}
        return closed


def stream_url(server: StageflowServer) -> str:
    """Where the bulk answer's `eventStreams` say the demo app's first stage is streamed."""
    answer = server.ofrep().post(OFREP_BULK, {"context": {"targetingKey": "user-1"}})
    (stream,) = expect(answer, 200, what="OFREP bulk evaluation")["eventStreams"]
    return str(stream["endpoint"]["origin"]) + str(stream["endpoint"]["requestUri"])


def wait_ready(url: str, timeout: float = 60.0) -> None:
    parts = urllib.parse.urlsplit(url)
    probe = Client(f"{parts.scheme}://{parts.netloc}", keep_alive=False, timeout=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe.get("/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the event-stream server at {url} did not answer in {timeout:.0f}s")


def connections(url: str) -> int:
    parts = urllib.parse.urlsplit(url)
    answer = Client(f"{parts.scheme}://{parts.netloc}", keep_alive=False, timeout=10).get(
        "/healthz"
    )
    return int(answer.json().get("connections", -1))


def phase(
    server: StageflowServer, toggles: int, read: load.Request, seconds: float
) -> dict[str, Any]:
    """The toggle row (``toggles`` PATCHes, one after the other), then the bulk read row."""
    toggler = writes.Toggler(server, TOGGLED)
    series = writes.Series()
    for _ in range(toggles):
        toggler.step(series, record=True)
    toggler.close()
    result = load.run(read, READ_CLIENTS, seconds)
    return {"toggle": series.to_json(), "read": result}


def notice_latencies(server: StageflowServer, listener: Listener, reps: int) -> dict[str, Any]:
    """Each toggle's 200 until its notice (the revision as `etag`) arrived on ``listener``."""
    client = server.admin()
    path = f"/api/v1/apps/{APP}/stages/{STAGES[0]}/flags/{NOTIFIED}"
    state = writes.flag_on(server.remote, writes.remote_head(server.remote), STAGES[0], NOTIFIED)
    latencies: list[float] = []
    missed = 0
    try:
        for _ in range(reps):
            state = not state
            answer = client.request("PATCH", path, {"enabled": state})
            answered = time.perf_counter()
            revision = str(expect(answer, 200, what="toggle")["revision"])
            arrived = listener.wait_for(revision, timeout=10)
            if arrived is None:
                missed += 1
            else:
                latencies.append(arrived - answered)
            time.sleep(0.05)  # the next toggle after this one's notice, not on top of it
    finally:
        client.close()
    return {"samples_s": [round(s, 6) for s in latencies], "missed": missed}


def _pct(new: float, old: float) -> float:
    return (new / old - 1.0) * 100.0 if old else float("nan")


def _change_row(
    name: str,
    n: str,
    before: dict[int, float],
    after: dict[int, float],
    *,
    values: dict[str, Any],
    errors: int = 0,
    note: str = "",
) -> Row:
    """p50/p99 (ms) without and with the idle connections, and the change in %."""
    change = {q: _pct(after[q], before[q]) for q in (50, 99)}
    return Row(
        "streams",
        name,
        cells={
            "n": n,
            "p50 without": ms(before[50]),
            "p99 without": ms(before[99]),
            f"p50 with {IDLE:,}": ms(after[50]),
            f"p99 with {IDLE:,}": ms(after[99]),
            "p50 change": f"{change[50]:+.1f} %",
            "p99 change": f"{change[99]:+.1f} %",
        },
        values={**values, "change_pct": change},
        target=f"≤ +{GOAL_PCT:.0f} %",
        ok=all(c <= GOAL_PCT for c in change.values()) and errors == 0,
        note=note,
    )


def _toggle_row(name: str, without: list[float], with_: list[float]) -> Row:
    """The toggle's p50/p99 over every sample of the phases (ms)."""
    before = {q: percentile(without, q) for q in (50, 99)}
    after = {q: percentile(with_, q) for q in (50, 99)}
    return _change_row(
        name,
        f"{len(without)} / {len(with_)}",
        before,
        after,
        values={"without": before, "with": after},
    )


def staging_token(server: StageflowServer) -> str:
    """A `client` token for the demo app's staging stage, whose flags the rows never change."""
    body = {
        "name": "bench-streams-staging",
        "owner": "bench-app",
        "roles": ["client"],
        "scope": {"apps": [APP], "stages": [STAGES[1]]},
    }
    created = expect(server.admin().post("/api/v1/tokens", body), 201, what="create token")
    return str(created["token"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (``/proc/<pid>/stat``), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def held_phase(
    server: StageflowServer, url: str, token: str, measure: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``measure`` while ``IDLE`` connections to ``url`` are open; the stream process's RSS."""
    pid = server.stream_pid()
    assert pid is not None
    rss_before = status_kb(pid, "VmRSS")
    idle = IdleClients(url, IDLE, token)
    try:
        time.sleep(1.0)
        held = connections(url)
        rss_open = status_kb(pid, "VmRSS")
        cpu_before = cpu_seconds(pid)
        rows = measure()
        cpu = cpu_seconds(pid) - cpu_before
        rss_after = status_kb(pid, "VmRSS")
    finally:
        closed = idle.close()
    time.sleep(1.0)  # the server lets go of them before the next phase
    return {
        **rows,
        "held": held,
        "opened": idle.opened,
        "closed": closed,
        "rss_kb": {"before": rss_before, "open": rss_open, "after": rss_after},
        "stream_cpu_s": cpu,
    }


def stream_rows(
    root: Path, reps: int, read_seconds: float, prometheus_url: str, *, rounds: int = 3
) -> tuple[list[Row], dict[str, Any]]:
    """``rounds`` times: none; 1,000 on staging (never told anything); 1,000 on development
    (told of every toggle); then none once more. Each kind's phases are pooled, so that the
    shared machine's minutes fall on all three alike."""
    raise_fd_limit(IDLE + 1000)  # inherited by the server's processes too
    server = StageflowServer(
        root / "streams",
        RepoShape(),
        prometheus_url=prometheus_url,
        env={"STAGEFLOW_STREAM_PORT": str(free_port())},
    )
    toggles = max(20, reps * 2)
    phases: dict[str, list[dict[str, Any]]] = {"none": [], "quiet": [], "told": []}
    try:
        say("streams: starting stageflow serve with its event-stream process")
        server.start()
        url = stream_url(server)
        wait_ready(url)
        if server.stream_pid() is None:
            raise RuntimeError("stageflow serve started no event-stream process")
        read = load.Request(
            "ofrep",
            server.url,
            OFREP_BULK,
            method="POST",
            headers={"Authorization": f"Bearer {server.ofrep_token()}"},
            body=json.dumps({"context": {"targetingKey": "user-1"}}),
        )
        load.run(read, READ_CLIENTS, 1)  # warm the workers; not recorded
        writes.Toggler(server, TOGGLED).step(writes.Series(), record=False)
        quiet_url = url.replace(f"stage={STAGES[0]}", f"stage={STAGES[1]}")
        quiet_token = staging_token(server)

        def rows() -> dict[str, Any]:
            return phase(server, toggles, read, read_seconds)

        def rows_and_notices() -> dict[str, Any]:
            measured = rows()
            listener = Listener(url, server.ofrep_token())
            try:
                measured["notices"] = notice_latencies(server, listener, reps)
            finally:
                listener.close()
            return measured

        for turn in range(1, rounds + 1):
            say(f"streams {turn}/{rounds}: {toggles} toggles + {read_seconds:g}s of bulk reads")
            phases["none"].append(rows())
            say(f"streams {turn}/{rounds}: the same, {IDLE:,} idle on staging (never told)")
            phases["quiet"].append(held_phase(server, quiet_url, quiet_token, rows))
            say(f"streams {turn}/{rounds}: the same, {IDLE:,} idle on development (told)")
            phases["told"].append(held_phase(server, url, server.ofrep_token(), rows_and_notices))
        say("streams: once more without idle connections")
        phases["none"].append(rows())
        server.ensure_alive("the stream rows")
    finally:
        server.stop()
    return _rows(phases), {"streams": phases}


def _toggle_ms(part: dict[str, Any]) -> list[float]:
    return [s * 1000 for s in part["toggle"]["samples_s"]]


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return sum(float(r[key]) for r in runs) / len(runs)


def _read_row(name: str, without: list[dict[str, Any]], with_: list[dict[str, Any]]) -> Row:
    """The bulk read's p50/p99 (each run's, from the load generator; the mean over the runs)."""
    errors = sum(r["errors"] for r in [*without, *with_])
    return _change_row(
        name,
        f"{sum(r['requests'] for r in without):,} / {sum(r['requests'] for r in with_):,}",
        {q: _mean(without, f"p{q}_ms") for q in (50, 99)},
        {q: _mean(with_, f"p{q}_ms") for q in (50, 99)},
        values={"without": without, "with": with_},
        errors=errors,
        note=f"{errors} errors; mean req/s {number(_mean(with_, 'rps'))} with, "
        f"{number(_mean(without, 'rps'))} without",
    )


def _held_rows(label: str, held: list[dict[str, Any]]) -> list[Row]:
    """Memory per connection (the first phase of the kind, and every one) and the tally."""
    per = [(h["rss_kb"]["open"] - h["rss_kb"]["before"]) / max(h["held"], 1) for h in held]
    opened = [h["opened"].get("open", 0) for h in held]
    counted = [h["held"] for h in held]
    still = [h["closed"].get("open", 0) for h in held]
    by_server = sum(h["closed"].get("closed_by_server", 0) for h in held)
    notices = [h["closed"].get("notices", 0) / max(h["opened"].get("open", 0), 1) for h in held]
    first = held[0]["rss_kb"]
    cpu = sum(h["stream_cpu_s"] for h in held)
    return [
        Row(
            "streams",
            f"event-stream process RSS per idle connection ({label})",
            cells={"value": f"{per[0]:.1f} KiB"},
            values={"per_connection_kb": per, "rss_kb": [h["rss_kb"] for h in held]},
            note=(
                f"VmRSS {first['before'] / 1024:.1f} → {first['open'] / 1024:.1f} MiB for the "
                f"first {counted[0]:,}; each phase: " + ", ".join(f"{p:.1f}" for p in per) + " KiB"
            ),
        ),
        Row(
            "streams",
            f"idle connections held ({label}, {len(held)} phases)",
            cells={"value": f"{min(opened):,} of {IDLE:,} (fewest)"},
            values={"opened": opened, "server_counted": counted, "open_at_end": still},
            ok=min(opened) == min(counted) == min(still) == IDLE and by_server == 0,
            target=f"{IDLE:,} open to the end",
            note=(
                f"the server counted {min(counted):,}-{max(counted):,}; {min(still):,} open at "
                f"the end; {by_server} closed by the server; "
                + "/".join(f"{n:.0f}" for n in notices)
                + f" notices each; the stream process used {cpu:.1f} s of CPU meanwhile"
            ),
        ),
    ]


def _rows(phases: dict[str, list[dict[str, Any]]]) -> list[Row]:
    none = phases["none"]
    rows: list[Row] = []
    for key, label in (("quiet", "on staging, never told"), ("told", "on development, told")):
        held = phases[key]
        rows.append(
            _toggle_row(
                f"flag toggle (PATCH …/flags/{{key}}), 1,000 {label}",
                [ms_ for part in none for ms_ in _toggle_ms(part)],
                [ms_ for part in held for ms_ in _toggle_ms(part)],
            )
        )
        rows.append(
            _read_row(
                f"POST OFREP bulk evaluation, {READ_CLIENTS} clients, 1,000 {label}",
                [part["read"] for part in none],
                [part["read"] for part in held],
            )
        )
    for key, label in (("quiet", "staging"), ("told", "development")):
        rows += _held_rows(label, phases[key])
    samples = [s for part in phases["told"] for s in part["notices"]["samples_s"]]
    missed = sum(part["notices"]["missed"] for part in phases["told"])
    stats = summary_ms(samples)
    rows.append(
        Row(
            "streams",
            "toggle's 200 → its refetchEvaluation on one more connection (1,000 others told too)",
            cells={
                "n": str(stats["n"]),
                "value": f"median {ms(stats['median'])}, p95 {ms(stats['p95'])}",
            },
            values={"samples_s": samples, "missed": missed, "ms": stats},
            ok=missed == 0,
            target="every notice arrives",
            note=f"{missed} missed (10 s each)",
        )
    )
    return rows
