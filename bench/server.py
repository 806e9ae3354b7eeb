"""Stageflow under test: `stageflow serve` (gunicorn) as a subprocess, plus a stub Prometheus."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.client import Answer, Client, expect
from bench.gitops import APP, STAGES, RepoShape, build_remote
from bench.processes import MemorySampler, children, command_line, free_port, stop_group

STAGEFLOW = Path(sys.executable).parent / "stageflow"
STREAMS = "stageflow.streams"  # the event-stream process's module, in its command line


class StubPrometheus:
    """Answers every instant query with one small sample, so that metric gates pass."""

    def __init__(self) -> None:
        self.queries = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stub.queries += 1
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [time.time(), "0.001"]}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubPrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class StageflowServer:
    """One `stageflow serve` on a free port, its data dir (and embedded remote) in ``root``."""

    def __init__(
        self,
        root: Path,
        shape: RepoShape,
        *,
        prometheus_url: str | None = None,
        remote: Path | None = None,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.extra_env = dict(env or {})  # e.g. the variables a stage's controller_hooks name
        self.shape = shape
        self.data_dir = root / "data"
        # A replica shares a remote (built by whoever passes it) and a database with others.
        self.shared_remote = remote is not None
        self.remote = remote or self.data_dir / "gitops.git"
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = "bench_" + secrets.token_urlsafe(24)
        self.prometheus_url = prometheus_url
        self.process: subprocess.Popen[bytes] | None = None
        self.memory: MemorySampler | None = None
        self.built: dict[str, Any] = {}
        self.client_token: str | None = None
        self.expected = int(os.environ.get("STAGEFLOW_WORKERS") or 2)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> StageflowServer:
        if not self.shared_remote:
            self.built = build_remote(self.remote, self.shape)
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "STAGEFLOW_DATA_DIR": str(self.data_dir),
            "STAGEFLOW_HOST": "127.0.0.1",
            "STAGEFLOW_PORT": str(self.port),
            "STAGEFLOW_ADMIN_TOKEN": self.admin_token,
            **self.extra_env,
        }
        for name in ("STAGEFLOW_GIT_URL", "STAGEFLOW_DATABASE_URL", "STAGEFLOW_SEED_DIR"):
            env.pop(name, None)
        if self.prometheus_url:
            env["STAGEFLOW_PROMETHEUS_URL"] = self.prometheus_url
        if self.shared_remote:
            env["STAGEFLOW_GIT_URL"] = str(self.remote)
        if self.database_url:
            env["STAGEFLOW_DATABASE_URL"] = self.database_url
        log = (self.root / "server.log").open("wb")
        self.process = subprocess.Popen(
            [str(STAGEFLOW), "serve"],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        probe = Client(self.url, keep_alive=False, timeout=5)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"stageflow serve exited: {self.log_tail()}")
            try:
                if probe.get("/readyz").status == 200 and len(self.workers()) >= self.expected:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"stageflow serve not ready in {timeout:.0f}s: {self.log_tail()}"
                )
            time.sleep(0.1)
        # New connections spread over the workers: each has booted once these all answer.
        for _ in range(4 * self.expected):
            probe.get("/readyz")
        self.memory = MemorySampler(self.server_pids).start()
        return self

    def stop(self) -> dict[str, Any]:
        memory = self.memory.stop() if self.memory else {}
        if self.process is not None:
            stop_group(self.process)
            self.process = None
        return memory

    def __enter__(self) -> StageflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ensure_alive(self, during: str) -> None:
        """Fail loudly when the server stopped under the benchmark (its numbers would be lies)."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"stageflow serve exited (code {self.process.returncode}) during {during}; "
                f"last lines of its log:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    # -- processes ------------------------------------------------------------------------------

    def workers(self) -> list[int]:
        if self.process is None:
            return []
        return [
            pid
            for pid in children(self.process.pid, recursive=False)
            if "stageflow" in command_line(pid) and STREAMS not in command_line(pid)
        ]

    def stream_pid(self) -> int | None:
        """The OFREP event-stream process `stageflow serve` runs beside gunicorn (if any)."""
        if self.process is None:
            return None
        found = [
            pid
            for pid in children(self.process.pid, recursive=False)
            if STREAMS in command_line(pid)
        ]
        return found[0] if found else None

    def server_pids(self) -> list[int]:
        """The gunicorn master and its workers (not the git and kustomize helpers they run)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *self.workers()]

    def helper_pids(self) -> list[int]:
        """Long-lived helpers of the workers (GitPython's `git cat-file` processes)."""
        return [
            pid
            for worker in self.workers()
            for pid in children(worker, recursive=True)
            if "cat-file" in command_line(pid)
        ]

    # -- API ------------------------------------------------------------------------------------

    def admin(self, *, keep_alive: bool = True) -> Client:
        return Client(
            self.url, {"Authorization": f"Bearer {self.admin_token}"}, keep_alive=keep_alive
        )

    def paths(self) -> set[str]:
        answer = Client(self.url).get("/openapi.json")
        return set(answer.json().get("paths", {})) if answer.status == 200 else set()

    def ofrep_token(self) -> str:
        """A `client` token scoped to the demo app's first stage: what OFREP evaluates for."""
        if self.client_token is None:
            body = {
                "name": "bench-ofrep",
                "owner": "bench-app",
                "roles": ["client"],
                "scope": {"apps": [APP], "stages": [STAGES[0]]},
            }
            created = expect(self.admin().post("/api/v1/tokens", body), 201, what="create token")
            self.client_token = str(created["token"])
        return self.client_token

    def ofrep(self, *, keep_alive: bool = True) -> Client:
        return Client(
            self.url, {"Authorization": f"Bearer {self.ofrep_token()}"}, keep_alive=keep_alive
        )

    def has_ofrep(self) -> bool:
        if "/ofrep/v1/evaluate/flags" in self.paths():
            return True
        answer: Answer = self.ofrep().post("/ofrep/v1/evaluate/flags", {"context": {}})
        return answer.status == 200
