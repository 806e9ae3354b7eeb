"""The write-side parts of the Git adapter, each built alone over a real bare remote: the
committer, the push, the write turns, the disk, and the write queue with a push passed in."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.commits import Committer, GitFailed
from stageflow.adapters.git.disk import ClonesDisk
from stageflow.adapters.git.environment import GIT_ENV, Origin
from stageflow.adapters.git.objects import ObjectStore
from stageflow.adapters.git.push import GitPush, lost_race
from stageflow.adapters.git.refs import RefFiles
from stageflow.adapters.git.remote import RemoteHead
from stageflow.adapters.git.status import RemoteStatus
from stageflow.adapters.git.turns import WriteTurns
from stageflow.adapters.git.workspace import CloneWorkspace
from stageflow.adapters.git.writes import Push, WriteQueue
from stageflow.domain.errors import NotFound, StageflowError, Unavailable, WriteConflict
from stageflow.services.ports import Change, Committed, Workspace
from tests.builders import commit_message, read_remote, remote_head, third_party_commit
from tests.conftest import git


@dataclass
class Parts:
    """One clone and the parts over it, as `GitPythonRepo` composes them."""

    clone: Clone
    objects: ObjectStore
    remote: RemoteHead
    pusher: GitPush
    committer: Committer
    turns: WriteTurns

    def queue(self, push: Push | None = None, attempts: int = 3) -> WriteQueue:
        return WriteQueue(
            self.committer, self.remote, push or self.pusher.push, self.turns, attempts=attempts
        )

    def workspace(self) -> CloneWorkspace:
        base = self.clone.tracking()
        self.clone.reset(base)
        assert self.clone.workdir is not None
        return CloneWorkspace(self.clone.workdir, base, blob_of=self.objects.blob_id)


@pytest.fixture
def parts(tmp_path: Path, gitops_remote: Path) -> Iterator[Parts]:
    origin = Origin(str(gitops_remote), "main", dict(GIT_ENV))
    clone = Clone(origin, tmp_path / "clones", RemoteStatus(origin.display_url), RefFiles())
    clone.open()
    objects = ObjectStore(clone, cache_size=64, blob_cache_bytes=2**20)
    remote = RemoteHead(clone, ttl=0.0)
    turns = WriteTurns(tmp_path / "clones", origin.display_url, timeout=0.05)
    yield Parts(clone, objects, remote, GitPush(remote), Committer(clone, objects), turns)
    turns.close()
    clone.abandon()


def note(text: str) -> Change[str]:
    return Change(f"note {text}", text, trailers={"Stageflow-Action": "note"})


def writing(path: str, text: str):
    def operation(ws: Workspace) -> Change[str]:
        ws.write(path, text)
        return Change(f"write {path}", ws.revision)

    return operation


# -- the committer ----------------------------------------------------------------------------


def test_the_committer_commits_what_changed_with_one_line_trailers(parts: Parts):
    ws = parts.workspace()
    ws.write("notes/new.txt", "new\n")
    ws.write("stageflow.yaml", ws.read("stageflow.yaml") or "")  # written back as it was
    ws.delete("apps/demo/overlays/staging/kustomization.yaml")

    sha = parts.committer.commit(
        ws, note("x"), "Al <al@example.com>", {"Stageflow-Actor": "al\nStageflow-Forged: yes"}
    )

    assert sha is not None and parts.clone.head() == sha == parts.clone.clean_at
    changed = git("show", "--name-status", "--format=", sha, cwd=parts.clone.workdir).split()
    assert changed == ["D", "apps/demo/overlays/staging/kustomization.yaml", "A", "notes/new.txt"]
    message = git("log", "-1", "--format=%B%an", sha, cwd=parts.clone.workdir)
    assert message.startswith("note x\n\nStageflow-Action: note\n")
    assert "Stageflow-Actor: al Stageflow-Forged: yes\n" in message and message.endswith(
        "\nAl al@example.com\n"
    )


def test_the_committer_makes_no_commit_of_nothing(parts: Parts):
    ws = parts.workspace()
    assert parts.committer.commit(ws, note("x"), "al", {}) is None  # nothing written
    ws.write("stageflow.yaml", ws.read("stageflow.yaml") or "")
    assert parts.committer.changed(ws) == []
    assert parts.committer.commit(ws, note("x"), "al", {}) is None
    assert parts.clone.head() == ws.revision


def test_a_failed_commit_names_the_clone(parts: Parts):
    ws = parts.workspace()
    ws.write("stageflow.yaml", (ws.read("stageflow.yaml") or "") + "# more\n")
    lock = Path(parts.clone.repo.git_dir) / "index.lock"
    lock.write_text("")  # another git command holds the index
    try:
        with pytest.raises(GitFailed, match="git commit failed in"):
            parts.committer.commit(ws, note("x"), "al", {})
    finally:
        lock.unlink()


# -- the push ---------------------------------------------------------------------------------


def test_a_push_lands_on_its_base_and_loses_on_another(parts: Parts, gitops_remote: Path):
    base = parts.clone.tracking()
    ws = parts.workspace()
    ws.write("notes/a.txt", "a\n")
    sha = parts.committer.commit(ws, note("a"), "al", {})
    assert sha is not None

    assert parts.pusher.push(sha, base) == (True, "")
    assert remote_head(gitops_remote) == sha == parts.clone.tracking()

    parts.clone.reset(base)
    ws = CloneWorkspace(ws.root, base, blob_of=parts.objects.blob_id)
    ws.write("notes/b.txt", "b\n")
    stale = parts.committer.commit(ws, note("b"), "al", {})
    assert stale is not None
    pushed, why = parts.pusher.push(stale, base)
    assert not pushed and why and remote_head(gitops_remote) == sha


def test_pushes_refused_for_other_reasons_say_why(parts: Parts):
    refused = parts.pusher.refused("remote: Permission to org/repo denied to bot")
    assert refused.code == "git_read_only" and parts.clone.status.down is None
    down = parts.pusher.refused("Could not resolve host: git.example.com")
    assert down.code == "git_unavailable" and parts.clone.status.down is not None
    assert lost_race("! [rejected] main -> main (stale info)")
    assert lost_race("! [remote rejected] main -> main (failed to update ref)")
    assert not lost_race("! [remote rejected] main -> main (pre-receive hook declined)")


def test_a_local_remote_is_writable_unless_its_refs_are_not(parts: Parts, gitops_remote: Path):
    assert parts.pusher.check_writable() == "writable (local)"
    heads = gitops_remote / "refs" / "heads"
    heads.chmod(0o555)
    try:
        if os.access(heads, os.W_OK):
            pytest.skip("running as a user who may write anywhere")
        with pytest.raises(Unavailable) as raised:
            parts.pusher.check_writable()
        assert raised.value.code == "git_read_only"
    finally:
        heads.chmod(0o755)


# -- the write turns --------------------------------------------------------------------------


def test_write_turns_say_who_waited_and_give_up_in_time(tmp_path: Path):
    first = WriteTurns(tmp_path, "the remote", timeout=0.05)
    second = WriteTurns(tmp_path, "the remote", timeout=0.05)  # another process of this host
    try:
        with first.take() as waited:
            assert waited is False
            with (
                pytest.raises(WriteConflict, match="another process of this host"),
                second.take(),
            ):
                pass
        holder = threading.Thread(target=lambda: _hold(first, 0.02))
        holder.start()
        _wait_until_locked(tmp_path / "write.lock")
        with second.take() as waited:
            assert waited is True
        holder.join()
    finally:
        first.close()
        second.close()


def _hold(turns: WriteTurns, seconds: float) -> None:
    with turns.take():
        threading.Event().wait(seconds)


def _wait_until_locked(lock: Path) -> None:
    import fcntl

    with lock.open("a") as handle:
        for _ in range(2000):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
            except BlockingIOError:
                return
            threading.Event().wait(0.001)
    raise AssertionError("the lock was never taken")


def test_a_replica_turn_is_taken_inside_the_host_lock(tmp_path: Path):
    import contextlib

    taken: list[str] = []

    @contextlib.contextmanager
    def replica_turn() -> Iterator[bool]:
        taken.append("turn")
        yield True  # another replica was writing

    turns = WriteTurns(tmp_path, "the remote", replica_turn=replica_turn)
    with turns.take() as waited:
        assert waited is True and taken == ["turn"]
    turns.close()


# -- the disk ---------------------------------------------------------------------------------


def test_the_disk_refuses_writes_when_nearly_full_and_names_failures(tmp_path: Path):
    disk = ClonesDisk(tmp_path / "clones", min_free_bytes=2**62)
    with pytest.raises(Unavailable) as raised:
        disk.check()
    assert raised.value.code == "disk_full"
    ClonesDisk(tmp_path / "clones").check()  # no minimum: nothing to check

    def code(exc: Exception) -> str | None:
        return getattr(disk.failure(exc, tmp_path / "slot-0"), "code", None)

    assert code(OSError(errno.ENOSPC, "No space left on device")) == "disk_full"
    assert code(OSError(errno.EROFS, "Read-only file system")) == "disk_unwritable"
    assert code(GitFailed("git commit failed: hook")) == "clone_unusable"
    refused = NotFound("no flag named x")
    assert disk.failure(refused, None) is refused
    bug = RuntimeError("a bug")
    assert disk.failure(bug, None) is bug


# -- the write queue, with the push passed in -------------------------------------------------


def test_the_queue_pushes_through_the_push_it_was_given(parts: Parts, gitops_remote: Path):
    pushed: list[tuple[str, str]] = []

    def push(sha: str, base: str) -> tuple[bool, str]:
        pushed.append((sha, base))
        return parts.pusher.push(sha, base)

    base = remote_head(gitops_remote)
    done = parts.queue(push).submit(writing("notes/a.txt", "a\n"), "al", {"K": "v"})

    assert isinstance(done, Committed) and done.committed and done.result == base
    assert pushed == [(done.revision, base)] and remote_head(gitops_remote) == done.revision
    assert "K: v" in commit_message(gitops_remote, done.revision)
    assert parts.remote.head() == done.revision


def test_a_lost_race_runs_the_operation_again_on_the_new_head(parts: Parts, gitops_remote: Path):
    runs: list[str] = []
    third: list[str] = []

    def push(sha: str, base: str) -> tuple[bool, str]:
        if not third:  # someone else pushes first
            third.append(third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n"))
        return parts.pusher.push(sha, base)

    def operation(ws: Workspace) -> Change[str]:
        runs.append(ws.revision)
        ws.write("notes/a.txt", f"saw {ws.read('hand/edit.txt')!r}\n")
        return Change("note", ws.revision)

    done = parts.queue(push).submit(operation, "al", {})

    assert runs[1:] == third and done.result == third[0]
    assert read_remote(gitops_remote, done.revision, "notes/a.txt") == "saw 'by hand\\n'\n"


def test_a_queue_that_keeps_losing_gives_up_with_the_clone_at_its_base(parts: Parts):
    base = parts.clone.tracking()
    tries: list[str] = []

    def always_late(sha: str, base: str) -> tuple[bool, str]:
        tries.append(sha)
        return False, "! [rejected] main -> main (fetch first)"

    with pytest.raises(WriteConflict) as raised:
        parts.queue(always_late, attempts=3).submit(writing("notes/a.txt", "a\n"), "al", {})

    assert len(tries) == 3 and raised.value.details["attempts"] == 3
    assert parts.clone.head() == base
    assert git("status", "--porcelain", "--ignored", cwd=parts.clone.workdir) == ""


def test_a_push_that_fails_fails_the_write_and_resets_the_clone(parts: Parts):
    base = parts.clone.tracking()

    def down(sha: str, base: str) -> tuple[bool, str]:
        raise Unavailable("cannot push: the remote is down")

    with pytest.raises(Unavailable, match="remote is down"):
        parts.queue(down).submit(writing("notes/a.txt", "a\n"), "al", {})
    assert parts.clone.head() == base and parts.queue().waiting() == 0


def test_a_refusal_is_the_callers_and_pushes_nothing(parts: Parts):
    def refused(ws: Workspace) -> Change[None]:
        ws.write("notes/half.txt", "half\n")
        raise StageflowError("refused")

    def never(sha: str, base: str) -> tuple[bool, str]:
        raise AssertionError("nothing to push")

    with pytest.raises(StageflowError, match="refused"):
        parts.queue(never).submit(refused, "al", {})
    assert not Path(parts.clone.repo.working_tree_dir or "", "notes", "half.txt").exists()
