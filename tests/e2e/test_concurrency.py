"""Two Stageflow processes (each its own clone and app) and a person pushing by hand, all at
once: every acknowledged change is on the remote, and nobody's change is lost."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from stageflow import bootstrap
from stageflow.api import create_app
from stageflow.config import Settings
from stageflow.services import tokens
from tests.builders import commit_message, read_remote, remote_head, remote_log
from tests.conftest import git
from tests.e2e.conftest import ADMIN

DEV_FLAGS = "apps/demo/overlays/development/flags.json"
TOGGLES = 10
# Both writers and the third party race for the same branch; a generous bound keeps a writer
# that loses many races in a row from answering 409 (the bound itself is tested in
# tests/integration/test_git_repo.py).
ATTEMPTS = 50


@pytest.fixture
def processes(settings: Settings) -> Iterator[list[Any]]:
    """Two composed Stageflows on one data dir and remote, each with its own Flask app."""
    settings = settings.with_overrides(git_push_attempts=ATTEMPTS)
    bootstrap.prepare(settings)
    built = [bootstrap.build(settings) for _ in range(2)]
    clients = []
    for sf, readiness in built:
        app = create_app(settings, sf, readiness)
        app.config["TESTING"] = True
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
        clients.append(client)
    yield [(sf, client) for (sf, _), client in zip(built, clients, strict=True)]
    for sf, _ in built:
        sf.close()


def hand_edit(bare: Path, path: str, text: str) -> str:
    """Push a commit the way a person would, rebasing when Stageflow pushed first."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git("clone", "-q", str(bare), str(work))
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"hand edit of {path}", cwd=work)
        for _ in range(50):
            try:
                git("push", "-q", "origin", "HEAD:main", cwd=work)
            except Exception:
                git("pull", "-q", "--rebase", "origin", "main", cwd=work)
                continue
            return git("rev-parse", "HEAD", cwd=work).strip()
    raise AssertionError("the third party never got its push in")


def test_two_processes_and_a_third_party_lose_nothing(processes, gitops_remote: Path):
    (sf_a, client_a), (sf_b, client_b) = processes
    assert sf_a.repo.workdir != sf_b.repo.workdir  # two clones, like two replicas
    base = remote_head(gitops_remote)
    plan = {"a": (client_a, "new_ui"), "b": (client_b, "beta_api")}
    answers: dict[str, list[tuple[bool, int, dict]]] = {"a": [], "b": []}
    progress = {name: threading.Semaphore(0) for name in plan}
    third_party: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def toggler(name: str) -> None:
        client, key = plan[name]
        try:
            start.wait(timeout=30)
            for i in range(TOGGLES):
                enabled = i % 2 == 1  # both flags start ON: off, on, off, ...
                response = client.patch(
                    f"/api/v1/apps/demo/stages/development/flags/{key}", json={"enabled": enabled}
                )
                answers[name].append((enabled, response.status_code, response.get_json()))
                progress[name].release()
        except BaseException as exc:
            failures.append(exc)
            progress[name].release(TOGGLES)

    def person() -> None:
        try:
            start.wait(timeout=30)
            # push in between Stageflow's writes: after some of each process's answers
            for name, after in (("a", 2), ("b", 3), ("a", 3)):
                for _ in range(after):
                    progress[name].acquire(timeout=60)
                third_party.append(
                    hand_edit(gitops_remote, f"hand/{len(third_party)}.txt", f"{name}{after}\n")
                )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=toggler, args=(n,)) for n in plan]
    threads.append(threading.Thread(target=person))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures

    history = remote_log(gitops_remote, 200)
    assert history[-1] == base
    acknowledged: dict[str, list[str]] = {}
    for name, results in answers.items():
        key = plan[name][1]
        assert [status for _, status, _ in results] == [200] * TOGGLES, results
        acknowledged[name] = [body["revision"] for _, _, body in results]
        for enabled, _, body in results:
            revision = body["revision"]
            assert revision in history  # on the branch, not only in some clone
            assert body["flag"]["defaultVariant"] == ("on" if enabled else "off")
            committed = json.loads(read_remote(gitops_remote, revision, DEV_FLAGS))
            assert committed["flags"][key]["defaultVariant"] == body["flag"]["defaultVariant"]
            assert f"flag {key} " in commit_message(gitops_remote, revision)
    # one commit per acknowledged toggle plus the hand edits, and nothing else
    assert len(third_party) == 3
    mine = acknowledged["a"] + acknowledged["b"]
    assert len(set(mine)) == 2 * TOGGLES
    assert sorted(history[:-1]) == sorted(mine + third_party)
    # the final state holds the last acknowledged value of both flags and every hand edit
    final = json.loads(read_remote(gitops_remote, "main", DEV_FLAGS))
    for name, results in answers.items():
        last_enabled = results[-1][0]
        assert final["flags"][plan[name][1]]["defaultVariant"] == ("on" if last_enabled else "off")
    for n, sha in enumerate(third_party):
        assert read_remote(gitops_remote, "main", f"hand/{n}.txt")
        assert sha in history
    # each process's audit log (one shared ledger) has every acknowledged revision exactly once
    audit = client_a.get("/api/v1/audit?limit=1000").get_json()["items"]
    audited = [e["revision"] for e in audit if e["action"] == "flag.update"]
    assert sorted(audited) == sorted(mine)
    # and both processes read the same, newest state
    for client in (client_a, client_b):
        matrix = client.get("/api/v1/apps/demo/flags").get_json()
        for name, results in answers.items():
            cell = matrix[plan[name][1]]["stages"]["development"]
            assert cell["enabled"] is results[-1][0]


