"""Read the files of the desired state: at a revision for reads, in the working tree for writes.

Everything here is read at the remote head and cached by the blob SHA it was parsed from, so a
read after a change costs a parse only for the files that change touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from stageflow.domain.errors import FlagDocumentError, Invalid, PipelineError
from stageflow.domain.flags import FlagDocument, parse_flag_document
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import App, Pipeline
from stageflow.services.context import (
    PARSED_BYTES_PER_SOURCE_BYTE,
    BlobId,
    Stageflow,
)
from stageflow.services.memos import Memo
from stageflow.services.ports import Workspace

PIPELINE_FILE = "stageflow.yaml"
FLAGS_FILE = "flags.json"
KUSTOMIZATION_FILE = "kustomization.yaml"

T = TypeVar("T")


def flags_path(app: App, stage: str) -> str:
    return f"{app.overlay_path(stage)}/{FLAGS_FILE}"


def kustomization_path(app: App, stage: str) -> str:
    return f"{app.overlay_path(stage)}/{KUSTOMIZATION_FILE}"


def empty_flag_document(app: str) -> FlagDocument:
    return FlagDocument(flags={}, metadata={"flagSetId": app})


def git_blob_id(data: bytes) -> str:
    """Return the SHA Git gives these bytes as a blob (what ``git hash-object`` prints)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def parsed(
    memo: Memo[BlobId, T], blob: BlobId, source: Callable[[], bytes], parse: Callable[[bytes], T]
) -> T:
    """Parse ``source()`` once per ``blob`` id, weighed by the size of the source."""

    def build() -> tuple[T, int]:
        data = source()
        return parse(data), PARSED_BYTES_PER_SOURCE_BYTE * len(data)

    return memo.get_weighed(blob, build)


def _parse_flags(data: bytes) -> FlagDocument:
    return parse_flag_document(data)


@dataclass(frozen=True)
class FileProblem:
    """A file at a revision that cannot be used, and the version of it that is used instead."""

    file: str
    revision: str  # where it is broken
    line: int | None
    problem: str
    serving: str | None  # the last revision where the file was valid (None: none was found)
    app: str | None = None
    stage: str | None = None

    def note(self) -> str:
        where = f" line {self.line}" if self.line else ""
        instead = (
            f"answering from its last valid version, at {self.serving[:12]}"
            if self.serving
            else "no valid version of it was found"
        )
        return f"{self.file}{where} at {self.revision[:12]} is invalid ({self.problem}); {instead}"


# How far back through a file's history a read looks for its last valid version.
_HISTORY_LIMIT = 20


def _checked(
    sf: Stageflow,
    memos: tuple[Memo[BlobId, T], Memo[BlobId, Invalid]],
    blob: BlobId,
    parse: Callable[[bytes], T],
) -> T | Invalid:
    """Parse a blob once; an invalid one is remembered as its error (and parsed no more).

    ``memos`` hold the parses and the errors of one kind of file.
    """
    valid, invalid = memos

    def build() -> tuple[T, int]:
        failed = invalid.peek(blob)  # only on a miss: a valid blob costs one lookup
        if failed is not None:
            raise failed
        data = sf.repo.read_blob(blob)
        return parse(data), PARSED_BYTES_PER_SOURCE_BYTE * len(data)

    try:
        return valid.get_weighed(blob, build)
    except Invalid as exc:
        invalid.put(blob, exc)
        return exc


def _last_valid(
    sf: Stageflow, revision: str, path: str, check: Callable[[str | None], T | Invalid]
) -> tuple[str, str | None, T] | None:
    """The newest revision before ``revision`` where ``path`` passes ``check`` (bounded walk).

    Read from Git, not from what this process happened to see: every replica, and a process that
    starts on a broken head, serves the same last valid version.
    """
    at = revision
    for _ in range(_HISTORY_LIMIT):
        changed = sf.repo.last_change(at, [path])
        parent = None if changed is None else sf.repo.parent_of(changed)
        if parent is None:
            return None
        blob = sf.repo.blob_id(parent, path)
        value = check(blob)
        if not isinstance(value, Invalid):
            return parent, blob, value
        at = parent
    return None


def _problem(
    path: str, revision: str, error: Invalid, serving: str | None, **where: str | None
) -> FileProblem:
    line = error.details.get("line")
    return FileProblem(
        path,
        revision,
        line if isinstance(line, int) else None,
        error.message,
        serving,
        **where,
    )


