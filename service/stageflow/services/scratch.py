"""A read-only workspace: the files of one revision, read through the `GitRepo` port.

A dry run plans, writes and renders exactly as the write does, but against this workspace: its
writes stay in memory, and ``directory`` copies what a render needs into a temporary folder. It
takes none of the write locks and never touches the clone's working tree, so a preview waits for
no write, and no write waits for a preview.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from types import TracebackType

from stageflow.domain.errors import StageflowError
from stageflow.services.ports import GitRepo
from stageflow.services.scratch_folders import WRITTEN, ScratchFolder, ScratchShelf

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
    """The `Workspace` port over a revision: reads from Git, writes kept in memory.

    Renders happen in a ``ScratchFolder``: a fresh one removed on close, or, given a ``shelf``,
    one kept between workspaces, which a render brings up to this revision by tree and blob id
    (``scratch_folders``).
    """

    def __init__(self, repo: GitRepo, revision: str, shelf: ScratchShelf | None = None) -> None:
        self.repo = repo
        self.revision = revision
        self.shelf = shelf
        self._written: dict[str, str | None] = {}  # path -> text (None: deleted)
        self._copied: set[str] = set()  # folders brought up to the revision by this workspace
        self._folder: ScratchFolder | None = None

    def __enter__(self) -> ScratchWorkspace:
        return self

    @property
    def folder(self) -> ScratchFolder | None:
        """The scratch folder this workspace renders in (None until a render asks for one)."""
        return self._folder

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Give the scratch folder back to the shelf, or remove it (if a render made one)."""
        folder, self._folder = self._folder, None
        self._copied.clear()
        if folder is None:
            return
        if self.shelf is not None:
            self.shelf.give(folder)
        else:
            folder.close()

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
        folder = self._scratch()
        try:
            self._copy_folder(path)
            self._write_out()
        except BaseException:
            # a kept folder is only trusted when its records were kept whole: make a new one
            self._folder = None
            folder.close()
            raise
        return folder.root / path

    def _scratch(self) -> ScratchFolder:
        if self._folder is None:
            self._folder = self.shelf.take() if self.shelf is not None else ScratchFolder.make()
        return self._folder

    def _copy_folder(self, folder: str) -> None:
        """Copy ``folder`` at the revision, and whatever its kustomizations reach outside it."""
        pending = [folder]
        while pending:
            current = pending.pop()
            if self._is_copied(current):
                continue
            tree = self.repo.tree_id(self.revision, current)
            if tree is None:  # a file (Git stores no empty folders), or nothing at all
                self._copy_file(current)
                continue
            pending.extend(self._copy_tree(current, tree))

    def _is_copied(self, path: str) -> bool:
        return any(path == done or path.startswith(done + "/") for done in self._copied)

    def _copy_tree(
        self, folder: str, tree: str, entries: dict[str, str] | None = None
    ) -> list[str]:
        """Bring ``folder`` (``tree`` at the revision) and its subfolders up to the revision on
        disk; return the paths their kustomizations reach.

        A folder the scratch folder holds at this tree id already is neither listed nor copied.
        """
        disk = self._scratch()
        self._copied.add(folder)
        held = disk.holds_tree(folder, tree)
        if held is not None:
            return list(held)
        if entries is None:
            entries = self.repo.tree_entries(self.revision, folder)
        disk.remove_others(folder, set(entries))
        reached: list[str] = []
        for name, object_id in entries.items():
            path = f"{folder}/{name}"
            if disk.holds_tree(path, object_id) is not None:
                reached.extend(self._copy_tree(path, object_id))
                continue
            inner = {} if object_id in _BLOBS else self.repo.tree_entries(self.revision, path)
            if inner:
                reached.extend(self._copy_tree(path, object_id, inner))
                continue
            _known_blob(object_id)
            data = self._put(path, object_id)
            if name in KUSTOMIZATION_NAMES:
                data = data if data is not None else self.repo.read_blob(object_id)
                reached.extend(outward_references(folder, data.decode("utf-8", "replace")))
        disk.trees[folder] = (tree, tuple(reached))
        return reached

    def _copy_file(self, path: str) -> None:
        blob = self.repo.blob_id(self.revision, path)
        if blob is None:
            self._scratch().remove(path)  # a kept folder may have it from an older revision
        else:
            self._put(path, blob)

    def _put(self, path: str, blob: str) -> bytes | None:
        """Put ``blob`` at ``path`` unless it is there already; return the data when read."""
        disk = self._scratch()
        if disk.files.get(path) == blob:
            return None
        data = self.repo.read_blob(blob)
        disk.put(path, data, blob)
        return data

    def _write_out(self) -> None:
        """Put this workspace's writes over the copied files."""
        disk = self._scratch()
        for path, text in self._written.items():
            if text is None:
                disk.remove(path)
            else:
                disk.put(path, text.encode("utf-8"), WRITTEN)
