"""Writes of large files through GitPythonRepo: the shortcuts a 1 MB flags.json takes (in-place
writes, a size check before hashing, a cheap pack for a local remote) commit the same bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import git as gitpython
import pytest

from stageflow.adapters.git.workspace import CloneWorkspace, text_of
from stageflow.services.ports import Change, Workspace
from tests.builders import changed_files, read_remote, remote_head
from tests.conftest import git

TRAILERS = {"Stageflow-Change": "c0ffee00-0000-4000-8000-000000000002", "Stageflow-Actor": "bob"}
BIG = "notes/big.json"


def big_text(fill: str, lines: int = 20_000) -> str:
    return "".join(f'  "line {i}": "{fill}",\n' for i in range(lines))


def writing(path: str, text: str) -> Callable[[Workspace], Change[str]]:
    def operation(ws: Workspace) -> Change[str]:
        ws.write(path, text)
        return Change(f"write {path}", ws.revision)

    return operation


@pytest.mark.parametrize(
    "data", [b"a\nb\n", b"a\r\nb\r\n", b"a\rb\r", b"mixed\r\n\r\rend", "Grüß\r\n".encode(), b""]
)
def test_text_decodes_as_read_text_does(tmp_path: Path, data: bytes) -> None:
    file = tmp_path / "f"
    file.write_bytes(data)
    assert text_of(data) == file.read_text(encoding="utf-8")


def test_workspace_write_leaves_exactly_the_new_bytes(tmp_path: Path) -> None:
    ws = CloneWorkspace(tmp_path, "base")
    (tmp_path / "f.json").write_text("x" * 1000)
    ws.write("f.json", "short\n")  # shorter: the rest is cut off
    assert (tmp_path / "f.json").read_bytes() == b"short\n"
    ws.write("f.json", "a longer text\n" * 50)
    assert (tmp_path / "f.json").read_bytes() == b"a longer text\n" * 50
    ws.write("d/new.json", "Grüß\n")  # a new file in a new directory
    assert (tmp_path / "d" / "new.json").read_bytes() == "Grüß\n".encode()
    assert ws.written == {"f.json", "d/new.json"}


def test_workspace_write_of_the_same_text_changes_nothing(tmp_path: Path) -> None:
    ws = CloneWorkspace(tmp_path, "base")
    (tmp_path / "same").write_text("same\n")
    (tmp_path / "crlf").write_bytes(b"one\r\ntwo\r\n")  # the same text, read as read_text reads
    ws.write("same", "same\n")
    ws.write("crlf", "one\ntwo\n")
    assert ws.written == set()
    assert (tmp_path / "crlf").read_bytes() == b"one\r\ntwo\r\n"


def test_large_writes_commit_the_bytes_written(open_repo, gitops_remote: Path) -> None:
    repo = open_repo()
    first = repo.change(writing(BIG, big_text("a")), actor="bob", trailers=TRAILERS)
    assert first.committed
    assert read_remote(gitops_remote, first.revision, BIG) == big_text("a")

    # another size: changed, known without hashing; the same size: hashed, and changed
    for text in (big_text("bb"), big_text("cc"), big_text("c")):
        done = repo.change(writing(BIG, text), actor="bob", trailers=TRAILERS)
        assert done.committed and changed_files(gitops_remote, done.revision) == [BIG]
        assert read_remote(gitops_remote, done.revision, BIG) == text
        assert remote_head(gitops_remote) == done.revision

    # the same bytes again: no commit
    head = remote_head(gitops_remote)
    again = repo.change(writing(BIG, big_text("c")), actor="bob", trailers=TRAILERS)
    assert not again.committed and again.revision == head


def test_a_push_to_a_local_remote_lands_the_same_objects(open_repo, gitops_remote: Path) -> None:
    repo = open_repo()
    done = repo.change(writing(BIG, big_text("delta")), actor="bob", trailers=TRAILERS)
    clone_tree = git("ls-tree", "-r", done.revision, cwd=repo.workdir)
    remote_tree = git("--git-dir", str(gitops_remote), "ls-tree", "-r", done.revision)
    assert clone_tree == remote_tree
    blob = git("--git-dir", str(gitops_remote), "rev-parse", f"{done.revision}:{BIG}").strip()
    assert git("--git-dir", str(gitops_remote), "cat-file", "-t", blob).strip() == "blob"
    # the remote's and the clone's own settings are untouched: the pack and big-file options
    # are for the commit and push commands only
    for key in ("pack.window", "pack.compression", "core.bigFileThreshold"):
        for where in (["--git-dir", str(gitops_remote)], ["-C", str(repo.workdir)]):
            probe = gitpython.Git().execute(
                ["git", *where, "config", "--get", key], with_exceptions=False
            )
            assert probe == ""
    assert git("--git-dir", str(gitops_remote), "fsck", "--strict", "--no-progress") == ""


def test_an_operation_knows_the_blob_of_each_file_it_has_not_written(
    open_repo, gitops_remote: Path
) -> None:
    repo = open_repo()
    first = repo.change(writing(BIG, big_text("a")), actor="bob", trailers=TRAILERS)
    seen: dict[str, str | None] = {}

    def operation(ws: Workspace) -> Change[None]:
        seen["before"] = ws.unwritten_blob(BIG)
        seen["missing"] = ws.unwritten_blob("notes/none.json")
        ws.write(BIG, big_text("b"))
        seen["after"] = ws.unwritten_blob(BIG)
        return Change("write b", None)

    assert repo.change(operation, actor="bob", trailers=TRAILERS).committed
    committed = git("--git-dir", str(gitops_remote), "rev-parse", f"{first.revision}:{BIG}")
    assert seen == {"before": committed.strip(), "missing": None, "after": None}
