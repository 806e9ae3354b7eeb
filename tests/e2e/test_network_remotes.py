"""Network remotes as users run them: HTTP with a token, SSH with a key.

Reads keep answering from the last head seen while the Git host is down (also in a process
that starts then), writes answer 503 naming the remote, a read-only credential is named before a
write finds out, and the credentials never appear in a log line, an answer or /metrics.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import TestResponse

from stageflow import bootstrap
from stageflow.adapters.git import redact_url
from stageflow.api import create_app
from stageflow.config import Settings
from tests.builders import remote_head, third_party_commit
from tests.e2e.conftest import ADMIN
from tests.gitservers import SSHD, GitHttpServer, SshServer

TOKEN = "tok-write-9f8e7d6c5b4a3210"
READ_TOKEN = "tok-read-0123456789abcdef"
DOCUMENT = "/api/v1/apps/demo/stages/development/flags"
MATRIX = "/api/v1/apps/demo/flags"
BULK = "/ofrep/v1/evaluate/flags"
TOGGLE = "/api/v1/apps/demo/stages/development/flags/beta_api"


@pytest.fixture
def git_host(gitops_remote: Path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(
        gitops_remote.parent, user="stageflow", token=TOKEN, read_token=READ_TOKEN
    )
    server.start()
    yield server
    server.stop()


def _settings(tmp_path: Path, url: str, **more: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'stageflow.db'}",
        git_url=url,
        git_head_ttl=0.0,
        admin_token=ADMIN,
        **more,  # type: ignore[arg-type]
    )


class Process:
    """One Stageflow process (composed as `stageflow serve` composes each worker)."""

    def __init__(self, settings: Settings, ofrep: dict[str, str] | None = None) -> None:
        bootstrap.prepare(settings)
        self.sf, readiness = bootstrap.build(settings)
        app = create_app(settings, self.sf, readiness)
        app.config["TESTING"] = True
        self.client = app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
        if ofrep is not None:  # the client of an earlier process (its answers name its ticket)
            self.ofrep = ofrep
            return
        created = self.client.post(
            "/api/v1/tokens",
            json={
                "name": "demo dev",
                "owner": "svc",
                "roles": ["client"],
                "scope": {"apps": ["demo"], "stages": ["development"]},
            },
        )
        assert created.status_code == 201, created.get_json()
        self.ofrep = {"Authorization": f"Bearer {created.get_json()['token']}"}

    def reads(self) -> dict[str, TestResponse]:
        context = {"context": {"targetingKey": "user-1"}}
        return {
            "bulk": self.client.post(BULK, json=context, headers=self.ofrep),
            "single": self.client.post(f"{BULK}/new_ui", json=context, headers=self.ofrep),
            "document": self.client.get(DOCUMENT),
            "matrix": self.client.get(MATRIX),
        }

    def close(self) -> None:
        self.sf.close()


def _assert_stale(
    now: dict[str, TestResponse], before: dict[str, TestResponse], remote: str
) -> None:
    for name, answer in now.items():
        assert answer.status_code == 200, (name, answer.get_data(as_text=True))
        assert answer.get_data() == before[name].get_data(), name
        assert answer.headers.get("ETag") == before[name].headers.get("ETag"), name
        warning = answer.headers["Warning"]
        assert "unreachable since" in warning and remote in warning, warning


def test_reads_outlive_a_stopped_git_host_and_writes_wait_for_it(
    tmp_path: Path, git_host: GitHttpServer, gitops_remote: Path
):
    url = git_host.url("gitops.git")
    process = Process(_settings(tmp_path, url, git_token=TOKEN))
    try:
        before = process.reads()
        assert all(a.status_code == 200 and "Warning" not in a.headers for a in before.values())

        git_host.stop()

        _assert_stale(process.reads(), before, url)
        write = process.client.patch(TOGGLE, json={"enabled": False})
        assert write.status_code == 503, write.get_json()
        assert write.get_json()["error"]["code"] == "git_unavailable"
        assert url in write.get_json()["error"]["message"]
        assert process.client.get("/readyz").status_code == 200
        assert process.client.get("/readyz/writes").status_code == 503

        git_host.start()

        write = process.client.patch(TOGGLE, json={"enabled": False})
        assert write.status_code == 200, write.get_json()
        assert remote_head(gitops_remote) == write.get_json()["revision"]
        after = process.reads()
        assert after["document"].headers["ETag"] == f'"{write.get_json()["revision"]}"'
        assert all("Warning" not in a.headers for a in after.values())
    finally:
        process.close()


def test_a_process_started_while_the_git_host_is_down_serves_its_clone(
    tmp_path: Path, git_host: GitHttpServer, gitops_remote: Path, capfd: pytest.CaptureFixture[str]
):
    url = git_host.url("gitops.git")
    settings = _settings(tmp_path, url, git_token=TOKEN)
    first = Process(settings)
    before = first.reads()
    first.close()
    git_host.stop()
    # the host moves on meanwhile (someone pushed there directly)
    pushed = third_party_commit(gitops_remote, "notes/while-down.txt", "x\n")

    logs = _capture_logs()
    try:
        second = Process(settings, ofrep=first.ofrep)
    finally:
        text = _release_logs(logs)
    try:
        assert "unreachable" in text and "serving the head the clone" in text
        _assert_stale(second.reads(), before, url)
        ready = second.client.get("/readyz")
        assert ready.status_code == 200 and "remote" in ready.get_json()["degraded"]
        writes = second.client.get("/readyz/writes")
        assert writes.status_code == 503 and "remote" in writes.get_json()["error"]["message"]

        git_host.start()  # recovery needs no restart: the next read sees the new head

        assert second.client.get(DOCUMENT).headers["ETag"] == f'"{pushed}"'
        assert second.client.get("/readyz/writes").status_code == 200
    finally:
        second.close()


def _capture_logs() -> tuple[io.StringIO, list[logging.Handler], int]:
    """Log as `stageflow serve` does (JSON lines, DEBUG), into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    bootstrap.configure_logging("DEBUG")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    return buffer, saved[0], saved[1]


