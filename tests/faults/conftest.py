"""Real processes for the fault suite: a private PostgreSQL to stop and freeze, and replicas.

The private server (tests.pgserver) is this suite's own: stopping or freezing it touches nothing
else. Every wait below is bounded; nothing waits for its bound when things work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stageflow import bootstrap
from stageflow.adapters.git import seed_bare_remote
from stageflow.config import Settings
from tests.conftest import SEED
from tests.integration.conftest import free_port
from tests.pgserver import PostgresUnavailable, PrivatePostgres

STAGEFLOW = Path(sys.executable).parent / "stageflow"
ADMIN = "fault-admin-token-0123456789"
START_TIMEOUT = 60.0


def eventually(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting until {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    """This module's own server (not the session's): its tests stop and freeze it."""
    try:
        server = PrivatePostgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def seed_remote(root: Path) -> Path:
    """The starter repo plus two copies of the demo app: `web` and `feat` (8 more flags)."""
    seed = root / "seed"
    shutil.copytree(SEED, seed)
    for name in ("web", "feat"):
        shutil.copytree(seed / "apps" / "demo", seed / "apps" / name)
        for path in (seed / "apps" / name).rglob("*"):
            if path.is_file():
                path.write_text(path.read_text().replace("demo", name))
    pipeline = seed / "stageflow.yaml"
    pipeline.write_text(
        pipeline.read_text().replace(
            "  demo:\n    path: apps/demo\n",
            "  demo:\n    path: apps/demo\n  web:\n    path: apps/web\n"
            "  feat:\n    path: apps/feat\n",
        )
    )
    flags_file = seed / "apps" / "feat" / "overlays" / "development" / "flags.json"
    document = json.loads(flags_file.read_text())
    template = document["flags"]["new_ui"]
    for n in range(8):
        document["flags"][f"t{n}"] = {**template, "defaultVariant": "off"}
    flags_file.write_text(json.dumps(document, indent=2) + "\n")
    bare = root / "remote" / "gitops.git"
    seed_bare_remote(seed, bare, "main")
    return bare


class Replica:
    """One `stageflow serve` (gunicorn, 2 workers) in a session of its own, so it can be killed
    whole, with its workers and their git children."""

    def __init__(self, name: str, root: Path, database_url: str, remote: Path) -> None:
        self.name = name
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEFLOW_")}
        env.update(
            STAGEFLOW_DATA_DIR=str(root / name),
            STAGEFLOW_DATABASE_URL=database_url,
            STAGEFLOW_GIT_URL=str(remote),
            STAGEFLOW_ADMIN_TOKEN=ADMIN,
            STAGEFLOW_PORT=str(port),
            STAGEFLOW_HOST="127.0.0.1",
            STAGEFLOW_WORKERS="2",
            STAGEFLOW_STREAM_PORT="0",  # no event-stream process: these faults are the API's
            STAGEFLOW_LOG_LEVEL="WARNING",
            STAGEFLOW_SETTLE_INTERVAL="0.5",
            STAGEFLOW_REEVALUATE_INTERVAL="0",
            STAGEFLOW_DATABASE_TIMEOUT="2",
        )
        self.log_path = root / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(STAGEFLOW), "serve"],
            env=env,
            cwd=root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> Replica:
        def answers() -> bool:
            assert self.process.poll() is None, self.log()
            try:
                return self.call("GET", "/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        eventually(answers, f"replica {self.name} answers", START_TIMEOUT)
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str = ADMIN,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        sent.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole replica: master, workers and their children, no clean-up at all."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def cluster(tmp_path: Path, postgres: PrivatePostgres):
    """Start replicas on one fresh database of the private server and one shared remote.

    The database is migrated (and the admin token made) here first, so that replicas started
    together do not race for it.
    """
    remote = seed_remote(tmp_path)
    database_url = postgres.new_database()
    bootstrap.prepare(
        Settings(
            data_dir=tmp_path / "prepare",
            database_url=database_url,
            git_url=str(remote),
            admin_token=ADMIN,
        )
    )
    started: list[Replica] = []

    def start(*names: str) -> list[Replica]:
        replicas = [Replica(name, tmp_path, database_url, remote) for name in names]
        started.extend(replicas)
        return [replica.wait_ready() for replica in replicas]

    start.remote = remote  # type: ignore[attr-defined]
    yield start
    for replica in started:
        replica.stop()


def run_threads(targets: list[Callable[[], None]], timeout: float = 120.0) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a client thread did not finish"
