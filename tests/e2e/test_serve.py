"""`make run` on a fresh checkout: `stageflow serve` under gunicorn, over real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import remote_head
from tests.conftest import ROOT, git
from tests.e2e.test_http_inputs import chunks, send_chunked

STAGEFLOW = Path(sys.executable).parent / "stageflow"
TOKEN_LINE = re.compile(r"export STAGEFLOW_TOKEN=(\S+)")
SERVING = "Stageflow serving on"
# Generous bounds for slow machines; nothing waits for them when things work.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """One `stageflow serve` process with its stdout collected line by line."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEFLOW_")}
        env.update(
            STAGEFLOW_DATA_DIR=str(data_dir),
            STAGEFLOW_PORT=str(port),
            STAGEFLOW_HOST="127.0.0.1",
            STAGEFLOW_LOG_LEVEL="WARNING",
        )
        self.base = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._serving = threading.Event()
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [str(STAGEFLOW), "serve"],
            env=env,
            cwd=data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if SERVING in line:
                self._serving.set()
        self._serving.set()  # the process ended: stop waiting

    def wait_ready(self) -> None:
        assert self._serving.wait(START_TIMEOUT), "stageflow serve printed nothing"
        assert self.process.poll() is None, self.output + self.log_text()
        # gunicorn binds after the banner; poll /healthz until a worker answers (bounded)
        for _ in range(int(START_TIMEOUT * 10)):
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.output + self.log_text()
            threading.Event().wait(0.1)
        raise AssertionError("stageflow serve never answered /healthz")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def log_text(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw = error.read()
            status = error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(data_dir: Path, port: int) -> Server:
        server = Server(data_dir, port, tmp_path / "serve.log")
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def test_stageflow_serve_on_a_fresh_data_dir(serve, tmp_path: Path):
    data = tmp_path / "var"
    port = free_port()

    first = serve(data, port)

    tokens = TOKEN_LINE.findall(first.output)
    assert len(tokens) == 1, first.output
    token = tokens[0]
    assert first.output.count(token) == 2  # the token line and the export line, once each
    assert first.call("GET", "/healthz") == (200, {"status": "ok"})
    status, ready = first.call("GET", "/readyz")
    assert status == 200, ready
    assert set(ready["checks"]) >= {"state", "remote", "files", "database", "disk", "kustomize"}
    assert first.call("GET", "/readyz/writes")[0] == 200
    assert first.call("GET", "/api/v1/pipeline")[0] == 401
    status, pipeline = first.call("GET", "/api/v1/pipeline", token=token)
    assert status == 200, pipeline
    assert [s["name"] for s in pipeline["stages"]] == ["development", "staging", "production"]

    status, toggled = first.call(
        "PATCH",
        "/api/v1/apps/demo/stages/development/flags/beta_api",
        {"enabled": False},
        token=token,
    )
    assert status == 200, toggled
    bare = data / "gitops.git"
    assert remote_head(bare) == toggled["revision"]
    assert "Stageflow-Actor: admin" in git("--git-dir", str(bare), "log", "-1", "--format=%B")
    # gunicorn dechunks a chunked body; one over STAGEFLOW_MAX_BODY_BYTES (1 MiB) is a 413
    status, answer = send_chunked(first, "/api/v1/apps/demo/flags", chunks(2 << 20), token)
    assert status == 413, answer
    assert answer["error"]["code"] == "body_too_large"
    assert remote_head(bare) == toggled["revision"]
    assert first.stop() == 0

    second = serve(data, port)

    assert TOKEN_LINE.search(second.output) is None, second.output
    assert "admin token" not in second.output
    status, flags = second.call("GET", "/api/v1/apps/demo/flags", token=token)
    assert status == 200, flags
    assert flags["beta_api"]["stages"]["development"]["enabled"] is False
    assert remote_head(bare) == toggled["revision"]
    audit = second.call("GET", "/api/v1/audit", token=token)[1]["items"]
    assert [e["revision"] for e in audit if e["action"] == "flag.update"] == [toggled["revision"]]
    assert second.stop() == 0


def test_a_fresh_clone_has_what_make_run_needs(tmp_path: Path):
    clone = tmp_path / "checkout"
    git("clone", "-q", "--depth", "1", f"file://{ROOT}", str(clone))

    makefile = (clone / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.MULTILINE)
    pyproject = (clone / "pyproject.toml").read_text()
    assert 'stageflow = "stageflow.cli:main"' in pyproject
    assert (clone / "overlays" / "stageflow.yaml").is_file()
    assert (clone / "migrations" / "alembic.ini").is_file()
    assert list((clone / "migrations" / "versions").glob("0001_*.py"))
    assert (clone / "service" / "stageflow" / "cli" / "__init__.py").is_file()
    # what `make run` would do, without doing it (no venv, no pip)
    dry = subprocess.run(
        ["make", "-n", "run"], cwd=clone, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install" in dry and "-e" in dry
    assert ".venv/bin/stageflow serve" in dry
