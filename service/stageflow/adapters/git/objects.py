"""Reads of the clone's objects (blobs, trees, commits), remembered where they cannot change."""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Final, Generic, TypeVar

import git
from git.objects.fun import tree_entries_from_data
from gitdb.exc import ODBError

from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.refs import is_full_sha, is_object_id
from stageflow.domain.errors import NotFound

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Missing(enum.Enum):
    """What a memo's ``get`` answers for a key it does not hold (None is a value there)."""

    MISSING = 0


MISSING: Final = _Missing.MISSING


class Memo(OrderedDict[tuple[str, K], V], Generic[K, V]):
    """Answers of lookups at a revision, the oldest dropped past ``size``.

    Only answers at a full SHA are kept: a branch name or short SHA can come to mean another
    commit. A plain ``OrderedDict`` underneath, so that a hit is one ``get`` (no lock: a racing
    eviction at worst costs a lookup again).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: tuple[str, K], value: V) -> None:
        if not is_full_sha(key[0]):
            return
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class BlobCache:
    """Blob contents by id within a byte budget: a blob id names its contents forever."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0  # bytes held
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, blob_id: str) -> bytes | None:
        with self._lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
            return data

    def keep(self, blob_id: str, data: bytes) -> None:
        """Keep ``data`` unless it would take over a quarter of the budget."""
        if len(data) > self.budget // 4 or not is_object_id(blob_id):
            return
        with self._lock:
            if blob_id in self._blobs:
                return
            self._blobs[blob_id] = data
            self.size += len(data)
            while self.size > self.budget:
                _, dropped = self._blobs.popitem(last=False)
                self.size -= len(dropped)


# The kinds of tree entries, as a tree entry's mode says them (``mode >> 12``).
_TREE = 0o04
_BLOB = 0o10
_SUBMODULE = 0o16


def _kind(mode: int) -> int:
    """A tree entry's kind: a tree, a submodule, or (files and symbolic links) a blob."""
    kind = mode >> 12
    return kind if kind in (_TREE, _SUBMODULE) else _BLOB


