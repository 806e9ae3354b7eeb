"""A Git remote URL with credentials in it never leaves the process: not in an answer, an error,
a log line or /metrics.

The remote is ``https://user:s3cret@127.0.0.1:9/x.git``. While the test wants it reachable, Git's
``url.<base>.insteadOf`` (set through the environment, as an operator could) sends it to the bare
repository of the test; without that, nothing listens there and every Git call fails.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from stageflow import bootstrap, logs
from stageflow.adapters.git.environment import stderr_of
from stageflow.api import create_app
from stageflow.config import Settings
from tests.e2e.conftest import ADMIN

SECRET = "s3cret"
URL = f"https://user:{SECRET}@127.0.0.1:9/x.git"
SHOWN = "https://127.0.0.1:9/x.git"
FLAG = "/api/v1/apps/demo/stages/development/flags/new_ui"


@pytest.fixture
def reachable(monkeypatch: pytest.MonkeyPatch, gitops_remote: Path) -> Iterator[Any]:
    """Make URL lead to the test's bare remote; call the result to cut it off again."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{gitops_remote}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", URL)
    yield lambda: monkeypatch.delenv("GIT_CONFIG_COUNT")


@pytest.fixture
def log_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The service's own log set-up (JSON lines on stderr) at DEBUG; call for what it wrote."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure_logging("DEBUG")
    yield stderr.getvalue
    root.handlers[:], level = saved
    root.setLevel(level)


def test_credentials_in_the_git_url_never_show(
    tmp_path: Path, reachable: Any, log_text: Any, database_url: str
):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        git_url=URL,
        git_branch="main",
        git_head_ttl=0.0,
        admin_token=ADMIN,
    )
    bootstrap.prepare(settings)
    sf, readiness = bootstrap.build(settings)
    try:
        app = create_app(settings, sf, readiness)
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
        seen: list[str] = []

        def get(url: str, status: int | None = None, **kwargs: Any) -> Any:
            method = kwargs.pop("method", "GET")
            response = client.open(url, method=method, **kwargs)
            seen.append(f"{method} {url} {response.status_code}: {response.get_data(as_text=True)}")
            assert status is None or response.status_code == status, seen[-1]
            return response

        pipeline = get("/api/v1/pipeline", 200).get_json()
        assert pipeline["repository"]["url"] == SHOWN
        assert get("/readyz", 200).get_json()["status"] == "ready"
        get(FLAG, 200, method="PATCH", json={"enabled": False})
        get("/api/v1/audit", 200)
        get("/openapi.json", 200)

        reachable()  # now nothing answers at 127.0.0.1:9
        # reads go on from the last head seen (200); writes cannot, and say which remote
        assert get("/readyz", 200).get_json()["degraded"] == ["remote"]
        error = get("/readyz/writes", 503).get_json()["error"]
        assert SHOWN in error["message"]
        write = get(FLAG, 503, method="PATCH", json={"enabled": True}).get_json()["error"]
        assert write["code"] == "git_unavailable" and SHOWN in write["message"]
        get(
            "/api/v1/apps/demo/stages/development/checks",
            method="POST",
            json={"kind": "smoke", "revision": "abcdef1", "status": "passed"},
        )
        get("/metrics", 200)
        logging.getLogger("stageflow.test").info("remote: %s", sf.repo.display_url)
        seen.append(log_text())

        assert "user:" not in "\n".join(seen)
        assert SECRET not in "\n".join(seen)
        assert '"message": "remote: ' + SHOWN in seen[-1]  # the logs were captured
    finally:
        sf.close()


def test_log_lines_redact_credentials_of_any_url(log_text: Any):
    log = logging.getLogger("stageflow.test")
    try:
        raise RuntimeError(f"Cmd('git') failed: cmdline: git ls-remote {URL} refs/heads/main")
    except RuntimeError:
        log.exception("unexpected error; pushing to %s", URL)
    log.warning("fetch from http://token:x-oauth-basic@git.example.com/repo.git failed")

    text = log_text()

    assert SECRET not in text and "x-oauth-basic" not in text
    assert "https://***@127.0.0.1:9/x.git" in text
    assert "http://***@git.example.com/repo.git" in text


def test_git_errors_redact_the_url_of_their_command_line():
    failed = git.GitCommandError(["git", "ls-remote", URL, "refs/heads/main"], 128, stderr=b"")

    said = stderr_of(failed)

    assert SECRET not in said and "***@127.0.0.1:9/x.git" in said
