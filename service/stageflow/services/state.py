"""Read the desired state from Git: the pipeline, flags and images of each stage, at a revision.

Everything here is read at the remote head and cached by the blob SHA it was parsed from, so a
read after a change costs a parse only for the files that change touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from stageflow.domain.errors import FlagDocumentError, Invalid, NotFound, PipelineError
from stageflow.domain.feedback import argocd_report, flux_report, stage_of
from stageflow.domain.flags import FlagDocument, parse_flag_document
from stageflow.domain.identity import Scope
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import App, Pipeline, Stage, format_duration
from stageflow.services.context import PARSED_BYTES_PER_SOURCE_BYTE, SMALL_ENTRY, Stageflow
from stageflow.services.ports import UnitOfWork, Workspace

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


def parsed(sf: Stageflow, key: Any, source: Callable[[], bytes], parse: Callable[[bytes], T]) -> T:
    """Parse ``source()`` once per ``key`` (a blob id), weighed by the size of the source."""

    def build() -> tuple[T, int]:
        data = source()
        return parse(data), PARSED_BYTES_PER_SOURCE_BYTE * len(data)

    return sf.cache.get_weighed(key, build)


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

    def view(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "revision": self.revision,
            "line": self.line,
            "problem": self.problem,
            "serving_revision": self.serving,
            "app": self.app,
            "stage": self.stage,
        }

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


def _checked(sf: Stageflow, kind: str, blob: str, parse: Callable[[bytes], T]) -> T | Invalid:
    """Parse a blob once; an invalid one is remembered as its error (and parsed no more)."""
    invalid = (kind + "-invalid", blob)

    def build() -> tuple[T, int]:
        failed = sf.cache.peek(invalid)  # only on a miss: a valid blob costs one lookup
        if failed is not None:
            raise failed
        data = sf.repo.read_blob(blob)
        return parse(data), PARSED_BYTES_PER_SOURCE_BYTE * len(data)

    try:
        return sf.cache.get_weighed((kind, blob), build)
    except Invalid as exc:
        sf.cache.put(invalid, exc)
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
        got = _checked(self.sf, "flags", blob, _parse_flags)
        if not isinstance(got, Invalid):
            return blob, None

        def check(other: str | None) -> FlagDocument | Invalid:
            return (
                empty_flag_document(app.name)
                if other is None
                else _checked(self.sf, "flags", other, _parse_flags)
            )

        found = self.sf.cache.get(
            ("last-valid", self.revision, path),
            lambda: _last_valid(self.sf, self.revision, path, check),
        )
        if found is None:
            raise got
        return found[1], _problem(path, self.revision, got, found[0], app=app.name, stage=stage)

    def flags(self, app: App, stage: str) -> FlagDocument:
        blob, _ = self.flags_blob(app, stage)
        if blob is None:
            return empty_flag_document(app.name)
        return parsed(self.sf, ("flags", blob), lambda: self.sf.repo.read_blob(blob), _parse_flags)

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
            self.sf,
            ("images", blob),
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
    found = sf.cache.get(
        ("last-valid", rev, PIPELINE_FILE),
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
    return _checked(sf, "pipeline", blob, lambda data: sf.codecs.load_pipeline(data.decode()))


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
    notes: list[str] = sf.cache.get(
        ("stale-notes", revision, app, stage),
        lambda: [p.note() for p in _problems_of(snapshot(sf, revision), app, stage)],
    )
    return notes


def _problems_of(snap: Snapshot, app: str, stage: str | None) -> list[FileProblem]:
    if app not in snap.pipeline.apps or (
        stage is not None and stage not in snap.pipeline.stage_names
    ):
        return list(snap.problems)
    return snap.file_problems(app, stage)


def head_problems(sf: Stageflow) -> list[FileProblem]:
    """Every file at the head that reads answer from an earlier version of (cached per head)."""
    snap = snapshot(sf)
    return sf.cache.get(("head-problems", snap.revision), snap.file_problems)


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
        sf, ("pipeline", git_blob_id(data)), lambda: data, lambda _: sf.codecs.load_pipeline(text)
    )


def flags_in(sf: Stageflow, workspace: Workspace, app: App, stage: str) -> FlagDocument:
    """The flag document of a stage as the working tree of a write has it."""
    path = flags_path(app, stage)
    blob = workspace.unwritten_blob(path)
    if blob is not None:  # as committed: parsed (or held) by blob id, without reading or hashing
        try:
            return parsed(sf, ("flags", blob), lambda: sf.repo.read_blob(blob), _parse_flags)
        except FlagDocumentError as exc:
            raise _broken_for_writes(path, exc) from None
    text = workspace.read(path)
    if text is None:
        return empty_flag_document(app.name)
    data = text.encode("utf-8")
    try:
        return parsed(
            sf, ("flags", git_blob_id(data)), lambda: data, lambda _: parse_flag_document(text)
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
    sf.cache.put(("flags", git_blob_id(data)), doc, PARSED_BYTES_PER_SOURCE_BYTE * len(data))


# -- views of the state, as plain data for the API and the CLI ---------------------------------


def image_view(ref: ImageRef) -> dict[str, Any]:
    return {"name": ref.name, "tag": ref.tag, "digest": ref.digest}


def pipeline_view(sf: Stageflow, scope: Scope | None = None) -> dict[str, Any]:
    """The pipeline: every stage, and the apps ``scope`` covers (default: every app)."""
    snap = snapshot(sf)
    outage = sf.repo.outage()
    return {
        "revision": snap.revision,
        "stale_since": None
        if outage is None
        else datetime.fromtimestamp(outage.since, UTC).isoformat(timespec="seconds"),
        "problems": [
            problem.view()
            for problem in sf.cache.get(("head-problems", snap.revision), snap.file_problems)
            if scope is None or problem.app is None or scope.covers(problem.app)
        ]
        + _policy_problems(sf, snap),
        "repository": {"url": sf.repo.display_url, "branch": sf.repo.branch},
        "stages": [stage_view(stage) for stage in snap.pipeline.stages],
        "apps": [
            {"name": app.name, "path": app.path, "stages": list(snap.pipeline.stage_names)}
            for app in snap.pipeline.apps.values()
            if scope is None or scope.covers(app.name)
        ],
    }


def _policy_problems(sf: Stageflow, snap: Snapshot) -> list[dict[str, Any]]:
    # services.policies reads the state through this module, hence imported here
    from stageflow.services.policies import policy_problems

    return [problem.view() for problem in policy_problems(sf, snap)]


def stage_view(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "namespace": stage.namespace,
        "flags": {"allow": [lc for lc in ("experimental", "beta", "stable") if stage.allows(lc)]},
        "gates": {
            "checks": list(stage.gates.checks),
            "metrics": [
                {"name": m.name, "query": m.query, "min": m.min, "max": m.max}
                for m in stage.gates.metrics
            ],
            "soak": format_duration(stage.gates.soak) if stage.gates.soak else None,
        },
        "approvals": stage.approvals,
        "auto_rollback": stage.auto_rollback,
    }


def apps_view(sf: Stageflow, scope: Scope | None = None) -> list[dict[str, Any]]:
    """The apps ``scope`` covers (default: every app) and the stages they move through."""
    snap = snapshot(sf)
    names = list(snap.pipeline.stage_names)
    return [
        {"name": app.name, "stages": names}
        for app in snap.pipeline.apps.values()
        if scope is None or scope.covers(app.name)
    ]


def first_stage(sf: Stageflow) -> str:
    """The stage new flags and images enter."""
    return snapshot(sf).pipeline.stage_names[0]


def stages_with_flag(sf: Stageflow, app_name: str, key: str) -> list[str]:
    """The stages whose flags.json defines ``key`` at the head (none for an unknown app)."""
    try:
        _, matrix = flag_matrix(sf, app_name)
    except NotFound:
        return []
    row = matrix.get(key)
    return [] if row is None else [stage for stage, cell in row["stages"].items() if cell]


def webhook_stage(sf: Stageflow, source: str, body: Any) -> tuple[str, str] | None:
    """The (app, stage) a Flux or Argo CD payload reports on; None when it names none."""
    if not isinstance(body, dict):
        return None
    try:
        report = flux_report(body) if source == "flux" else argocd_report(body)
    except Invalid:
        return None  # the view says what is wrong with it
    if report is None:
        return None
    return stage_of(snapshot(sf).pipeline, report.source, report.object_name)


def within_stages(view: dict[str, Any], stages: Sequence[str]) -> dict[str, Any]:
    """An app view with only the stages of ``stages`` (a stage-scoped reader's part)."""
    return {**view, "stages": [part for part in view["stages"] if part["stage"] in stages]}


def matrix_within_stages(matrix: dict[str, Any], stages: Sequence[str]) -> dict[str, Any]:
    """A flag matrix with only the cells of ``stages``, and only flags defined in one of them."""
    kept: dict[str, Any] = {}
    for key, row in matrix.items():
        cells = {stage: cell for stage, cell in row["stages"].items() if stage in stages}
        if any(cells.values()):
            kept[key] = {**row, "stages": cells}
    return kept


def _stage_desired(snap: Snapshot, app: App, stage: Stage) -> dict[str, Any]:
    """What Git asks of one stage at the snapshot's revision (the ledger's part comes apart)."""
    return {
        "stage": stage.name,
        "namespace": stage.namespace,
        "images": [image_view(ref) for ref in snap.images(app, stage.name)],
        "flags": {
            key: {"enabled": f.enabled, "variant": f.variant, "lifecycle": f.lifecycle}
            for key, f in snap.flags(app, stage.name).flags.items()
        },
        "overlay_revision": snap.overlay_revision(app, stage.name),
    }


def _desired(snap: Snapshot, app: App) -> tuple[tuple[dict[str, Any], str], ...]:
    # Everything here follows from the revision alone, so it is built once per revision: a read
    # then costs the ledger's three queries and the JSON encoding.
    return tuple(
        (_stage_desired(snap, app, stage), snap.content(app, stage.name))
        for stage in snap.pipeline.stages
    )


def app_view(sf: Stageflow, app_name: str) -> tuple[str, dict[str, Any]]:
    """An app's images, flags, reports, checks and holds in every stage, with a version tag.

    Git's part follows from the revision and the ledger's from ``state_version``: the view is
    built once per pair (shared: do not mutate it), and the tag (the ETag) changes with either.
    """
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)

    def build_desired() -> tuple[tuple[tuple[dict[str, Any], str], ...], int]:
        desired = _desired(snap, app)
        return desired, _weight(desired)

    desired = sf.cache.get_weighed(("app-view", snap.revision, app.name), build_desired)
    with sf.uow() as uow:
        # The version first: what is read after it is at least as new as the version says.
        version = uow.state_version()
        view = sf.cache.get_weighed(
            ("app-state", snap.revision, app.name, version),
            lambda: (_app_view(snap, app, desired, uow), _weight(desired)),
        )
    ledger = hashlib.sha1(repr(version).encode(), usedforsecurity=False).hexdigest()[:16]
    return f"{snap.revision}.{ledger}", view


