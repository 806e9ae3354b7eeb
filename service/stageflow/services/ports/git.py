"""Ports of the GitOps repository: a workspace to change, the change and what it committed,
the remote's history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Change(Generic[T]):
    """What an operation did to the working tree: the commit message and the use case's result."""

    message: str
    result: T
    # Trailers the operation adds to the caller's (what it did: action, app, stage), so that
    # the ledger can be rebuilt from the commit should the process die before recording it.
    trailers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """A pushed (or empty) change: ``revision`` is the new head, or the unchanged base."""

    revision: str
    result: T
    committed: bool
    # When the push landed, as the service's clock saw it (set by services.changes).
    pushed_at: datetime | None = None


@dataclass(frozen=True)
class Outage:
    """The Git remote could not be reached: since when (Unix time) and what went wrong."""

    since: float
    message: str


class Workspace(Protocol):
    """The files of the GitOps repo at one base revision, for an operation to read and write."""

    revision: str

    def read(self, path: str) -> str | None: ...

    def unwritten_blob(self, path: str) -> str | None:
        """The blob id of ``path`` at ``revision`` while the operation has not written it.

        None once it has, or when the revision has no such file: then ``read`` it.
        """
        ...

    def write(self, path: str, text: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def directory(self, path: str) -> Path: ...


class GitRepo(Protocol):
    display_url: str
    branch: str

    def head(self, *, fresh: bool = False) -> str:
        """The remote's head; while the remote is unreachable, the last head this process saw."""
        ...

    def outage(self) -> Outage | None:
        """Why and since when ``head`` answers from memory; None while the remote answers."""
        ...

    def resolve(self, revision: str) -> str: ...

    def blob_id(self, revision: str, path: str) -> str | None: ...

    def read_blob(self, blob_id: str) -> bytes: ...

    def read(self, revision: str, path: str) -> str | None: ...

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None: ...

    def tree_id(self, revision: str, path: str) -> str | None: ...

    def tree_entries(self, revision: str, path: str) -> dict[str, str]: ...

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None: ...

    def parent_of(self, revision: str) -> str | None: ...

    def change(
        self,
        operation: Callable[[Any], Change[T]],
        *,
        actor: str,
        trailers: Mapping[str, str],
    ) -> Committed[T]: ...


@dataclass(frozen=True)
class CommitFacts:
    """A commit of the tracked branch as the settler reads it: its trailers and time."""

    revision: str
    at: datetime
    trailers: Mapping[str, str]


class History(Protocol):
    """The tracked branch's commits that carry Stageflow trailers (the ledger's truth)."""

    def stageflow_commits(self, since: str | None, head: str, *, limit: int) -> list[CommitFacts]:
        """Return commits after ``since`` up to ``head``, oldest first (the last ``limit``)."""
        ...

    def trailers_of(self, revision: str) -> Mapping[str, str]: ...

    def message_of(self, revision: str) -> str:
        """The whole commit message of ``revision`` (subject, body and trailers)."""
        ...
