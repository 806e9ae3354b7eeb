"""Replicas take one write turn between them (a PostgreSQL advisory lock): they queue, never race.

Each "replica" here is a GitPythonRepo with its own clone dir (so its own host lock) and one push
attempt: any push lost to the other replica would be a WriteConflict.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from stageflow.adapters.database.unit_of_work import make_engine
from stageflow.adapters.database.write_turn import AdvisoryWriteTurn, lock_key
from stageflow.adapters.git import GitOptions, GitPythonRepo
from stageflow.domain.errors import Unavailable
from stageflow.services.ports import Change, Workspace
from tests.builders import remote_head, remote_log
from tests.integration.conftest import free_port


def note(name: str):
    def operation(ws: Workspace) -> Change[str]:
        ws.write(f"notes/{name}.txt", f"{name}\n")
        return Change(f"note {name}", ws.revision)

    return operation


@pytest.fixture
def replicas(tmp_path: Path, gitops_remote: Path, postgres_url: str):
    engine = make_engine(postgres_url, timeout=5)
    key = lock_key(str(gitops_remote) + str(tmp_path), "main")  # this test's own turn
    opened = []
    turns = []
    for name in ("a", "b"):
        turns.append(AdvisoryWriteTurn(engine, key, timeout=30))
        repo = GitPythonRepo(
            str(gitops_remote),
            "main",
            tmp_path / name / "clones",
            GitOptions(head_ttl=0.0, push_attempts=1, write_turn=turns[-1]),
        )
        repo.open()
        opened.append(repo)
    yield opened
    for repo, turn in zip(opened, turns, strict=True):
        repo.close()
        turn.close()
    engine.dispose()


def test_two_replicas_writing_at_once_queue_for_the_turn(replicas, gitops_remote: Path):
    before = remote_head(gitops_remote)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def writer(repo: GitPythonRepo, name: str) -> None:
        for n in range(6):
            try:
                done = repo.change(
                    note(f"{name}-{n}"), actor=name, trailers={"Stageflow-Change": f"{name}-{n}"}
                )
            except Exception as exc:
                done = exc
            with lock:
                outcomes.append(done)

    threads = [
        threading.Thread(target=writer, args=(repo, f"{label}{t}"))
        for label, repo in zip("ab", replicas, strict=True)
        for t in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    failures = [o for o in outcomes if isinstance(o, Exception)]
    assert failures == []
    assert len(outcomes) == 36
    history = remote_log(gitops_remote)
    assert {o.revision for o in outcomes} <= set(history)
    assert history.index(before) == 36  # one commit per write, none lost, none twice


def test_a_write_turn_on_an_unreachable_database_fails_fast_and_commits_nothing(
    tmp_path: Path, gitops_remote: Path
):
    engine = make_engine(f"postgresql+psycopg://nobody:x@127.0.0.1:{free_port()}/none", timeout=2)
    turn = AdvisoryWriteTurn(engine, 1)
    repo = GitPythonRepo(
        str(gitops_remote), "main", tmp_path / "clones", GitOptions(head_ttl=0.0, write_turn=turn)
    )
    repo.open()
    before = remote_head(gitops_remote)
    try:
        with pytest.raises(Unavailable) as raised:
            repo.change(note("x"), actor="alice", trailers={})
    finally:
        repo.close()
        turn.close()
        engine.dispose()
    assert raised.value.code == "database_unavailable"
    assert remote_head(gitops_remote) == before
