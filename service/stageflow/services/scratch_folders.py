"""The folders a ``ScratchWorkspace`` renders in, and the shelf that keeps them between plays.

A promotion's policy and parity gates play it in a ``ScratchWorkspace`` before every apply, and
copying the overlay and its base out of Git into a fresh temporary folder, then removing it, cost
~10 ms a play (a few dozen ``mkdir``/``write``/``rmdir`` calls). The base changes rarely and the
overlays little, so a kept folder knows which tree each of its folders holds (by tree id, which
names the contents for good) and which blob each file holds: the next play on a new revision
rewrites only the files whose blob changed, removes what the revision no longer has, and skips a
folder whose tree id is the one on disk without listing it at all.

A folder is lent to one workspace at a time (``ScratchShelf.take``/``give``); what a workspace
wrote into it (its in-memory writes, put over the copy for the render) is recorded as not any
blob's, so that the next play puts the committed file back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.services.ports import GitRepo

# An on-disk file that holds a workspace's write, not a committed blob: it is always rewritten.
WRITTEN = "written"
# Idle folders a shelf keeps; a burst of concurrent plays beyond this leaves folders removed.
KEEP_IDLE = 4
PREFIX = "stageflow-preview-"  # then the pid of the process that made the folder, and a dash


@dataclass
class ScratchFolder:
    """A temporary folder holding copies of a repository's files, and what each one holds."""

    root: Path
    # repo path -> blob id of the file on disk (WRITTEN: a workspace's write)
    files: dict[str, str] = field(default_factory=dict)
    # folder -> (tree id, paths its kustomizations reach outside it), for a folder on disk that
    # holds exactly that tree: it needs no copy, and its references need no reading
    trees: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # how many files were written into it and removed from it (tests watch the reuse by them)
    puts: int = 0
    removals: int = 0

    @classmethod
    def make(cls, base: Path | None = None) -> ScratchFolder:
        """A new empty folder in ``base`` (None: the system's temporary folder), named for this
        process so that ``sweep`` can tell a dead process's leftovers."""
        return cls(Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)))

    def put(self, path: str, data: bytes, blob: str) -> None:
        """Write ``data`` at ``path`` (a repo path), recorded as ``blob``'s contents."""
        self._forget(path)
        target = self.root / path
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files[path] = blob
        self.puts += 1

    def remove(self, path: str) -> None:
        """Remove the file or folder at ``path`` (a repo path), if there is one."""
        target = self.root / path
        if not os.path.lexists(target):
            return
        self._forget(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        self.removals += 1

    def remove_others(self, folder: str, names: set[str]) -> None:
        """Remove what the folder ``folder`` has on disk besides ``names``."""
        target = self.root / folder
        if not target.is_dir():
            if os.path.lexists(target):
                self.remove(folder)
            return
        with os.scandir(target) as found:
            extra = [entry.name for entry in found if entry.name not in names]
        for name in extra:
            self.remove(f"{folder}/{name}")

    def holds_tree(self, folder: str, tree: str) -> tuple[str, ...] | None:
        """The references of ``folder`` when it holds ``tree`` on disk now, else None."""
        held = self.trees.get(folder)
        return held[1] if held is not None and held[0] == tree else None

    def _forget(self, path: str) -> None:
        """Drop what is known of ``path``, of what lies under it, and of the folders above it.

        Called before anything on disk changes, so that a failure halfway leaves the records
        claiming less than the disk holds, never more (a folder not recorded is copied again).
        """
        self.files.pop(path, None)
        inside = path + "/"
        for known in [p for p in self.files if p.startswith(inside)]:
            del self.files[known]
        for known in [p for p in self.trees if p == path or p.startswith(inside)]:
            del self.trees[known]
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            self.trees.pop(parent, None)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class ScratchShelf:
    """Kept scratch folders of one repository, lent to one workspace at a time.

    Per process: a folder made before a fork is not handed out after it (two processes would
    write into the same files).
    """

    def __init__(self, keep: int = KEEP_IDLE, base: Path | None = None) -> None:
        self.keep = keep
        self.base = base  # where its folders are made (None: the system's temporary folder)
        self.made = 0  # folders made (tests see the reuse by it)
        self._idle: list[ScratchFolder] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def take(self) -> ScratchFolder:
        """Lend an idle folder, or make one."""
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
            self.made += 1
        return ScratchFolder.make(self.base)

    def give(self, folder: ScratchFolder) -> None:
        """Take ``folder`` back for the next play (removed when enough are idle already)."""
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < self.keep:
                self._idle.append(folder)
                return
        folder.close()

    def close(self) -> None:
        """Remove the idle folders."""
        with self._lock:
            idle, self._idle = self._idle, []
            mine = self._pid == os.getpid()
        for folder in idle if mine else ():
            folder.close()


_SHELVES: weakref.WeakKeyDictionary[GitRepo, ScratchShelf] = weakref.WeakKeyDictionary()
_SHELVES_LOCK = threading.Lock()


def shelf_of(
    repo: GitRepo, closers: list[Callable[[], Any]] | None = None, base: Path | None = None
) -> ScratchShelf:
    """The shelf of ``repo``'s scratch folders (one per repository object, made on first use).

    Its idle folders are removed by the first of: a call in ``closers`` (a Stageflow's, which
    its ``close`` runs), the repository object going, the process exiting. A process that is
    killed removes nothing: with a ``base`` of its own (the data dir's ``scratch/``), the folders
    of processes that are gone are removed when the next shelf there is made (``sweep``).
    """
    with _SHELVES_LOCK:
        found = _SHELVES.get(repo)
        if found is None:
            if base is not None:
                base.mkdir(parents=True, exist_ok=True)
                sweep(base)
            found = _SHELVES[repo] = ScratchShelf(base=base)
            weakref.finalize(repo, found.close)
            if closers is not None:
                closers.append(found.close)
        return found


def sweep(base: Path) -> list[Path]:
    """Remove the scratch folders in ``base`` whose process is gone; the removed ones."""
    gone = []
    for entry in base.glob(f"{PREFIX}*-*"):
        pid = entry.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            gone.append(entry)
    return gone


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def close_shelves() -> None:
    """Remove the idle folders of every shelf (for a process that ends without ``atexit``)."""
    with _SHELVES_LOCK:
        shelves = list(_SHELVES.values())
    for shelf in shelves:
        shelf.close()
