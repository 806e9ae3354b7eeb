"""A read-only workspace: the files of one revision, read through the `GitRepo` port.

A dry run plans, writes and renders exactly as the write does, but against this workspace: its
writes stay in memory, and ``directory`` copies what a render needs into a temporary folder. It
takes none of the write locks and never touches the clone's working tree, so a preview waits for
no write, and no write waits for a preview.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from stageflow.domain.errors import StageflowError
from stageflow.services.ports import GitRepo

# The files kustomize reads as a folder's kustomization.
KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
# A YAML scalar as a token: what a kustomization's `resources`, `components`, `patches`... name.
_TOKEN = re.compile(r"[^\s'\"\[\]{},#]+")
# Object ids known to be blobs. The port names a folder's entries without their type, and asking
# for the entries of a file path to learn that it is one costs a tree walk under the object lock
# at every new revision (~1-5 ms a file); an id names its contents forever, so a file unchanged
# since an earlier copy is known at once. Bounded by clearing: it only saves lookups.
_BLOBS: set[str] = set()
_MAX_BLOBS = 50_000


def outward_references(folder: str, text: str) -> list[str]:
    """The repo paths a kustomization in ``folder`` reaches outside it (``../base``, ...).

    Everything inside the folder is copied with it; what lies outside is named with ``..``. Any
    token that is not a path (a URL, a word) resolves to nothing in the revision and is skipped
    by the caller, so reading too much here only costs a lookup.
    """
    found = []
    for token in _TOKEN.findall(text):
        if ".." not in token or "://" in token:
            continue
        path = posixpath.normpath(posixpath.join(folder, token))
        # the repository's root is not copied whole: no overlay renders the entire repository
        if path not in (".", "..") and not path.startswith("../") and not posixpath.isabs(path):
            found.append(path)
    return found


def _inside(rel: str) -> str:
    """``rel`` normalised; a path that leaves the repository is refused, as the clone does."""
    path = posixpath.normpath(rel)
    if posixpath.isabs(path) or path == ".." or path.startswith("../") or path == ".":
        raise StageflowError(f"path {rel!r} leaves the repository")
    return path


def _known_blob(object_id: str) -> None:
    if len(_BLOBS) >= _MAX_BLOBS:
        _BLOBS.clear()
    _BLOBS.add(object_id)


class ScratchWorkspace:
    """The `Workspace` port over a revision: reads from Git, writes kept in memory."""

    def __init__(self, repo: GitRepo, revision: str) -> None:
        self.repo = repo
        self.revision = revision
        self._written: dict[str, str | None] = {}  # path -> text (None: deleted)
        self._copied: set[str] = set()  # folders copied whole into the scratch folder
        self._root: Path | None = None

    def __enter__(self) -> ScratchWorkspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove the scratch folder (if a render made one)."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._copied.clear()

    def read(self, path: str) -> str | None:
        path = _inside(path)
        if path in self._written:
            return self._written[path]
        text = self.repo.read(self.revision, path)
        if text is None or "\r" not in text:
            return text
        # as the clone's working tree reads it: newlines translated (adapters.git.workspace.text_of)
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def unwritten_blob(self, path: str) -> str | None:
        path = _inside(path)
        return None if path in self._written else self.repo.blob_id(self.revision, path)

    def write(self, path: str, text: str) -> None:
        self._written[_inside(path)] = text

    def delete(self, path: str) -> None:
        path = _inside(path)
        if self.read(path) is not None:
            self._written[path] = None

    def directory(self, path: str) -> Path:
        """The folder ``path`` on disk, as this workspace has it now (for a render)."""
        path = _inside(path)
        self._copy_folder(path)
        self._write_out()
        return self._scratch() / path

    def _scratch(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="stageflow-preview-"))
        return self._root

    def _copy_folder(self, folder: str) -> None:
        """Copy ``folder`` at the revision, and whatever its kustomizations reach outside it."""
        pending = [folder]
        while pending:
            current = pending.pop()
            if self._is_copied(current):
                continue
            entries = self.repo.tree_entries(self.revision, current)
            if not entries:  # a file (Git stores no empty folders), or nothing at all
                self._copy_file(current)
                continue
            pending.extend(self._copy_tree(current, entries))

    def _is_copied(self, path: str) -> bool:
        return any(path == done or path.startswith(done + "/") for done in self._copied)

    def _copy_tree(self, folder: str, entries: dict[str, str]) -> list[str]:
        """Copy ``folder`` and its subfolders; return the paths their kustomizations reach."""
        self._copied.add(folder)
        reached: list[str] = []
        for name, object_id in entries.items():
            path = f"{folder}/{name}"
            inner = {} if object_id in _BLOBS else self.repo.tree_entries(self.revision, path)
            if inner:
                reached.extend(self._copy_tree(path, inner))
                continue
            _known_blob(object_id)
            data = self.repo.read_blob(object_id)
            self._put(path, data)
            if name in KUSTOMIZATION_NAMES:
                reached.extend(outward_references(folder, data.decode("utf-8", "replace")))
        return reached

    def _copy_file(self, path: str) -> None:
        blob = self.repo.blob_id(self.revision, path)
        if blob is not None:
            self._put(path, self.repo.read_blob(blob))

    def _put(self, path: str, data: bytes) -> None:
        target = self._scratch() / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def _write_out(self) -> None:
        """Put this workspace's writes over the copied files."""
        for path, text in self._written.items():
            target = self._scratch() / path
            if text is None:
                target.unlink(missing_ok=True)
            else:
                self._put(path, text.encode("utf-8"))
