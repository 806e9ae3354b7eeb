"""Writes of one process that wait for the write lock are grouped: one push, a commit each.

A first write holds the lock (its operation waits on an event) until the others have queued up;
then it lets go, and the next thread to take the lock writes all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from stageflow.adapters.git import GitPythonRepo, Push
from stageflow.domain.errors import NotFound, Unavailable
from stageflow.services.ports import Change, Committed, Workspace
from tests.builders import (
    changed_files,
    commit_message,
    read_remote,
    remote_head,
    remote_log,
    third_party_commit,
)
from tests.conftest import git

Operation = Callable[[Workspace], Change[Any]]


def note(name: str) -> Operation:
    def operation(ws: Workspace) -> Change[str]:
        ws.write(f"notes/{name}.txt", f"{name}\n")
        return Change(f"note {name}", ws.revision)

    return operation


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.002)


def grouped(repo: GitPythonRepo, operations: Sequence[Operation]) -> list[Any]:
    """Write ``operations`` while a first write holds the lock; return each outcome (or error),
    the first write's first."""
    entered, release = threading.Event(), threading.Event()

    def first(ws: Workspace) -> Change[str]:
        entered.set()
        assert release.wait(30)
        ws.write("notes/first.txt", "first\n")
        return Change("note first", ws.revision)

    outcomes: list[Any] = [None] * (len(operations) + 1)

    def run(index: int, operation: Operation) -> None:
        trailers = {"Stageflow-Change": f"change-{index}", "Stageflow-Actor": "alice"}
        try:
            outcomes[index] = repo.change(operation, actor="alice", trailers=trailers)
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(0, first))]
    threads[0].start()
    assert entered.wait(30)
    for index, operation in enumerate(operations, 1):
        threads.append(threading.Thread(target=run, args=(index, operation)))
        threads[-1].start()
        # queued in this order (the queue is the repo's own: the only way to know it waited)
        _eventually(lambda n=index: repo.writes.waiting() == n, f"write {index} is queued")
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def counting(repo: GitPythonRepo, pushed: list[str]) -> GitPythonRepo:
    """Make ``repo`` push through a push that notes each SHA in ``pushed``."""
    real: Push = repo.writes.push

    def push(sha: str, base: str) -> tuple[bool, str]:
        pushed.append(sha)
        return real(sha, base)

    repo.writes.push = push
    return repo


@pytest.fixture
def pushes() -> list[str]:
    """The SHAs the test's repo pushed, in order (``counting`` notes them)."""
    return []


def test_waiting_writes_land_in_one_push_each_as_its_own_commit(
    open_repo, gitops_remote: Path, pushes: list[str]
):
    repo = counting(open_repo(), pushes)
    base = remote_head(gitops_remote)
    sum_before = REGISTRY.get_sample_value("stageflow_git_commits_per_push_sum") or 0

    outcomes = grouped(repo, [note(f"w{i}") for i in range(1, 6)])

    assert all(isinstance(done, Committed) and done.committed for done in outcomes), outcomes
    revisions = [done.revision for done in outcomes]
    assert remote_log(gitops_remote, 7) == [*reversed(revisions), base]
    assert len(pushes) == 2 and pushes[-1] == revisions[-1]  # the first alone, then the five
    assert REGISTRY.get_sample_value("stageflow_git_commits_per_push_sum") == sum_before + 6
    for index, done in enumerate(outcomes):
        name = "first" if index == 0 else f"w{index}"
        assert changed_files(gitops_remote, done.revision) == [f"notes/{name}.txt"]
        assert f"Stageflow-Change: change-{index}" in commit_message(gitops_remote, done.revision)
        # each operation ran on the commit before its own
        assert done.result == (base if index == 0 else revisions[index - 1])
    assert git("status", "--porcelain", "--ignored", cwd=repo.workdir) == ""