@dataclass(frozen=True)
class Snapshot:
    """The desired state at one revision: reads of one request all come from the same commit.

    A file someone pushed broken is read as its last valid version (``problems`` says which);
    writes read the working tree instead (``pipeline_in``, ``flags_in``) and refuse it.
    """

    sf: Stageflow
    revision: str
    pipeline: Pipeline
    problems: tuple[FileProblem, ...] = ()

    def flags_blob(self, app: App, stage: str) -> tuple[str | None, FileProblem | None]:
        """The blob of the stage's flags.json to read (the last valid one), and any problem."""
        path = flags_path(app, stage)
        blob = self.sf.repo.blob_id(self.revision, path)
        if blob is None:
            return None, None
        memos = (self.sf.cache.flags, self.sf.cache.invalid_flags)
        got = _checked(self.sf, memos, blob, _parse_flags)
        if not isinstance(got, Invalid):
            return blob, None

        def check(other: str | None) -> FlagDocument | Invalid:
            if other is None:
                return empty_flag_document(app.name)
            return _checked(self.sf, memos, other, _parse_flags)

        found = self.sf.cache.last_valid_flags.get(
            (self.revision, path),
            lambda: _last_valid(self.sf, self.revision, path, check),
        )
        if found is None:
            raise got
        return found[1], _problem(path, self.revision, got, found[0], app=app.name, stage=stage)

    def flags(self, app: App, stage: str) -> FlagDocument:
        blob, _ = self.flags_blob(app, stage)
        if blob is None:
            return empty_flag_document(app.name)
        return parsed(self.sf.cache.flags, blob, lambda: self.sf.repo.read_blob(blob), _parse_flags)

    def flags_data(self, app: App, stage: str) -> bytes | None:
        """The stage's flags.json as committed (the blob's bytes), None when there is none."""
        blob, _ = self.flags_blob(app, stage)
        return None if blob is None else self.sf.repo.read_blob(blob)

    def file_problems(self, app: str | None = None, stage: str | None = None) -> list[FileProblem]:
        """The files read as an earlier version: stageflow.yaml, and the flags of the stages
        of ``app`` (every app by default; only ``stage`` when given)."""
        found = list(self.problems)
        apps = self.pipeline.apps.values() if app is None else [self.pipeline.app(app)]
        for one in apps:
            for name in self.pipeline.stage_names if stage is None else [stage]:
                _, problem = self.flags_blob(one, name)
                if problem is not None:
                    found.append(problem)
        return found

    def images(self, app: App, stage: str) -> list[ImageRef]:
        path = kustomization_path(app, stage)
        blob = self.sf.repo.blob_id(self.revision, path)
        if blob is None:
            return []
        return parsed(
            self.sf.cache.images,
            blob,
            lambda: self.sf.repo.read_blob(blob),
            lambda data: self.sf.codecs.parse_kustomization(data.decode("utf-8"), path).images(),
        )

    def content(self, app: App, stage: str) -> str:
        """What this stage renders from, as one id: its overlay's tree and the base's tree."""
        return content_at(self.sf, self.revision, app, stage)

    def overlay_revision(self, app: App, stage: str) -> str | None:
        """The last commit that changed what this stage renders (its overlay or the base)."""
        return self.sf.repo.last_change(self.revision, [app.overlay_path(stage), app.base_path])


def content_at(sf: Stageflow, revision: str, app: App, stage: str) -> str:
    """Identify the state a stage renders at ``revision`` (DESIGN.md section 4).

    Argo CD and Flux sync the branch head, so the revision a deployment or a check names is often
    a later commit that only touched other stages; it stands for the same state of this stage.
    Two revisions are the same state of a stage when its overlay and its base are the same trees.
    """
    overlay = sf.repo.tree_id(revision, app.overlay_path(stage)) or "-"
    base = sf.repo.tree_id(revision, app.base_path) or "-"
    return hashlib.sha1(f"{overlay}:{base}".encode(), usedforsecurity=False).hexdigest()


def snapshot(sf: Stageflow, revision: str | None = None) -> Snapshot:
    """Return the desired state at ``revision`` (default: the remote head).

    A ``stageflow.yaml`` pushed broken is read as its last valid version (the snapshot's
    ``problems`` say so); with no valid version in reach this raises its ``PipelineError``.
    """
    rev = revision or sf.repo.head()
    got = _pipeline_at(sf, rev)
    if not isinstance(got, Invalid):
        return Snapshot(sf, rev, got)
    found = sf.cache.last_valid_pipeline.get(
        rev,
        lambda: _last_valid(sf, rev, PIPELINE_FILE, lambda blob: _pipeline_of(sf, blob)),
    )
    if found is None:
        raise got
    return Snapshot(sf, rev, found[2], (_problem(PIPELINE_FILE, rev, got, found[0]),))


def _pipeline_at(sf: Stageflow, revision: str) -> Pipeline | Invalid:
    return _pipeline_of(sf, sf.repo.blob_id(revision, PIPELINE_FILE), revision)


