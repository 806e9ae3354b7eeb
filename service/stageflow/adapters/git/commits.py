"""One commit per operation: what it changed, with its message and trailers, in the clone."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.environment import BIG_FILE_OPTIONS, one_line
from stageflow.adapters.git.objects import ObjectStore
from stageflow.adapters.git.refs import object_id
from stageflow.adapters.git.workspace import CloneWorkspace
from stageflow.services.ports import Change

# Files from this size on are compared with their base blob by size first (`_other_size`).
_SIZE_CHECK_FROM = 64 * 1024


class GitFailed(RuntimeError):
    """A git command in the working clone failed for a reason of the machine (hook, disk)."""


class Committer:
    """Commits what an operation wrote in the clone's working tree, on the base it started at."""

    def __init__(self, clone: Clone, objects: ObjectStore) -> None:
        self.clone = clone
        self.objects = objects

    def commit(
        self,
        workspace: CloneWorkspace,
        change: Change[Any],
        actor: str,
        trailers: Mapping[str, str],
    ) -> str | None:
        """Commit what the operation wrote; None when that changed nothing."""
        if not workspace.written:
            return None
        clone = self.clone
        # Decided here, from the base's blob ids, rather than by `update-index` + `diff --cached`:
        # two processes fewer on every write.
        paths = self.changed(workspace)
        if not paths:  # written back exactly as it was: not worth an empty commit
            clone.clean_at = None
            return None
        base = workspace.revision
        added = [path for path in paths if self.objects.blob_id(base, path) is None]
        # the caller's win (its change id, actor)
        message = _message(change.message, {**change.trailers, **trailers})
        author = one_line(actor.replace("<", "").replace(">", "")) or "unknown"
        clone.clean_at = None  # from here on the index or HEAD may move
        if added:  # `git commit -- <paths>` takes only paths the index already knows
            clone.repo.git.update_index("--add", "--", *added)
        sha = self._commit_with_message(message, author, paths, base)
        if sha is None:  # a clean filter of .gitattributes made the bytes equal after all
            return None
        clone.clean_at = sha  # HEAD moved; the tree is clean at the new commit
        return sha

    def changed(self, workspace: CloneWorkspace) -> list[str]:
        """Return the written paths whose contents differ from the base commit's."""
        return [
            path
            for path in sorted(workspace.written)
            if self._differs(workspace.root / path, self.objects.blob_id(workspace.revision, path))
        ]

    def _differs(self, file: Path, before: str | None) -> bool:
        """True when ``file`` (perhaps deleted) is not the blob ``before`` (None: no blob)."""
        if before is not None and self._other_size(file, before):
            return True  # another size: changed, without reading and hashing it
        try:
            data = file.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return before is not None
        return before is None or object_id(b"blob", data, before) != before

    def _other_size(self, file: Path, blob_id: str) -> bool:
        """True when ``file`` is large and its size is not the blob's (so it differs from it).

        Asking the object database (a round trip to the `cat-file` helper) pays only for large
        files: hashing a 1 MB flags.json again costs ~1 ms, a small file's hash microseconds.
        """
        try:
            size = file.stat().st_size
        except OSError:
            return False
        if size < _SIZE_CHECK_FROM:
            return False
        known = self.objects.blob_size(blob_id)
        return known is not None and known != size

    def _commit_with_message(
        self, message: str, author: str, paths: list[str], base: str
    ) -> str | None:
        """Commit ``paths`` as they are in the working tree; return the new commit's SHA."""
        clone = self.clone
        assert clone.workdir is not None
        done = subprocess.run(
            # `--include` stages these paths from the working tree (also deletions) and commits
            # the index: one process instead of `update-index` + `commit`. The index is the base
            # commit's (the clone is reset to it before every write, and `changed` lists every
            # path the operation changed), so this commits exactly these paths, as `--only`
            # would; but `--only` builds a second, temporary index from HEAD and so hashes each
            # file twice (1 MB of flags.json: ~2 ms more).
            [
                "git",
                *BIG_FILE_OPTIONS,
                "commit",
                "-q",
                "--no-verify",
                "--no-gpg-sign",
                "-F",
                "-",
                "--include",
                "--",
                *paths,
            ],
            input=message,
            text=True,
            cwd=clone.workdir,
            check=False,
            capture_output=True,
            env=clone.origin.process_env(
                GIT_LITERAL_PATHSPECS="1",  # a path is a path, never a glob
                GIT_AUTHOR_NAME=author,
                GIT_AUTHOR_EMAIL="stageflow@localhost",
            ),
        )
        head = clone.head()
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            said = done.stdout + done.stderr
            if head == base and ("nothing to commit" in said or "no changes added" in said):
                return None
            # Not the client's doing (a hook, a full disk): `change` names the part in a 503.
            raise GitFailed(f"git commit failed in {clone.workdir}: {output}")
        return head


def _message(text: str, trailers: Mapping[str, str]) -> str:
    """The commit message: the operation's text, then one line per trailer."""
    lines = [text.rstrip(), ""]
    # One line per trailer: a newline in a value would forge further trailers.
    lines += [f"{key}: {one_line(value)}" for key, value in trailers.items()]
    return "\n".join(lines) + "\n"