def _release_logs(logs: tuple[io.StringIO, list[logging.Handler], int]) -> str:
    buffer, handlers, level = logs
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    return buffer.getvalue()


@pytest.mark.parametrize("given", ["setting", "url"])
def test_credentials_never_show_in_logs_answers_or_metrics(
    tmp_path: Path, git_host: GitHttpServer, given: str
):
    if given == "setting":
        settings = _settings(tmp_path, git_host.url("gitops.git"), git_token=TOKEN)
    else:
        settings = _settings(tmp_path, git_host.url("gitops.git", credentials=f"ci:{TOKEN}"))
    logs = _capture_logs()
    seen: list[str] = []
    try:
        process = Process(settings)
        try:
            client = process.client
            answers = [*process.reads().values(), client.patch(TOGGLE, json={"enabled": False})]
            assert answers[-1].status_code == 200, answers[-1].get_json()
            git_host.stop()
            answers += [
                *process.reads().values(),
                client.patch(TOGGLE, json={"enabled": True}),
                client.get("/api/v1/pipeline"),
                client.get("/readyz"),
                client.get("/readyz/writes"),
                client.get("/metrics"),
            ]
            assert answers[-1].status_code == 200
            for answer in answers:
                seen.append(answer.get_data(as_text=True))
                seen.append(str(answer.headers))
            assert git_host.url("gitops.git") in client.get("/api/v1/pipeline").get_data(
                as_text=True
            )
        finally:
            process.close()
    finally:
        seen.append(_release_logs(logs))
    assert "unreachable" in seen[-1]  # the logs did say what happened
    for text in seen:
        assert TOKEN not in text


def test_a_read_only_token_is_named_before_a_write_finds_out(
    tmp_path: Path, git_host: GitHttpServer, gitops_remote: Path
):
    process = Process(_settings(tmp_path, git_host.url("gitops.git"), git_token=READ_TOKEN))
    try:
        before = remote_head(gitops_remote)
        assert process.client.get(DOCUMENT).status_code == 200
        assert process.client.get("/readyz").status_code == 200

        writes = process.client.get("/readyz/writes")
        write = process.client.patch(TOGGLE, json={"enabled": False})

        assert writes.status_code == 503
        assert "refuses pushes" in writes.get_json()["error"]["details"]["remote"]["detail"]
        assert write.status_code == 503, write.get_json()
        error = write.get_json()["error"]
        assert error["code"] == "git_read_only" and "STAGEFLOW_GIT_TOKEN" in error["message"]
        assert remote_head(gitops_remote) == before
    finally:
        process.close()


@pytest.mark.skipif(
    SSHD is None, reason="sshd not installed (Debian: openssh-server; .ci/run installs it)"
)
def test_an_ssh_remote_with_a_key_serves_writes_and_outlives_a_stopped_sshd(
    tmp_path: Path, gitops_remote: Path
):
    sshd = SshServer(tmp_path / "ssh")
    sshd.start()
    try:
        url = sshd.url(gitops_remote)
        # Each ssh connection costs ~0.4 s here: reads reuse the head for a while, as they
        # would in production with a TTL; /readyz asks the remote afresh.
        settings = _settings(
            tmp_path,
            url,
            git_ssh_key=str(sshd.key),
            git_ssh_known_hosts=str(sshd.known_hosts),
        ).with_overrides(git_head_ttl=60.0)
        process = Process(settings)
        try:
            before = process.reads()
            write = process.client.patch(TOGGLE, json={"enabled": False})
            assert write.status_code == 200, write.get_json()
            assert remote_head(gitops_remote) == write.get_json()["revision"]
            assert process.client.get("/readyz/writes").status_code == 200
            before = process.reads()

            sshd.stop()
            assert process.client.get("/readyz").get_json()["degraded"] == ["remote"]

            _assert_stale(process.reads(), before, redact_url(url))  # no user name shown
            refused = process.client.patch(TOGGLE, json={"enabled": True})
            assert (
                refused.status_code == 503
                and refused.get_json()["error"]["code"] == "git_unavailable"
            )

            sshd.start()

            write = process.client.patch(TOGGLE, json={"enabled": True})
            assert write.status_code == 200, write.get_json()
            assert remote_head(gitops_remote) == write.get_json()["revision"]
        finally:
            process.close()
    finally:
        sshd.stop()


@pytest.mark.skipif(
    SSHD is None, reason="sshd not installed (Debian: openssh-server; .ci/run installs it)"
)
def test_an_ssh_remote_through_the_users_git_ssh_command(
    tmp_path: Path, gitops_remote: Path, monkeypatch: pytest.MonkeyPatch
):
    sshd = SshServer(tmp_path / "ssh")
    sshd.start()
    try:
        # no Stageflow setting: git uses ssh the way the user configured it
        monkeypatch.setenv(
            "GIT_SSH_COMMAND",
            f"ssh -i {sshd.key} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={sshd.known_hosts}",
        )
        process = Process(
            _settings(tmp_path, sshd.url(gitops_remote)).with_overrides(git_head_ttl=60.0)
        )
        try:
            assert process.client.get(DOCUMENT).status_code == 200
            write = process.client.patch(TOGGLE, json={"enabled": False})
            assert write.status_code == 200, write.get_json()
            assert remote_head(gitops_remote) == write.get_json()["revision"]
        finally:
            process.close()
    finally:
        sshd.stop()
