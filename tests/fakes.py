"""In-memory fakes of the ports, for service tests that run in milliseconds.

``FakeGitRepo`` keeps commits as dicts of files, ``FakeUnitOfWork`` (``tests.fake_ledger``)
keeps the ledger in dicts (and rolls back what it did not commit), ``FakeClock`` moves only when
told. The parsers are the real ones (``bootstrap.codecs``): they are pure functions, and a fake
parser would test nothing. No Git subprocess and no database: the real things are tested in
tests/integration.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from stageflow.domain.errors import NotFound, StageflowError, Unavailable
from stageflow.domain.gates import (
    MetricReading,
    MetricSeries,
)
from stageflow.services.context import Stageflow
from stageflow.services.ports import (
    Change,
    Codecs,
    Committed,
    GitRepo,
    MetricsSource,
    Outage,
    Renderer,
    UnitOfWork,
)
from stageflow.services.state import git_blob_id
from tests.fake_ledger import FakeLedger, FakeUnitOfWork

__all__ = [
    "FakeClock",
    "FakeGitRepo",
    "FakeLedger",
    "FakeMetrics",
    "FakeRenderer",
    "FakeUnitOfWork",
    "FakeWorkspace",
    "FakeWorld",
    "fake_stageflow",
    "seed_files",
]

T = TypeVar("T")
SEED = Path(__file__).resolve().parent.parent / "overlays"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def seed_files() -> dict[str, str]:
    """The starter GitOps repo (``overlays/``), as paths and texts, without its manifest policies.

    ``FakeRenderer`` does not render Kubernetes objects, so nothing a policy could check: the
    policies and parity are tested against real ``kustomize build`` output (tests/e2e/test_policies,
    tests/unit/test_policies), and the fakes test the workflow's decisions without them.
    """
    files = {
        path.relative_to(SEED).as_posix(): path.read_text()
        for path in sorted(SEED.rglob("*"))
        if path.is_file()
    }
    files["stageflow.yaml"] = _without_policies(files["stageflow.yaml"])
    return files


def _without_policies(text: str) -> str:
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("policies:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "#")) or not line.strip()):
            continue
        skipping = False
        if line.strip().startswith("parity:"):
            continue
        kept.append(line)
    return "".join(kept)


@cache
def real_codecs() -> Codecs:
    from stageflow import bootstrap  # the flag schema compiles once per test session

    return bootstrap.codecs()


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# -- Git --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeCommit:
    revision: str
    parent: str | None
    files: Mapping[str, bytes]
    message: str
    trailers: Mapping[str, str]


def _tree_id(entries: Iterable[tuple[str, str]]) -> str:
    return hashlib.sha1(repr(sorted(entries)).encode(), usedforsecurity=False).hexdigest()


class FakeWorkspace:
    """The `Workspace` port over a commit's files in memory; ``directory`` writes them out."""

    def __init__(self, revision: str, files: Mapping[str, bytes], scratch: Path) -> None:
        self.revision = revision
        self.files = dict(files)
        self.written: set[str] = set()
        self._scratch = scratch

    def read(self, path: str) -> str | None:
        data = self.files.get(path)
        return None if data is None else data.decode("utf-8")

    def unwritten_blob(self, path: str) -> str | None:
        data = self.files.get(path)
        return None if path in self.written or data is None else git_blob_id(data)

    def write(self, path: str, text: str) -> None:
        if path.startswith("/") or ".." in path.split("/"):
            raise StageflowError(f"path {path!r} leaves the repository")
        self.files[path] = text.encode("utf-8")
        self.written.add(path)

    def delete(self, path: str) -> None:
        if self.files.pop(path, None) is not None:
            self.written.add(path)

    def directory(self, path: str) -> Path:
        root = Path(tempfile.mkdtemp(dir=self._scratch))
        for name, data in self.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root / path


