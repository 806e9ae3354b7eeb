"""The real `stageflow` executable against a real `stageflow serve` on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stageflow.adapters.git import seed_bare_remote
from tests.conftest import SEED

STAGEFLOW = Path(sys.executable).parent / "stageflow"
ADMIN = "sf_cli-test-admin-0123456789abcdef"
# Bounds for slow machines; nothing waits for them when things work.
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's STAGEFLOW_* settings (a developer's shell has some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEFLOW_")}
    env.update(extra)
    return env


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Server:
    """One `stageflow serve` (gunicorn) in its own session, stopped by the fixture."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        program: Path = STAGEFLOW,
        port: int | None = None,
        **settings: str,
    ) -> None:
        self.port = port or free_port()  # a port given: the same server started again
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = clean_env(
            STAGEFLOW_DATA_DIR=str(data_dir),
            STAGEFLOW_HOST="127.0.0.1",
            STAGEFLOW_PORT=str(self.port),
            STAGEFLOW_WORKERS="1",
            STAGEFLOW_STREAM_PORT="0",  # no event-stream process: the CLI does not use it
            STAGEFLOW_THREADS="4",
            STAGEFLOW_LOG_LEVEL="WARNING",
            STAGEFLOW_ADMIN_TOKEN=ADMIN,
            **settings,
        )
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(program), "serve"],
                env=self.env,
                cwd=data_dir.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("stageflow serve never answered /healthz: " + log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


class Cli:
    """Runs the installed `stageflow` executable with a server, a token and its own config."""

    def __init__(self, home: Path, url: str | None = None, token: str | None = ADMIN) -> None:
        self.home = home
        self.url = url
        self.token = token

    def _env(self, token: str | None, env: dict[str, str] | None) -> dict[str, str]:
        extra = {"HOME": str(self.home), "STAGEFLOW_CONFIG": str(self.home / "config.toml")}
        if self.url:
            extra["STAGEFLOW_URL"] = self.url
        secret = token if token is not None else self.token
        if secret:
            extra["STAGEFLOW_TOKEN"] = secret
        return clean_env(**extra, **(env or {}))

    def __call__(
        self, *args: str, token: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        done = subprocess.run(
            [str(STAGEFLOW), *args],
            env=self._env(token, env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Run a command in the background (a `--wait` while someone else acts)."""
        return subprocess.Popen(
            [str(STAGEFLOW), *args],
            env=self._env(None, None),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def finish(process: subprocess.Popen[str]) -> Result:
        try:
            out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        return Result(process.returncode, out, err)


def short_soak_remote(path: Path) -> Path:
    """The starter repo with staging's soak at 1s, so production promotions need not wait 1m."""
    work = path / "seed"
    import shutil

    shutil.copytree(SEED, work)
    pipeline = work / "stageflow.yaml"
    pipeline.write_text(pipeline.read_text().replace("soak: 1m", "soak: 1s", 1))
    bare = path / "gitops.git"
    seed_bare_remote(work, bare, "main")
    return bare


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-server")
    bare = short_soak_remote(root)
    running = Server(
        root / "var",
        root / "serve.log",
        STAGEFLOW_GIT_URL=str(bare),
        STAGEFLOW_REEVALUATE_INTERVAL="1",
    )
    yield running
    running.stop()


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    return Cli(tmp_path, server.url)
