"""Real outside parts for integration tests: clones of the test remote, a Prometheus with
backfilled data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stageflow.adapters.git import GitOptions, GitPythonRepo


@pytest.fixture
def open_repo(tmp_path: Path, gitops_remote: Path) -> Iterator[Callable[..., GitPythonRepo]]:
    """Open GitPythonRepo instances on the remote (all closed at the end of the test)."""
    opened: list[GitPythonRepo] = []

    def make(url: Path | str = gitops_remote, **options: object) -> GitPythonRepo:
        options.setdefault("head_ttl", 0.0)
        settings = GitOptions(**options)  # type: ignore[arg-type]
        repo = GitPythonRepo(str(url), "main", tmp_path / "clones", settings)
        opened.append(repo)
        repo.open()
        return repo

    yield make
    for repo in opened:
        repo.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _series(now: int) -> str:
    """Ten minutes of traffic for development: 0.5 % errors, p95 around 875 ms."""
    lines = ["# TYPE http_requests_total counter"]
    for i in range(120):
        t = now - 600 + i * 5
        lines.append(f'http_requests_total{{namespace="development",status="200"}} {i * 500} {t}')
        lines.append(f'http_requests_total{{namespace="development",status="500"}} {i * 2.5} {t}')
    lines.append("# TYPE http_request_duration_seconds histogram")
    for i in range(120):
        t = now - 600 + i * 5
        for le, count in (("0.1", 300), ("0.5", 400), ("1.0", 500), ("+Inf", 500)):
            lines.append(
                f'http_request_duration_seconds_bucket{{namespace="development",le="{le}"}} '
                f"{i * count} {t}"
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on a free loopback port, its data backfilled with promtool."""
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not binary or not promtool:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs the Debian package")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    work: Path = tmp_path_factory.mktemp("prometheus")
    source = work / "series.om"
    source.write_text(_series(int(time.time()) - 5))
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(work / "data")],
        check=True,
        capture_output=True,
    )
    config = work / "prometheus.yml"
    config.write_text("global: {}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "prometheus.log").read_text()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