def _weight(desired: tuple[tuple[dict[str, Any], str], ...]) -> int:
    cells = sum(len(part["flags"]) for part, _ in desired)
    return SMALL_ENTRY * (1 + cells // 4)


def _app_view(
    snap: Snapshot,
    app: App,
    desired: tuple[tuple[dict[str, Any], str], ...],
    uow: UnitOfWork,
) -> dict[str, Any]:
    contents = {part["stage"]: content for part, content in desired}
    reports = uow.deployments.latest(app.name, contents)
    checks = uow.checks.for_contents(app.name, contents)
    holds = uow.holds.active_in(app.name)
    stages = []
    for part, content in desired:
        name = part["stage"]
        latest_checks: dict[str, Any] = {}
        for check in checks.get(name, ()):  # newest first: the first per kind wins
            latest_checks.setdefault(
                check.kind,
                {
                    "id": check.id,
                    "kind": check.kind,
                    "status": check.status,
                    "revision": check.revision,
                    "at": check.at.isoformat(),
                    "summary": check.summary,
                    "url": check.url,
                },
            )
        deployed = None
        latest = reports.get(name)
        if latest is not None:
            in_sync = latest.content == content
            deployed = {
                "revision": latest.revision,
                "health": latest.health,
                "at": latest.at.isoformat(),
                "source": latest.source,
                "in_sync": in_sync,
                # what a person wants at a glance: does the stage run what Git asks for?
                "status": "degraded"
                if latest.health == "degraded"
                else ("in_sync" if in_sync else "behind"),
            }
        hold = holds.get(name)
        stages.append(
            {
                **part,
                "deployed": deployed,
                "checks": list(latest_checks.values()),
                "hold": None if hold is None else {"reason": hold.reason, "by": hold.by},
            }
        )
    return {"name": app.name, "revision": snap.revision, "stages": stages}


def flag_matrix(sf: Stageflow, app_name: str) -> tuple[str, dict[str, Any]]:
    """Every flag of an app across the stages, at the head (shared; do not mutate it)."""
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    # Purely a function of the commit: computed once per revision, then served from the cache.
    matrix = sf.cache.get(("matrix", snap.revision, app.name), lambda: _matrix(snap, app))
    return snap.revision, matrix


def _matrix(snap: Snapshot, app: App) -> dict[str, Any]:
    matrix: dict[str, Any] = {}
    names = snap.pipeline.stage_names
    for stage in names:
        for key, flag in snap.flags(app, stage).flags.items():
            row = matrix.setdefault(
                key,
                {
                    "lifecycle": flag.lifecycle,
                    "description": flag.description,
                    "stages": dict.fromkeys(names),
                },
            )
            row["stages"][stage] = {
                "enabled": flag.enabled,
                "variant": flag.variant,
                "state": flag.state,
            }
    return matrix


def stage_flags_document(sf: Stageflow, app_name: str, stage_name: str) -> tuple[str, bytes]:
    """Return the revision and the committed flagd document of one stage, byte for byte."""
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    data = snap.flags_data(app, stage_name)
    if data is None:
        raise NotFound(
            f"{flags_path(app, stage_name)} does not exist at {snap.revision[:12]}; create a flag "
            f"with POST /api/v1/apps/{app.name}/flags",
            code="flags_not_found",
        )
    return snap.revision, data
