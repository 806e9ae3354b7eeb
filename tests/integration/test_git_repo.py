"""GitPythonRepo against real bare remotes: one commit per write, retries that re-run the
operation, a bound on retries, clean clones after every failure, and fresh reads."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git as gitpython
import pytest

from stageflow.adapters.git import GitPythonRepo, seed_bare_remote
from stageflow.api.errors import status_of
from stageflow.domain.errors import NotFound, StageflowError, Unavailable, WriteConflict
from stageflow.services.ports import Change, Workspace
from tests.builders import (
    changed_files,
    commit_message,
    read_remote,
    remote_head,
    remote_log,
    third_party_commit,
)
from tests.conftest import SEED, git

TRAILERS = {"Stageflow-Change": "c0ffee00-0000-4000-8000-000000000001", "Stageflow-Actor": "alice"}
NOTES = "notes/stageflow.txt"


def write(path: str, text: str, message: str = "write a file") -> Callable[[Workspace], Change]:
    def operation(ws: Workspace) -> Change[str]:
        ws.write(path, text)
        return Change(message, ws.revision)

    return operation


def assert_clean_at(repo: GitPythonRepo, revision: str) -> None:
    assert git("status", "--porcelain", "--ignored", cwd=repo.workdir) == ""
    assert git("rev-parse", "HEAD", cwd=repo.workdir).strip() == revision


# -- writes -----------------------------------------------------------------------------------


def test_a_write_is_one_commit_with_the_trailers(open_repo, gitops_remote: Path):
    repo = open_repo()
    base = remote_head(gitops_remote)

    done = repo.change(write(NOTES, "hello\n", "note: hello"), actor="alice", trailers=TRAILERS)

    assert done.committed and done.result == base
    assert remote_log(gitops_remote, 2) == [done.revision, base]
    message = commit_message(gitops_remote, done.revision)
    assert message.startswith("note: hello\n\n")
    assert "Stageflow-Change: c0ffee00-0000-4000-8000-000000000001" in message
    assert "Stageflow-Actor: alice" in message
    trailers = git(
        "--git-dir", str(gitops_remote), "log", "-1", "--format=%(trailers:only)", done.revision
    )
    assert trailers.split("\n")[:2] == [
        "Stageflow-Change: c0ffee00-0000-4000-8000-000000000001",
        "Stageflow-Actor: alice",
    ]
    author = git("--git-dir", str(gitops_remote), "log", "-1", "--format=%an", done.revision)
    assert author.strip() == "alice"
    assert changed_files(gitops_remote, done.revision) == [NOTES]
    assert read_remote(gitops_remote, done.revision, NOTES) == "hello\n"
    assert repo.head() == done.revision
    assert_clean_at(repo, done.revision)


def test_a_trailer_value_cannot_forge_further_trailers(open_repo, gitops_remote: Path):
    repo = open_repo()
    trailers = {"Stageflow-Actor": "mallory\nStageflow-Promotion: 42"}

    done = repo.change(write(NOTES, "x\n"), actor="mal<lory>\n", trailers=trailers)

    found = git(
        "--git-dir", str(gitops_remote), "log", "-1", "--format=%(trailers:only)", done.revision
    )
    assert [line for line in found.splitlines() if line] == [
        "Stageflow-Actor: mallory Stageflow-Promotion: 42"
    ]
    author = git("--git-dir", str(gitops_remote), "log", "-1", "--format=%an", done.revision)
    assert author.strip() == "mallory"


def test_a_rejected_push_refetches_and_runs_the_operation_again(open_repo, gitops_remote: Path):
    repo = open_repo()
    base = remote_head(gitops_remote)
    seen: list[str] = []
    third: list[str] = []

    def operation(ws: Workspace) -> Change[int]:
        seen.append(ws.revision)
        if len(seen) == 1:  # someone pushes between our base and our push
            third.append(third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n"))
        # the operation reads what is there, so a re-run builds on the third party's work
        ws.write(NOTES, f"on top of {ws.read('hand/edit.txt')!r}\n")
        return Change("note on top", len(seen))

    done = repo.change(operation, actor="alice", trailers=TRAILERS)

    assert seen == [base, third[0]]
    assert done.committed and done.result == 2
    assert remote_log(gitops_remote, 3) == [done.revision, third[0], base]
    assert read_remote(gitops_remote, done.revision, NOTES) == "on top of 'by hand\\n'\n"
    assert read_remote(gitops_remote, done.revision, "hand/edit.txt") == "by hand\n"
    assert changed_files(gitops_remote, done.revision) == [NOTES]
    assert_clean_at(repo, done.revision)


def test_every_attempt_losing_the_race_ends_in_409_and_commits_nothing(
    open_repo, gitops_remote: Path
):
    repo = open_repo(push_attempts=3)
    base = remote_head(gitops_remote)
    calls: list[str] = []
    third: list[str] = []

    def operation(ws: Workspace) -> Change[None]:
        calls.append(ws.revision)
        third.append(third_party_commit(gitops_remote, f"hand/{len(calls)}.txt", "x\n"))
        ws.write(NOTES, "never lands\n")
        return Change("never lands", None)

    with pytest.raises(WriteConflict) as raised:
        repo.change(operation, actor="alice", trailers=TRAILERS)

    assert len(calls) == 3
    assert calls == [base, *third[:2]]
    assert status_of(raised.value) == 409
    assert raised.value.code == "write_conflict"
    assert raised.value.details["attempts"] == 3
    assert remote_log(gitops_remote, 4) == [*reversed(third), base]
    for sha in third:
        assert "Stageflow-" not in commit_message(gitops_remote, sha)
    head = remote_head(gitops_remote)
    status = git("status", "--porcelain", "--ignored", cwd=repo.workdir)
    assert status == ""
    assert git("rev-parse", "HEAD", cwd=repo.workdir).strip() in {head, base}
    # and the clone is still usable: the next write lands on the newest head
    done = repo.change(write(NOTES, "lands\n"), actor="alice", trailers=TRAILERS)
    assert remote_log(gitops_remote, 2) == [done.revision, head]


def test_an_operation_that_raises_leaves_the_clone_exactly_as_before(
    open_repo, gitops_remote: Path
):
    repo = open_repo()
    base = remote_head(gitops_remote)
    before = git("ls-files", "-s", cwd=repo.workdir)

    def operation(ws: Workspace) -> Change[None]:
        ws.write("stageflow.yaml", "broken: [\n")
        ws.write("new/file.txt", "new\n")
        ws.delete("apps/demo/overlays/development/flags.json")
        (ws.directory("apps") / "untracked.tmp").write_text("junk")
        raise ValueError("the operation gave up")

    with pytest.raises(ValueError, match="gave up"):
        repo.change(operation, actor="alice", trailers=TRAILERS)

    assert remote_head(gitops_remote) == base
    assert_clean_at(repo, base)
    assert git("ls-files", "-s", cwd=repo.workdir) == before
    done = repo.change(write(NOTES, "after\n"), actor="alice", trailers=TRAILERS)
    assert changed_files(gitops_remote, done.revision) == [NOTES]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda ws: None, id="writes-nothing"),
        pytest.param(
            lambda ws: ws.write("stageflow.yaml", ws.read("stageflow.yaml")), id="same-text"
        ),
        pytest.param(
            lambda ws: (
                ws.write("stageflow.yaml", "changed\n"),
                ws.write("stageflow.yaml", (SEED / "stageflow.yaml").read_text()),
            ),
            id="written-back",
        ),
        pytest.param(
            lambda ws: (ws.write("tmp/scratch.txt", "x"), ws.delete("tmp/scratch.txt")),
            id="created-then-deleted",
        ),
    ],
)
def test_an_empty_change_makes_no_commit(open_repo, gitops_remote: Path, edit):
    repo = open_repo()
    base = remote_head(gitops_remote)

    def operation(ws: Workspace) -> Change[str]:
        edit(ws)
        return Change("nothing really", "result")

    done = repo.change(operation, actor="alice", trailers=TRAILERS)

    assert not done.committed
    assert done.revision == base and done.result == "result"
    assert remote_head(gitops_remote) == base
    assert git("status", "--porcelain", cwd=repo.workdir) == ""


def test_a_branch_someone_rewound_is_not_brought_back(open_repo, gitops_remote: Path):
    repo = open_repo()
    seed = remote_head(gitops_remote)
    ours = repo.change(write(NOTES, "1\n"), actor="alice", trailers=TRAILERS).revision
    # a person removes our commit from the branch with a force push
    git("--git-dir", str(gitops_remote), "update-ref", "refs/heads/main", seed, ours)

    done = repo.change(write("other.txt", "2\n"), actor="alice", trailers=TRAILERS)

    assert remote_log(gitops_remote) == [done.revision, seed]
    assert changed_files(gitops_remote, done.revision) == ["other.txt"]


def test_writers_racing_from_two_clones_lose_nothing(open_repo, gitops_remote: Path):
    base = remote_head(gitops_remote)
    repos = [open_repo(push_attempts=50), open_repo(push_attempts=50)]
    revisions: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(n: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(8):
                done = repos[n].change(
                    write(f"writer-{n}/{i}.txt", f"{n}-{i}\n"), actor="alice", trailers=TRAILERS
                )
                revisions[n].append(done.revision)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    history = remote_log(gitops_remote, 100)
    assert history[-1] == base and len(history) == 17
    assert set(history[:-1]) == set(revisions[0]) | set(revisions[1])
    files = git("--git-dir", str(gitops_remote), "ls-tree", "-r", "--name-only", "main")
    for n in range(2):
        for i in range(8):
            assert f"writer-{n}/{i}.txt" in files.splitlines()


def test_one_write_adds_deletes_and_edits_paths_taken_literally(open_repo, gitops_remote: Path):
    repo = open_repo()
    base = remote_head(gitops_remote)
    odd = "notes/[a]*?.txt"  # would be a glob as a pathspec

    def operation(ws: Workspace) -> Change[None]:
        ws.write(odd, "odd\n")
        ws.write("notes/a.txt", "a\n")  # matches the glob above: must not be committed by it
        ws.delete("apps/demo/overlays/development/flags.json")
        ws.write("stageflow.yaml", ws.read("stageflow.yaml") + "# edited\n")
        return Change("three kinds of change", None)

    done = repo.change(operation, actor="alice", trailers=TRAILERS)

    assert remote_log(gitops_remote, 2) == [done.revision, base]
    assert sorted(changed_files(gitops_remote, done.revision)) == sorted(
        ["apps/demo/overlays/development/flags.json", "notes/a.txt", odd, "stageflow.yaml"]
    )
    assert read_remote(gitops_remote, done.revision, odd) == "odd\n"
    assert read_remote(gitops_remote, done.revision, "stageflow.yaml").endswith("# edited\n")
    assert_clean_at(repo, done.revision)
    # the clone's view of the remote moved with the push (reads by branch name, find_trailer)
    assert git("rev-parse", "refs/remotes/origin/main", cwd=repo.workdir).strip() == done.revision


def test_writers_of_one_host_take_turns_and_start_from_each_others_head(
    open_repo, gitops_remote: Path
):
    first, second = open_repo(), open_repo()  # two clones on one data dir, like two workers
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []
    done: dict[str, str] = {}

    def slow(ws: Workspace) -> Change[None]:
        inside.set()
        assert release.wait(timeout=30)
        ws.write("first.txt", "1\n")
        return Change("first", None)

    def quick(ws: Workspace) -> Change[None]:
        seen.append(ws.revision)
        ws.write("second.txt", "2\n")
        return Change("second", None)

    def run(name: str, repo: GitPythonRepo, operation: Callable[[Workspace], Change]) -> None:
        done[name] = repo.change(operation, actor="alice", trailers=TRAILERS).revision

    one = threading.Thread(target=run, args=("first", first, slow))
    one.start()
    assert inside.wait(timeout=30)
    two = threading.Thread(target=run, args=("second", second, quick))
    two.start()
    two.join(timeout=0.3)
    assert two.is_alive() and not seen  # waits for the other writer instead of racing it
    release.set()
    one.join(timeout=30)
    two.join(timeout=30)

    # the waiting writer ran once, on the first writer's commit: no lost race, no second render
    assert seen == [done["first"]]
    assert remote_log(gitops_remote, 2) == [done["second"], done["first"]]


def test_a_writer_that_waits_too_long_for_its_turn_gets_409(open_repo, gitops_remote: Path):
    first, second = open_repo(), open_repo(host_lock_timeout=0.05)
    base = remote_head(gitops_remote)
    inside, release = threading.Event(), threading.Event()

    def slow(ws: Workspace) -> Change[None]:
        inside.set()
        assert release.wait(timeout=30)
        ws.write("first.txt", "1\n")
        return Change("first", None)

    writer = threading.Thread(
        target=first.change, args=(slow,), kwargs={"actor": "a", "trailers": TRAILERS}
    )
    writer.start()
    try:
        assert inside.wait(timeout=30)
        with pytest.raises(WriteConflict) as raised:
            second.change(write(NOTES, "x\n"), actor="alice", trailers=TRAILERS)
        assert status_of(raised.value) == 409
        assert "nothing was committed" in raised.value.message
    finally:
        release.set()
        writer.join(timeout=30)
    assert remote_head(gitops_remote) != base  # the first writer's commit, and only it
    assert changed_files(gitops_remote, remote_head(gitops_remote)) == ["first.txt"]
    assert_clean_at(second, base)


def test_reads_go_on_while_a_write_is_in_progress(open_repo, gitops_remote: Path):
    repo = open_repo()
    third = third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n")
    inside, release = threading.Event(), threading.Event()

    def operation(ws: Workspace) -> Change[None]:
        inside.set()
        assert release.wait(timeout=30)
        ws.write(NOTES, "x\n")
        return Change("slow", None)

    writer = threading.Thread(
        target=repo.change, args=(operation,), kwargs={"actor": "a", "trailers": TRAILERS}
    )
    writer.start()
    try:
        assert inside.wait(timeout=30)
        # a head this clone has never fetched, and blobs nobody has read yet
        assert repo.head() == third
        assert repo.read(third, "hand/edit.txt") == "by hand\n"
        assert repo.last_change(third, ["hand"]) == third
        assert repo.resolve(third[:10]) == third
    finally:
        release.set()
        writer.join(timeout=30)


def test_blob_contents_are_cached_by_id_within_a_byte_budget(open_repo, gitops_remote: Path):
    repo = open_repo(blob_cache_bytes=4000)
    head = repo.head()
    blob = repo.blob_id(head, "stageflow.yaml")
    text = repo.read(head, "stageflow.yaml")

    repo.objects.lock.acquire()  # the object database is busy: a cached blob does not need it
    try:
        assert repo.read_blob(blob).decode() == text
    finally:
        repo.objects.lock.release()
    for n in range(8):
        sha = third_party_commit(gitops_remote, f"big/{n}.txt", f"{n}" * 900)
        assert repo.head() == sha
        assert repo.read(sha, f"big/{n}.txt") == f"{n}" * 900
    assert repo.objects.blobs.size <= 4000
    assert repo.read_blob(blob).decode() == text  # evicted, read again


def test_reads_follow_a_remote_whose_refs_are_packed(open_repo, gitops_remote: Path):
    repo = open_repo()
    git("--git-dir", str(gitops_remote), "pack-refs", "--all", "--prune")
    assert not (gitops_remote / "refs" / "heads" / "main").exists()
    assert repo.head() == remote_head(gitops_remote)

    done = repo.change(write(NOTES, "packed\n"), actor="alice", trailers=TRAILERS)
    git("--git-dir", str(gitops_remote), "pack-refs", "--all", "--prune")
    third = third_party_commit(gitops_remote, "hand/edit.txt", "x\n")
    git("--git-dir", str(gitops_remote), "pack-refs", "--all", "--prune")

    assert repo.head() == third
    assert remote_log(gitops_remote, 2) == [third, done.revision]
    again = repo.change(write(NOTES, "again\n"), actor="alice", trailers=TRAILERS)
    assert remote_log(gitops_remote, 2) == [again.revision, third]


# -- reads ------------------------------------------------------------------------------------


def test_reads_see_a_third_party_push_at_once(open_repo, gitops_remote: Path):
    repo = open_repo()
    seed = repo.head()
    third = third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n")

    assert repo.head() == third
    assert repo.read(third, "hand/edit.txt") == "by hand\n"
    assert repo.read(seed, "hand/edit.txt") is None
    assert repo.read(third, "no/such/file") is None
    assert repo.read(third, "stageflow.yaml") == (SEED / "stageflow.yaml").read_text()
    blob = git("--git-dir", str(gitops_remote), "rev-parse", f"{third}:hand/edit.txt").strip()
    assert repo.blob_id(third, "hand/edit.txt") == blob
    assert repo.blob_id(third, "hand") is None  # a directory is not a blob
    assert repo.last_change(third, ["hand"]) == third
    assert repo.last_change(third, ["apps/demo/base", "stageflow.yaml"]) == seed
    assert repo.last_change(third, ["never/touched"]) is None
    assert repo.resolve(third) == third
    assert repo.resolve(third[:7]) == third
    assert repo.resolve(third[:12].upper()) == third


def test_a_slow_read_does_not_cache_a_head_older_than_a_write(open_repo, gitops_remote: Path):
    repo = open_repo(head_ttl=60.0)
    ask_remote = repo.remote.ask
    written: list[str] = []

    def remote_head_then_a_write_lands() -> str:
        # a reader asks the remote; before it caches the answer, a write of this process lands
        old = ask_remote()
        written.append(repo.change(write(NOTES, "x\n"), actor="a", trailers=TRAILERS).revision)
        return old

    repo.remote.ask = remote_head_then_a_write_lands  # type: ignore[method-assign]
    seed = repo.head(fresh=True)
    repo.remote.ask = ask_remote  # type: ignore[method-assign]

    assert seed != written[0]
    assert repo.head() == written[0] == remote_head(gitops_remote)  # read your writes


def test_resolve_refuses_what_is_not_a_commit_of_the_branch(open_repo, gitops_remote: Path):
    repo = open_repo()
    head = repo.head()
    blob = git("--git-dir", str(gitops_remote), "rev-parse", f"{head}:stageflow.yaml").strip()
    # a commit only the clone has (like one whose push lost a race)
    local_only = git(
        "commit-tree", f"{head}^{{tree}}", "-p", head, "-m", "never pushed", cwd=repo.workdir
    ).strip()

    for revision in ("0" * 40, "deadbeef", "zz", "", "abc", "a" * 41, blob, local_only):
        with pytest.raises(NotFound) as raised:
            repo.resolve(revision)
        assert status_of(raised.value) == 404
        assert raised.value.message


def test_reads_of_an_unknown_revision_are_not_found(open_repo):
    repo = open_repo()
    with pytest.raises(NotFound):
        repo.read("0" * 40, "stageflow.yaml")
    with pytest.raises(NotFound):
        repo.last_change("0" * 40, ["apps"])


def test_find_trailer_finds_the_commit_of_a_change(open_repo, gitops_remote: Path):
    repo = open_repo()
    done = repo.change(write(NOTES, "x\n"), actor="alice", trailers=TRAILERS)
    third_party_commit(gitops_remote, "later.txt", "later\n")

    assert repo.find_trailer("Stageflow-Change", TRAILERS["Stageflow-Change"]) == done.revision
    assert repo.find_trailer("Stageflow-Change", "no-such-change") is None


# -- an unreachable remote --------------------------------------------------------------------


def test_a_removed_remote_is_named_reads_keep_the_last_head_writes_fail(
    open_repo, gitops_remote: Path
):
    repo = open_repo()
    base = repo.head()
    assert repo.outage() is None
    shutil.rmtree(gitops_remote)

    # reads answer from the last head seen, and the outage says why and since when
    assert repo.head(fresh=True) == base
    outage = repo.outage()
    assert outage is not None and outage.since <= time.time()
    assert str(gitops_remote) in outage.message and "does not exist" in outage.message
    assert repo.read(base, "stageflow.yaml") == (SEED / "stageflow.yaml").read_text()
    assert repo.resolve(base[:8]) == base

    with pytest.raises(Unavailable) as pushed:
        repo.change(write(NOTES, "x\n"), actor="alice", trailers=TRAILERS)
    assert status_of(pushed.value) == 503
    assert pushed.value.code == "git_unavailable"
    assert str(gitops_remote) in pushed.value.message
    assert "nothing was committed" in pushed.value.message
    assert_clean_at(repo, base)


def test_a_remote_that_is_not_a_repository_is_named(open_repo, tmp_path: Path, gitops_remote):
    repo = open_repo()
    shutil.rmtree(gitops_remote)
    gitops_remote.mkdir()

    repo.head(fresh=True)
    outage = repo.outage()
    assert outage is not None and "not a Git repository" in outage.message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("{tmp}/nowhere.git", id="missing-dir"),
        pytest.param("http://127.0.0.1:1/gitops.git", id="refused-connection"),
    ],
)
def test_opening_an_unreachable_remote_is_unavailable(tmp_path: Path, url: str):
    repo = GitPythonRepo(url.format(tmp=tmp_path), "main", tmp_path / "clones")
    with pytest.raises(Unavailable) as raised:
        repo.open()
    assert raised.value.code == "git_unavailable"
    assert "cannot clone" in raised.value.message
    assert "STAGEFLOW_GIT_URL" in raised.value.message
    repo.close()


def test_a_wrong_branch_is_named(tmp_path: Path, gitops_remote: Path):
    repo = GitPythonRepo(str(gitops_remote), "nope", tmp_path / "clones")
    with pytest.raises(Unavailable) as raised:
        repo.open()
    assert "nope" in raised.value.message
    repo.close()


# -- clone slots ------------------------------------------------------------------------------


def test_two_instances_in_one_process_take_different_slots(open_repo, gitops_remote: Path):
    first, second = open_repo(), open_repo()

    assert first.workdir != second.workdir
    assert {first.workdir.name, second.workdir.name} == {"slot-0", "slot-1"}
    one = first.change(write("a.txt", "a\n"), actor="alice", trailers=TRAILERS)
    two = second.change(write("b.txt", "b\n"), actor="bob", trailers=TRAILERS)
    assert remote_log(gitops_remote, 2) == [two.revision, one.revision]
    assert_clean_at(second, two.revision)


def test_a_reopened_repo_reuses_its_slot_and_resets_a_dirty_clone(open_repo, gitops_remote: Path):
    first = open_repo()
    workdir = first.workdir
    first.close()
    # a crash left the clone dirty: edits, untracked and ignored files, a stale index lock
    (workdir / "stageflow.yaml").write_text("half written")
    (workdir / "apps" / "stray.txt").write_text("stray")
    (workdir / "apps" / "demo" / "base" / "kustomization.yaml").unlink()
    (workdir / ".git" / "index.lock").write_text("")
    third = third_party_commit(gitops_remote, "while/closed.txt", "x\n")

    again = open_repo()

    assert again.workdir == workdir
    assert_clean_at(again, third)
    assert not (workdir / ".git" / "index.lock").exists()
    done = again.change(write(NOTES, "x\n"), actor="alice", trailers=TRAILERS)
    assert changed_files(gitops_remote, done.revision) == [NOTES]


def test_a_broken_clone_in_the_slot_is_replaced(open_repo, gitops_remote: Path):
    first = open_repo()
    workdir = first.workdir
    first.close()
    shutil.rmtree(workdir / ".git")
    (workdir / ".git").mkdir()  # not a repository any more

    again = open_repo()

    assert again.workdir == workdir
    assert_clean_at(again, remote_head(gitops_remote))


def test_a_clone_with_damaged_objects_is_replaced(open_repo, gitops_remote: Path):
    first = open_repo()
    workdir = first.workdir
    first.close()
    # e.g. a full disk mid-write: every object file is cut short (new files: a local clone
    # hard-links the remote's objects, which must stay intact)
    for path in (workdir / ".git" / "objects").rglob("*"):
        if path.is_file():
            cut = path.read_bytes()[:20]
            path.unlink()
            path.write_bytes(cut)

    again = open_repo()

    assert again.workdir == workdir
    head = remote_head(gitops_remote)
    assert_clean_at(again, head)
    assert again.read(head, "stageflow.yaml") == (SEED / "stageflow.yaml").read_text()
    done = again.change(write(NOTES, "x\n"), actor="alice", trailers=TRAILERS)
    assert remote_log(gitops_remote, 2) == [done.revision, head]


def test_a_failed_open_gives_the_slot_back(tmp_path: Path, gitops_remote: Path, open_repo):
    broken = GitPythonRepo(str(tmp_path / "nowhere.git"), "main", tmp_path / "clones")
    with pytest.raises(Unavailable):
        broken.open()

    repo = open_repo()

    assert repo.workdir.name == "slot-0"
    broken.close()


# -- seeding ----------------------------------------------------------------------------------


def test_seeding_into_an_empty_directory_and_refusing_a_foreign_one(tmp_path: Path):
    empty = tmp_path / "empty.git"
    empty.mkdir()
    assert seed_bare_remote(SEED, empty, "main") is True
    assert (empty / "HEAD").exists()
    assert "stageflow.yaml" in git("--git-dir", str(empty), "ls-tree", "--name-only", "main")
    assert seed_bare_remote(SEED, empty, "main") is False

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StageflowError, match="not a Git repository"):
        seed_bare_remote(SEED, foreign, "main")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_reads_by_branch_name_follow_the_branch(open_repo, gitops_remote: Path):
    repo = open_repo()
    assert repo.read("origin/main", NOTES) is None
    done = repo.change(write(NOTES, "now\n"), actor="alice", trailers=TRAILERS)

    assert repo.read("origin/main", NOTES) == "now\n"
    assert repo.last_change("origin/main", [NOTES]) == done.revision


def test_a_clone_of_a_local_remote_catches_up_without_fetching(
    open_repo, gitops_remote: Path, monkeypatch
):
    first, second = open_repo(), open_repo()  # two workers' clones of the embedded remote
    pushed = first.change(write(NOTES, "one\n"), actor="alice", trailers=TRAILERS).revision

    commands: list[str] = []
    execute = gitpython.cmd.Git.execute

    def recorded(self: gitpython.cmd.Git, command: Any, *args: Any, **kwargs: Any) -> Any:
        commands.append(" ".join(map(str, command)))
        return execute(self, command, *args, **kwargs)

    monkeypatch.setattr(gitpython.cmd.Git, "execute", recorded)
    # The remote's objects are the clone's too (objects/info/alternates): a new head is enough.
    assert second.read(second.head(), NOTES) == "one\n"
    done = second.change(write(NOTES, "two\n"), actor="bob", trailers=TRAILERS)

    assert commands and not [c for c in commands if " fetch " in c]
    assert remote_log(gitops_remote, 2) == [done.revision, pushed]
    assert_clean_at(second, done.revision)
    assert second.read(done.revision, NOTES) == "two\n"
