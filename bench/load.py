"""Closed-loop HTTP load: `wrk` when it is installed (Debian's `wrk`), else Python threads.

wrk is written in C with an event loop per thread, so on this 2-core machine it costs the server
far less CPU than a Python client would; the Python fallback is recorded as such, because at high
rates it, not the server, can be the bottleneck.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Client
from bench.stats import percentile

WRK = shutil.which("wrk")


@dataclass(frozen=True)
class Request:
    """One request, repeated: what a client of an endpoint sends."""

    name: str
    base_url: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


def tool() -> str:
    return "wrk" if WRK else "python-threads"


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def _script(request: Request) -> str:
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    if request.body is not None:
        lines.append(f"wrk.body = {_lua_string(request.body)}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in request.headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    return "\n".join(lines) + "\n"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/sec, the latency distribution and the errors of a `wrk --latency` run."""
    result: dict[str, Any] = {"errors": 0}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    for pct in ("50", "75", "90", "99"):
        if match := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M):
            result[f"p{pct}_ms"] = _ms(match.group(1))
    if match := re.search(r"(\d+) requests in", output):
        result["requests"] = int(match.group(1))
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result["errors"] += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        result["errors"] += sum(int(n) for n in match.groups())
    if "rps" not in result or "p99_ms" not in result:
        raise ValueError(f"cannot read wrk's output:\n{output[-1000:]}")
    return result


def _wrk(request: Request, concurrency: int, seconds: float) -> dict[str, Any]:
    assert WRK is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_script(request))
    try:
        done = subprocess.run(
            [
                WRK,
                f"-t{min(2, concurrency)}",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                script.name,
                request.base_url + request.path,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip()[-500:]}")
    return parse_wrk(done.stdout)


def _python(request: Request, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    body = None if request.body is None else json.loads(request.body)
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(n: int) -> None:
        client = Client(request.base_url, request.headers, timeout=10)
        start.wait()
        try:
            while time.perf_counter() < deadline[0]:
                try:
                    answer = client.request(request.method, request.path, body)
                except OSError:
                    errors[n] += 1
                    client.close()
                    continue
                latencies[n].append(answer.seconds)
                if answer.status >= 400:
                    errors[n] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - began
    flat = [s * 1000 for per in latencies for s in per]
    return {
        "rps": len(flat) / elapsed,
        "requests": len(flat),
        "p50_ms": percentile(flat, 50),
        "p99_ms": percentile(flat, 99),
        "errors": sum(errors),
    }


def run(request: Request, concurrency: int, seconds: float) -> dict[str, Any]:
    """Keep ``concurrency`` connections busy for ``seconds``; return req/s, latency, errors."""
    result = (_wrk if WRK else _python)(request, concurrency, seconds)
    result["tool"] = tool()
    result["concurrency"] = concurrency
    result["seconds"] = seconds
    return result