def _pipeline_of(
    sf: Stageflow, blob: str | None, revision: str | None = None
) -> Pipeline | Invalid:
    if blob is None:
        at = f" at revision {revision[:12]}" if revision else ""
        return PipelineError(
            f"{PIPELINE_FILE} is missing{at}; restore it in the GitOps repo",
            code="pipeline_missing",
        )
    return _checked(
        sf,
        (sf.cache.pipelines, sf.cache.invalid_pipelines),
        blob,
        lambda data: sf.codecs.load_pipeline(data.decode()),
    )


def outage_notes(sf: Stageflow, revision: str) -> list[str]:
    """A note that the remote is unreachable and ``revision`` is the last head seen, or []."""
    outage = sf.repo.outage()
    if outage is None:
        return []
    since = datetime.fromtimestamp(outage.since, UTC).isoformat(timespec="seconds")
    return [
        f"the Git remote {sf.repo.display_url} has been unreachable since {since}; "
        f"answering from revision {revision[:12]}, the last head seen"
    ]


def file_notes(sf: Stageflow, revision: str, app: str, stage: str | None = None) -> list[str]:
    """Notes on the files an answer about ``app`` (``stage``) reads as an earlier version.

    A function of the revision, so made once per revision (a read costs one lookup).
    """
    return sf.cache.file_notes.get(
        (revision, app, stage),
        lambda: [p.note() for p in _problems_of(snapshot(sf, revision), app, stage)],
    )


def _problems_of(snap: Snapshot, app: str, stage: str | None) -> list[FileProblem]:
    if app not in snap.pipeline.apps or (
        stage is not None and stage not in snap.pipeline.stage_names
    ):
        return list(snap.problems)
    return snap.file_problems(app, stage)


def head_problems(sf: Stageflow) -> list[FileProblem]:
    """Every file at the head that reads answer from an earlier version of (cached per head)."""
    snap = snapshot(sf)
    return sf.cache.head_problems.get(snap.revision, snap.file_problems)


# A write reads its files from the working tree, which may differ from any commit once the
# operation wrote them. Keyed by the Git blob id of the text (hashing 1 MB takes ~1 ms; parsing it
# 30 ms), a file the write has not touched finds the parse its base commit's reads made, and one it
# did write finds the document ``remember_flags`` put there. Keys are never whole texts: those
# would hold a second megabyte per entry, unweighed.


def pipeline_in(sf: Stageflow, workspace: Workspace) -> Pipeline:
    """The pipeline as the working tree of a write has it."""
    text = workspace.read(PIPELINE_FILE)
    if text is None:
        raise PipelineError(f"{PIPELINE_FILE} is missing; restore it in the GitOps repo")
    data = text.encode("utf-8")
    return parsed(
        sf.cache.pipelines, git_blob_id(data), lambda: data, lambda _: sf.codecs.load_pipeline(text)
    )


def flags_in(sf: Stageflow, workspace: Workspace, app: App, stage: str) -> FlagDocument:
    """The flag document of a stage as the working tree of a write has it."""
    path = flags_path(app, stage)
    blob = workspace.unwritten_blob(path)
    if blob is not None:  # as committed: parsed (or held) by blob id, without reading or hashing
        try:
            return parsed(sf.cache.flags, blob, lambda: sf.repo.read_blob(blob), _parse_flags)
        except FlagDocumentError as exc:
            raise _broken_for_writes(path, exc) from None
    text = workspace.read(path)
    if text is None:
        return empty_flag_document(app.name)
    data = text.encode("utf-8")
    try:
        return parsed(
            sf.cache.flags, git_blob_id(data), lambda: data, lambda _: parse_flag_document(text)
        )
    except FlagDocumentError as exc:
        raise _broken_for_writes(path, exc) from None


def _broken_for_writes(path: str, exc: FlagDocumentError) -> FlagDocumentError:
    """A write that needs a file someone pushed broken: name it and say how to fix it."""
    return FlagDocumentError(
        f"{path} at the head of the GitOps repo is invalid: {exc.message}; nothing was "
        "committed — fix the file in the repo (reads answer from its last valid version "
        "meanwhile)",
        details={**exc.details, "file": path},
    )


def remember_flags(sf: Stageflow, text: str, doc: FlagDocument) -> None:
    """Hold ``doc`` as the parse of ``text``, which was rendered from it, for the next reads.

    The next write to the stage and the reads of the commit both start from this text: they then
    skip parsing the whole document again (rendering is exact: parsing the text gives ``doc``).
    """
    data = text.encode("utf-8")
    sf.cache.flags.put(git_blob_id(data), doc, PARSED_BYTES_PER_SOURCE_BYTE * len(data))