def test_a_failing_write_in_a_group_leaves_no_trace_and_the_others_land(
    open_repo, gitops_remote: Path, pushes: list[str]
):
    repo = counting(open_repo(), pushes)

    def refused(ws: Workspace) -> Change[None]:
        ws.write("notes/refused.txt", "half written\n")
        raise NotFound("no flag named nope; GET …/flags lists them")

    def broken(ws: Workspace) -> Change[None]:
        ws.write("notes/broken.txt", "half written\n")
        ws.delete("notes/w1.txt")
        raise RuntimeError("a bug")

    def unchanged(ws: Workspace) -> Change[str]:
        ws.write("notes/w1.txt", "w1\n")  # as w1 left it
        return Change("nothing", ws.revision)

    outcomes = grouped(repo, [note("w1"), refused, broken, unchanged, note("w5")])

    first, w1, no, bug, same, w5 = outcomes
    assert isinstance(no, NotFound) and isinstance(bug, RuntimeError)
    assert same.committed is False and same.revision == w1.revision == same.result
    assert w5.committed and remote_log(gitops_remote, 3) == [
        w5.revision,
        w1.revision,
        first.revision,
    ]
    assert changed_files(gitops_remote, w5.revision) == ["notes/w5.txt"]
    files = git("--git-dir", str(gitops_remote), "ls-tree", "-r", "--name-only", "main")
    assert "notes/refused.txt" not in files and "notes/broken.txt" not in files
    assert read_remote(gitops_remote, "main", "notes/w1.txt") == "w1\n"
    assert len(pushes) == 2
    assert git("status", "--porcelain", "--ignored", cwd=repo.workdir) == ""


def test_a_group_whose_push_is_rejected_is_applied_again_on_the_new_head(
    open_repo, gitops_remote: Path, pushes: list[str]
):
    repo = counting(open_repo(), pushes)
    runs: list[str] = []
    third: list[str] = []

    def racing(ws: Workspace) -> Change[str]:
        runs.append(ws.revision)
        if len(runs) == 1:  # someone pushes while the group is being written
            third.append(third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n"))
        ws.write("notes/racing.txt", f"saw {ws.read('hand/edit.txt')!r}\n")
        return Change("note racing", ws.revision)

    outcomes = grouped(repo, [racing, note("w2"), note("w3")])

    first, race, w2, w3 = outcomes
    assert all(done.committed for done in outcomes), outcomes
    assert runs == [first.revision, third[0]]  # re-run on the third party's head
    assert remote_log(gitops_remote, 5) == [
        w3.revision,
        w2.revision,
        race.revision,
        third[0],
        first.revision,
    ]
    assert read_remote(gitops_remote, race.revision, "notes/racing.txt") == "saw 'by hand\\n'\n"
    assert len(pushes) == 3  # the first; the group, rejected; the group again


def test_a_failed_push_fails_every_write_of_the_group(open_repo, gitops_remote: Path):
    repo = open_repo()
    before = remote_head(gitops_remote)
    real = repo.writes.push
    pushed: list[str] = []

    def down_after_the_first(sha: str, base: str) -> tuple[bool, str]:
        pushed.append(sha)
        if len(pushed) > 1:
            raise Unavailable("cannot push: the remote is down; nothing was committed")
        return real(sha, base)

    repo.writes.push = down_after_the_first

    first, *group = grouped(repo, [note("w1"), note("w2")])

    assert first.committed and remote_log(gitops_remote, 2) == [first.revision, before]
    assert all(isinstance(error, Unavailable) for error in group), group
    assert git("status", "--porcelain", "--ignored", cwd=repo.workdir) == ""
    assert git("rev-parse", "HEAD", cwd=repo.workdir).strip() == first.revision


def test_a_long_queue_is_written_in_groups_of_a_bounded_size(
    open_repo, gitops_remote: Path, pushes: list[str]
):
    repo = counting(open_repo(), pushes)
    repo.writes.max_batch = 2

    outcomes = grouped(repo, [note(f"w{i}") for i in range(1, 6)])

    assert all(done.committed for done in outcomes), outcomes
    assert remote_log(gitops_remote, 6) == [done.revision for done in reversed(outcomes)]
    assert pushes == [outcomes[i].revision for i in (0, 2, 4, 5)]  # 1, then 2 + 2 + 1