class FakeGitRepo:
    """The `GitRepo` port over commits held in memory; ``change`` commits and "pushes" at once."""

    display_url = "fake://gitops"
    branch = "main"

    def __init__(self, files: Mapping[str, str], scratch: Path) -> None:
        self.commits: dict[str, FakeCommit] = {}
        self.blobs: dict[str, bytes] = {}
        self.scratch = scratch
        self.changes = 0  # how many times ``change`` ran (a dry run must not)
        # raised by the next ``change`` (before or after its commit lands): a failing remote
        self.fail_before_push: Exception | None = None
        self.fail_after_push: Exception | None = None
        self.down: Outage | None = None
        self._head = self._add(None, {p: t.encode() for p, t in files.items()}, "seed", {})

    # -- test set-up
    def commit(
        self,
        files: Mapping[str, str | None],
        message: str = "hand edit",
        trailers: Mapping[str, str] | None = None,
    ) -> str:
        """Push a commit as a person (or another process) would: ``None`` deletes a file."""
        current = dict(self.commits[self._head].files)
        for path, text in files.items():
            if text is None:
                current.pop(path, None)
            else:
                current[path] = text.encode()
        self._head = self._add(self._head, current, message, trailers or {})
        return self._head

    def _add(
        self,
        parent: str | None,
        files: Mapping[str, bytes],
        message: str,
        trailers: Mapping[str, str],
    ) -> str:
        for data in files.values():
            self.blobs[git_blob_id(data)] = data
        revision = hashlib.sha1(
            f"{parent}:{len(self.commits)}:{message}".encode(), usedforsecurity=False
        ).hexdigest()
        self.commits[revision] = FakeCommit(revision, parent, dict(files), message, dict(trailers))
        return revision

    def _files(self, revision: str) -> Mapping[str, bytes]:
        return self.commits[self.resolve(revision)].files

    # -- reads
    def head(self, *, fresh: bool = False) -> str:
        return self._head

    def outage(self) -> Outage | None:
        return self.down

    def resolve(self, revision: str) -> str:
        if revision in self.commits:
            return revision
        found = [sha for sha in self.commits if len(revision) >= 7 and sha.startswith(revision)]
        if len(found) != 1:
            raise NotFound(f"revision {revision} is not in the repo", code="revision_not_found")
        return found[0]

    def blob_id(self, revision: str, path: str) -> str | None:
        data = self._files(revision).get(path)
        return None if data is None else git_blob_id(data)

    def read_blob(self, blob_id: str) -> bytes:
        return self.blobs[blob_id]

    def read(self, revision: str, path: str) -> str | None:
        data = self._files(revision).get(path)
        return None if data is None else data.decode("utf-8")

    def _under(self, revision: str, path: str) -> dict[str, bytes]:
        prefix = path.rstrip("/") + "/"
        return {
            name[len(prefix) :]: data
            for name, data in self._files(revision).items()
            if name.startswith(prefix)
        }

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None:
        wanted = list(paths)
        at: str | None = self.resolve(revision)
        while at is not None:
            commit = self.commits[at]
            before = {} if commit.parent is None else self.commits[commit.parent].files
            if any(self._differs(commit.files, before, path) for path in wanted):
                return at
            at = commit.parent
        return None

    @staticmethod
    def _differs(now: Mapping[str, bytes], before: Mapping[str, bytes], path: str) -> bool:
        def part(files: Mapping[str, bytes]) -> dict[str, bytes]:
            return {n: d for n, d in files.items() if n == path or n.startswith(path + "/")}

        return part(now) != part(before)

    def tree_id(self, revision: str, path: str) -> str | None:
        under = self._under(revision, path)
        if not under:
            return None
        return _tree_id((name, git_blob_id(data)) for name, data in under.items())

    def tree_entries(self, revision: str, path: str) -> dict[str, str]:
        entries: dict[str, str] = {}
        for name, data in self._under(revision, path).items():
            first, _, rest = name.partition("/")
            if not rest:
                entries[first] = git_blob_id(data)
            elif first not in entries:
                entries[first] = self.tree_id(revision, f"{path}/{first}") or ""
        return entries

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None:
        if self.down is not None:
            raise Unavailable(self.down.message, code="git_unavailable")
        at: str | None = self._head
        while at is not None and limit > 0:
            if self.commits[at].trailers.get(key) == value:
                return at
            at, limit = self.commits[at].parent, limit - 1
        return None

    def parent_of(self, revision: str) -> str | None:
        return self.commits[self.resolve(revision)].parent

    # -- writes
    def change(
        self,
        operation: Callable[[Any], Change[T]],
        *,
        actor: str,
        trailers: Mapping[str, str],
    ) -> Committed[T]:
        self.changes += 1
        if self.fail_before_push is not None:
            failure, self.fail_before_push = self.fail_before_push, None
            raise failure
        base = self._head
        workspace = FakeWorkspace(base, self.commits[base].files, self.scratch)
        done = operation(workspace)
        if dict(workspace.files) == dict(self.commits[base].files):
            return Committed(revision=base, result=done.result, committed=False)
        self._head = self._add(base, workspace.files, done.message, {**trailers, **done.trailers})
        if self.fail_after_push is not None:
            failure, self.fail_after_push = self.fail_after_push, None
            raise failure
        return Committed(revision=self._head, result=done.result, committed=True)


class FakeRenderer:
    """The `Renderer` port: every file of the folder, in order (what changes, the diff shows)."""

    def __init__(self) -> None:
        self.renders = 0

    def render(self, directory: Path) -> str:
        self.renders += 1
        parts = []
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                parts.append(f"# {path.relative_to(directory)}\n{path.read_text()}")
        return "\n".join(parts)


class FakeMetrics:
    """The `MetricsSource` port: a reading per query (no data for any other)."""

    def __init__(self, readings: Mapping[str, MetricReading] | None = None) -> None:
        self.configured = True
        self.readings = dict(readings or {})

    def query(self, promql: str) -> MetricReading:
        return self.readings.get(promql, MetricReading())

    def query_range(self, promql: str, start: float, end: float, step: float) -> MetricSeries:
        return MetricSeries()


@dataclass
class FakeWorld:
    """A Stageflow over fakes, and the fakes themselves for the test to arrange and inspect."""

    sf: Stageflow
    repo: FakeGitRepo
    renderer: FakeRenderer
    ledger: FakeLedger
    clock: FakeClock
    units: list[FakeUnitOfWork] = field(default_factory=list)


def fake_stageflow(
    scratch: Path,
    files: Mapping[str, str] | None = None,
    *,
    metrics: MetricsSource | None = None,
) -> FakeWorld:
    """Return a Stageflow over in-memory fakes of the seed repo (or ``files``)."""
    repo = FakeGitRepo(seed_files() if files is None else files, scratch)
    renderer = FakeRenderer()
    ledger = FakeLedger()
    clock = FakeClock()
    world_units: list[FakeUnitOfWork] = []

    def uow() -> UnitOfWork:
        unit = FakeUnitOfWork(ledger)
        world_units.append(unit)
        return unit

    git: GitRepo = repo  # mypy checks each fake against its port here
    rendering: Renderer = renderer
    sf = Stageflow(
        repo=git, renderer=rendering, codecs=real_codecs(), uow=uow, metrics=metrics, clock=clock
    )
    return FakeWorld(sf, repo, renderer, ledger, clock, world_units)
