"""The GitOps repository: reads at the remote head, and writes as one commit per operation.

`GitPythonRepo` is the `GitRepo` port; it composes the parts that do the work, each of which can
be built and tested alone:

- `Clone`: this process's working clone (its slot, checkout, tracking ref, object lock);
- `RemoteHead`: the remote's head (a file read or a cached `ls-remote`) and `RemoteStatus`, the
  contact with the remote and its outage;
- `ObjectStore`: blobs, trees and commits, with their caches;
- `WriteQueue`: writes grouped into one push per turn (`WriteTurns`: the host lock, then the
  replicas'), retried on lost races, through an injectable `Push` (`GitPush.push`);
- `ClonesDisk`: the room left under the clones, and failures of the machine named as such.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import git

from stageflow.adapters.git import metrics
from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.commits import Committer
from stageflow.adapters.git.disk import ClonesDisk
from stageflow.adapters.git.environment import GIT_ENV, Origin
from stageflow.adapters.git.objects import ObjectStore
from stageflow.adapters.git.push import GitPush
from stageflow.adapters.git.refs import RefFiles
from stageflow.adapters.git.remote import RemoteHead
from stageflow.adapters.git.status import RemoteStatus
from stageflow.adapters.git.turns import WriteTurn, WriteTurns
from stageflow.adapters.git.workspace import CloneWorkspace
from stageflow.adapters.git.writes import WriteQueue
from stageflow.domain.errors import NotFound, Unavailable
from stageflow.services.ports import Change, Committed, Outage

T = TypeVar("T")


@dataclass(frozen=True)
class GitOptions:
    """How a `GitPythonRepo` caches, retries and takes turns (the settings of its parts)."""

    head_ttl: float = 0.1  # seconds a network remote's head is answered from memory
    push_attempts: int = 5  # pushes of one batch before a write answers 409
    cache_size: int = 4096  # entries of each lookup memo (blob ids, trees, last changes)
    blob_cache_bytes: int = 32 * 2**20
    host_lock_timeout: float = 60.0
    env: Mapping[str, str] = field(default_factory=dict)  # how git authenticates (auth_env)
    min_free_bytes: int = 0  # writes are refused with less free under the clones
    # The turn shared with other replicas (a database lock), taken inside the host lock; it
    # yields whether it had to wait. None: this host's writers only take turns.
    write_turn: WriteTurn | None = None


class GitPythonRepo:
    """The `GitRepo` port over a GitPython working clone of the GitOps remote."""

    def __init__(
        self, url: str, branch: str, clones_dir: Path, options: GitOptions | None = None
    ) -> None:
        options = options or GitOptions()
        self.url = url
        self.branch = branch
        self.clones_dir = clones_dir
        origin = Origin(url, branch, {**GIT_ENV, **options.env})
        self.status = RemoteStatus(origin.display_url)
        # The gauges describe the last repository opened; weakly, so they keep none alive.
        self.clone = Clone(
            origin,
            clones_dir,
            self.status,
            RefFiles(),
            on_open=partial(metrics.watch, weakref.ref(self)),
        )
        self.remote = RemoteHead(self.clone, ttl=options.head_ttl)
        self.objects = ObjectStore(
            self.clone, cache_size=options.cache_size, blob_cache_bytes=options.blob_cache_bytes
        )
        self.pusher = GitPush(self.remote)
        self.disk = ClonesDisk(clones_dir, options.min_free_bytes)
        self.writes = WriteQueue(
            Committer(self.clone, self.objects),
            self.remote,
            self.pusher.push,
            WriteTurns(
                clones_dir, origin.display_url, options.host_lock_timeout, options.write_turn
            ),
            attempts=options.push_attempts,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return self.clone.origin.display_url

    @property
    def workdir(self) -> Path | None:
        return self.clone.workdir

    @property
    def min_free_bytes(self) -> int:
        return self.disk.min_free_bytes

    @property
    def is_open(self) -> bool:
        return self.clone.is_open

    @property
    def repo(self) -> git.Repo:
        """The GitPython repository of the clone (opened on first use)."""
        return self.clone.repo

    def open(self) -> None:
        """Take a clone slot and make it an exact copy of the remote head (see `Clone.open`)."""
        self.clone.open()

    def close(self) -> None:
        """Release the clone's processes and its slot (a later use opens it again)."""
        with self.clone.lock:
            self.clone.abandon()
            self.remote.forget()
            self.writes.turns.close()

    # -- the remote ---------------------------------------------------------------------------

    def head(self, *, fresh: bool = False) -> str:
        """Return the SHA at the head of the tracked branch on the remote."""
        return self.remote.head(fresh=fresh)

    def outage(self) -> Outage | None:
        """Why and since when reads answer from the last head seen; None while all is well."""
        return self.status.down

    def contact_age(self) -> float | None:
        """Seconds since the remote last answered this process (None: it never did)."""
        return self.status.contact_age()

    def check_writable(self) -> str:
        """Say how the remote takes pushes; ``Unavailable`` naming why it would not."""
        return self.pusher.check_writable()

    def free_bytes(self) -> int:
        """Bytes free on the file system of the clones (the data dir)."""
        return self.disk.free_bytes()

    # -- reads --------------------------------------------------------------------------------

    def resolve(self, revision: str) -> str:
        """Return the full SHA of a commit of the tracked branch named by a full or short SHA."""
        if (
            not revision
            or not all(c in "0123456789abcdefABCDEF" for c in revision)
            or not 4 <= len(revision) <= 40
        ):
            raise NotFound(f"{revision!r} is not a commit SHA; send 4 to 40 hex digits")
        head = self.head()
        clone = self.clone
        # `rev-parse` and `merge-base` are processes of their own: no lock needed (the object
        # database lock is for GitPython's shared `cat-file` helpers only).
        sha = clone.rev_parse(revision)
        if sha is None:  # perhaps pushed since our last fetch
            clone.fetch()
            sha = clone.rev_parse(revision)
        # The clone also holds commits the remote never took (pushes that lost a race) and
        # whatever else was fetched; only history of the tracked branch counts.
        if sha is None or not clone.is_ancestor(sha, head):
            raise NotFound(
                f"revision {revision} is not a commit of {self.display_url} (branch "
                f"{self.branch}); send a full or unique short SHA of the tracked branch"
            )
        return sha

    def blob_id(self, revision: str, path: str) -> str | None:
        """Return the blob SHA of ``path`` at ``revision`` (None when it does not exist)."""
        return self.objects.blob_id(revision, path)

    def read_blob(self, blob_id: str) -> bytes:
        return self.objects.read_blob(blob_id)

    def read(self, revision: str, path: str) -> str | None:
        """Return the text of ``path`` at ``revision``, or None when it does not exist."""
        return self.objects.read(revision, path)

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None:
        """Return the newest commit at or before ``revision`` that touched any of ``paths``."""
        return self.objects.last_change(revision, paths)

    def tree_id(self, revision: str, path: str) -> str | None:
        """Return the tree SHA of directory ``path`` at ``revision`` (None when absent)."""
        return self.objects.tree_id(revision, path)

    def tree_entries(self, revision: str, path: str) -> dict[str, str]:
        """Return ``{name: object SHA}`` of the entries of directory ``path`` at ``revision``."""
        return self.objects.tree_entries(revision, path)

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None:
        """Return the newest commit on the remote branch carrying trailer ``key: value``."""
        return self.objects.find_trailer(key, value, limit=limit)

    def parent_of(self, revision: str) -> str | None:
        """Return the first parent of a commit (None for the root commit)."""
        return self.objects.parent_of(revision)

    # -- writes -------------------------------------------------------------------------------

    def change(
        self,
        operation: Callable[[CloneWorkspace], Change[T]],
        *,
        actor: str,
        trailers: Mapping[str, str],
    ) -> Committed[T]:
        """Apply ``operation`` on the remote head and push it as one commit (see `WriteQueue`)."""
        started = time.perf_counter()
        self.disk.check()
        if self.status.down is not None:
            self._ask_again_before_writing()
        try:
            committed = self.writes.submit(operation, actor, trailers)
        except Exception as exc:
            translated = self.disk.failure(exc, self.clone.workdir)
            if translated is exc:
                raise
            raise translated from exc
        metrics.WRITE_SECONDS.observe(time.perf_counter() - started)
        return committed

    def _ask_again_before_writing(self) -> None:
        """Known unreachable: ask again (it may be back) before rendering and committing
        anything, so that a write during an outage fails at once, naming the remote."""
        try:
            self.remote.ask()
        except Unavailable as exc:
            raise Unavailable(
                f"{exc.message}; writes need the remote — nothing was committed "
                "(reads answer from the last head seen meanwhile)",
                code="git_unavailable",
                details={"part": "remote"},
            ) from exc
        self.status.contact()