def test_two_stageflows_in_one_process_keep_their_own_tokens(settings: Settings, tmp_path: Path):
    # One secret, two databases (as when a process hosts two apps, or a test suite many): each
    # Stageflow must authenticate against its own ledger, also within the token cache's life.
    other = settings.with_overrides(
        data_dir=tmp_path / "other", database_url=f"sqlite:///{tmp_path / 'other.db'}"
    )
    built = []
    for each in (settings, other):
        bootstrap.prepare(each)
        built.append(bootstrap.build(each)[0])
    try:
        ids = [tokens.authenticate(sf, ADMIN).id for sf in built]
        assert ids[0] != ids[1]
        assert [tokens.authenticate(sf, ADMIN).id for sf in built] == ids
        for sf, token_id in zip(built, ids, strict=True):
            assert [t.id for t in tokens.list_tokens(sf)] == [token_id]
    finally:
        for sf in built:
            sf.close()


def test_a_stale_clone_never_answers_from_its_old_state(processes, gitops_remote: Path):
    """Alternating processes (as a load balancer does): each answer reflects the remote head."""
    (_, client_a), (_, client_b) = processes
    url = "/api/v1/apps/demo/stages/development/flags/new_ui"

    off = client_a.patch(url, json={"enabled": False})
    # process b's clone still has new_ui ON: a "nothing to change" answer would lose the OFF
    on = client_b.patch(url, json={"enabled": True})
    created = client_a.post("/api/v1/apps/demo/flags", json={"key": "fresh_flag"})
    # process b has never seen fresh_flag: a 404 from its old clone would be a wrong answer
    toggled = client_b.patch(
        "/api/v1/apps/demo/stages/development/flags/fresh_flag", json={"enabled": True}
    )

    assert [r.status_code for r in (off, on, created, toggled)] == [200, 200, 201, 200]
    revisions = [r.get_json()["revision"] for r in (off, on, created, toggled)]
    assert remote_log(gitops_remote, 4) == revisions[::-1]
    flags = json.loads(read_remote(gitops_remote, "main", DEV_FLAGS))["flags"]
    assert flags["new_ui"]["defaultVariant"] == "on"
    assert flags["fresh_flag"]["defaultVariant"] == "on"


def test_concurrent_writers_of_one_process_each_get_their_own_commit(client, gitops_remote: Path):
    # Writes that wait for the write lock are pushed together (grouped); each toggle must
    # still be its own commit, hold its own value and be audited once.
    keys = [f"grouped_{n}" for n in range(8)]
    for key in keys:
        created = client.post("/api/v1/apps/demo/flags", json={"key": key})
        assert created.status_code == 201, created.get_json()
    base = remote_head(gitops_remote)
    carried = REGISTRY.get_sample_value("stageflow_git_commits_per_push_sum") or 0
    answers: dict[str, list[tuple[bool, int, dict]]] = {key: [] for key in keys}
    start = threading.Barrier(len(keys))

    def toggler(key: str) -> None:
        start.wait(timeout=30)
        for i in range(4):
            enabled = i % 2 == 0  # new flags start OFF: on, off, on, off
            response = client.patch(
                f"/api/v1/apps/demo/stages/development/flags/{key}", json={"enabled": enabled}
            )
            answers[key].append((enabled, response.status_code, response.get_json()))

    threads = [threading.Thread(target=toggler, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    history = remote_log(gitops_remote, 100)
    mine = []
    for key, results in answers.items():
        assert [status for _, status, _ in results] == [200] * 4, results
        for enabled, _, body in results:
            committed = json.loads(read_remote(gitops_remote, body["revision"], DEV_FLAGS))
            assert committed["flags"][key]["defaultVariant"] == ("on" if enabled else "off")
            assert f"flag {key} " in commit_message(gitops_remote, body["revision"])
            mine.append(body["revision"])
    assert len(set(mine)) == 32
    assert sorted(history[: history.index(base)]) == sorted(mine)
    audit = client.get("/api/v1/audit?limit=1000").get_json()["items"]
    assert sorted(e["revision"] for e in audit if e["action"] == "flag.update") == sorted(mine)
    assert REGISTRY.get_sample_value("stageflow_git_commits_per_push_sum") == carried + 32