class TreeCache:
    """The entries of trees by id (an id names its entries forever), the first read dropped past
    ``size``; a racing eviction at worst costs a read again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads = 0  # trees read from Git (tests see the reuse by it)
        self._trees: OrderedDict[str, dict[str, tuple[int, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha: str) -> dict[str, tuple[int, str]] | None:
        return self._trees.get(sha)

    def keep(self, sha: str, entries: dict[str, tuple[int, str]]) -> None:
        with self._lock:
            self.reads += 1
            self._trees[sha] = entries
            while len(self._trees) > self.size:
                self._trees.popitem(last=False)


class ObjectStore:
    """Blobs, trees and commits of the clone, for the read side of the `GitRepo` port.

    Every lookup in GitPython's `cat-file` helpers holds the clone's object lock for that one
    lookup; answers at a full SHA are remembered, so hot reads never take it.
    """

    def __init__(self, clone: Clone, *, cache_size: int, blob_cache_bytes: int) -> None:
        self.clone = clone
        self.lock = clone.lock
        self.blobs = BlobCache(blob_cache_bytes)
        self._blob_ids: Memo[str, str | None] = Memo(cache_size)  # (revision, path)
        self._tree_ids: Memo[str, str | None] = Memo(cache_size)
        self._tree_entries: Memo[str, tuple[tuple[str, str], ...]] = Memo(cache_size)
        self._last_change: Memo[tuple[str, ...], str | None] = Memo(cache_size)
        self._roots: Memo[str, str] = Memo(cache_size)  # (commit, "") -> its tree
        self.trees = TreeCache(cache_size)

    def blob_id(self, revision: str, path: str) -> str | None:
        """Return the blob SHA of ``path`` at ``revision`` (None when it does not exist)."""
        key = (revision, path)
        cached = self._blob_ids.get(key, MISSING)  # one lookup: another thread may evict
        if cached is not MISSING:
            return cached
        found = self._entry(revision, path, _BLOB)
        self._blob_ids.remember(key, found)
        return found

    def tree_id(self, revision: str, path: str) -> str | None:
        """Return the tree SHA of directory ``path`` at ``revision`` (None when absent)."""
        key = (revision, path)
        cached = self._tree_ids.get(key, MISSING)
        if cached is not MISSING:
            return cached
        found = self._entry(revision, path, _TREE)
        self._tree_ids.remember(key, found)
        return found

    def _entry(self, revision: str, path: str, kind: int) -> str | None:
        """Return the SHA of ``path`` at ``revision`` when it is an object of ``kind``."""
        found = self._lookup(revision, path)
        return found[1] if found is not None and found[0] == kind else None

    def tree_entries(self, revision: str, path: str) -> dict[str, str]:
        """Return ``{name: object SHA}`` of the entries of directory ``path`` at ``revision``."""
        key = (revision, path)
        cached = self._tree_entries.get(key)
        if cached is not None:
            return dict(cached)
        found = self._lookup(revision, path)
        entries = {}
        if found is not None and found[0] == _TREE:
            entries = {name: sha for name, (_, sha) in self._tree(found[1]).items()}
        self._tree_entries.remember(key, tuple(entries.items()))
        return entries

    def _lookup(self, revision: str, path: str) -> tuple[int, str] | None:
        """The (kind, SHA) of ``path`` at ``revision``, walked down from the commit's tree.

        As GitPython's ``tree / path`` resolves it (each ``/``-separated name in turn, only
        trees above the last), but over trees held by id: a new revision reads only the trees
        its commit changed (the root and the folders above the written files), where a walk
        from the commit reads every tree on the path from Git again (~0.1-1 ms each).
        """
        kind, sha = _TREE, self._root_tree(revision)
        for name in path.split("/"):
            if kind != _TREE:
                return None
            entry = self._tree(sha).get(name)
            if entry is None:
                return None
            kind, sha = entry
        return kind, sha

    def _root_tree(self, revision: str) -> str:
        key = (revision, "")
        found = self._roots.get(key)
        if found is not None:
            return found
        with self.lock:
            found = str(self.commit_at(revision).tree.hexsha)
        self._roots.remember(key, found)
        return found

    def _tree(self, sha: str) -> dict[str, tuple[int, str]]:
        """The entries of tree ``sha``, ``{name: (kind, SHA)}`` (held by id: it never changes)."""
        found = self.trees.get(sha)
        if found is not None:
            return found
        try:
            with self.lock:
                data = self.clone.repo.odb.stream(bytes.fromhex(sha)).read()
        except (ValueError, ODBError):
            self.clone.status.objects_gone()
            raise
        found = {
            name: (_kind(mode), binsha.hex()) for binsha, mode, name in tree_entries_from_data(data)
        }
        self.trees.keep(sha, found)
        return found

    def commit_at(self, revision: str) -> git.Commit:
        """Return the commit ``revision`` names; ``NotFound`` when the clone has no such one."""
        try:
            commit = self.clone.repo.commit(revision)
            commit.tree  # noqa: B018 - a full SHA is resolved lazily; load it here, inside the try
        except (ValueError, ODBError):
            self.clone.status.objects_gone()
            raise NotFound(
                f"revision {revision} is not in the clone of {self.clone.origin.display_url}",
                code="revision_not_found",
            ) from None
        return commit

    def read_blob(self, blob_id: str) -> bytes:
        # A blob id names its contents forever, so hot reads never touch `cat-file` at all.
        data = self.blobs.get(blob_id)
        if data is not None:
            return data
        try:
            with self.lock:
                data = bytes(self.clone.repo.odb.stream(bytes.fromhex(blob_id)).read())
        except (ValueError, ODBError):
            self.clone.status.objects_gone()
            raise
        self.blobs.keep(blob_id, data)
        return data

    def blob_size(self, blob_id: str) -> int | None:
        """Return the size of a blob from its header (None when the clone lacks it)."""
        try:
            with self.lock:
                return int(self.clone.repo.odb.info(bytes.fromhex(blob_id)).size)
        except (ValueError, ODBError):
            return None

    def read(self, revision: str, path: str) -> str | None:
        """Return the text of ``path`` at ``revision``, or None when it does not exist."""
        blob = self.blob_id(revision, path)
        return None if blob is None else self.read_blob(blob).decode("utf-8")

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None:
        """Return the newest commit at or before ``revision`` that touched any of ``paths``."""
        key = (revision, tuple(sorted(paths)))
        cached = self._last_change.get(key, MISSING)
        if cached is not MISSING:
            return cached
        with self.lock:
            sha = self.commit_at(revision).hexsha
        pathspecs = [f":(literal){path}" for path in key[1]]
        try:
            out = self.clone.repo.git.log("-1", "--format=%H", sha, "--", *pathspecs).strip()
        except git.GitCommandError:
            self.clone.status.objects_gone()
            raise
        found = out or None
        self._last_change.remember(key, found)
        return found

    def parent_of(self, revision: str) -> str | None:
        """Return the first parent of a commit (None for the root commit)."""
        with self.lock:
            parents = self.commit_at(revision).parents
            return parents[0].hexsha if parents else None

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None:
        """Return the newest commit on the remote branch carrying trailer ``key: value``."""
        clone = self.clone
        clone.fetch()
        out: list[str] = clone.repo.git.log(
            f"-{limit}",
            "--format=%H",
            "--fixed-strings",
            f"--grep={key}: {value}",
            clone.tracking(),
        ).split()
        for sha in out:
            with self.lock:
                trailers = clone.repo.commit(sha).trailers_dict
            if value in trailers.get(key, []):
                return sha
        return None
