"""Views of the desired state as plain data for the API, the pages and the CLI.

What follows from a revision alone is built once per revision (and app) and then served from the
cache; the ledger's part (reports, checks, holds) is added per ``state_version``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stageflow.domain.errors import Invalid, NotFound
from stageflow.domain.feedback import argocd_report, flux_report, stage_of
from stageflow.domain.identity import Scope
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import App, Stage
from stageflow.services.context import SMALL_ENTRY, AppDesired, Stageflow
from stageflow.services.ports import UnitOfWork
from stageflow.services.state.reading import FileProblem, Snapshot, flags_path, snapshot


def image_view(ref: ImageRef) -> dict[str, Any]:
    return {"name": ref.name, "tag": ref.tag, "digest": ref.digest}


@dataclass(frozen=True)
class Repository:
    """Where the desired state lives: the remote's URL (without credentials) and branch."""

    url: str
    branch: str


@dataclass(frozen=True)
class AppSummary:
    """An app of the pipeline: where its overlays are and the stages it moves through."""

    name: str
    path: str
    stages: Sequence[str]


@dataclass(frozen=True)
class PipelineOverview:
    """The pipeline as the API and the pipeline page show it.

    ``stale_since``: while the Git remote is unreachable, since when (ISO 8601; the revision is
    the last head seen). ``problems``: the files at the head that reads answer from an earlier
    version of, and the policy folders that do not compile.
    """

    revision: str
    stale_since: str | None
    problems: Sequence[FileProblem]
    repository: Repository
    stages: Sequence[Stage]
    apps: Sequence[AppSummary]


def pipeline_view(sf: Stageflow, scope: Scope | None = None) -> PipelineOverview:
    """The pipeline: every stage, and the apps ``scope`` covers (default: every app)."""
    snap = snapshot(sf)
    outage = sf.repo.outage()
    problems = [
        problem
        for problem in sf.cache.head_problems.get(snap.revision, snap.file_problems)
        if scope is None or problem.app is None or scope.covers(problem.app)
    ]
    return PipelineOverview(
        revision=snap.revision,
        stale_since=None
        if outage is None
        else datetime.fromtimestamp(outage.since, UTC).isoformat(timespec="seconds"),
        problems=problems + _policy_problems(sf, snap),
        repository=Repository(sf.repo.display_url, sf.repo.branch),
        stages=snap.pipeline.stages,
        apps=[
            AppSummary(app.name, app.path, snap.pipeline.stage_names)
            for app in snap.pipeline.apps.values()
            if scope is None or scope.covers(app.name)
        ],
    )


def _policy_problems(sf: Stageflow, snap: Snapshot) -> list[FileProblem]:
    # services.policies reads the state through this package, hence imported here
    from stageflow.services.policies import policy_problems

    return policy_problems(sf, snap)


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


def last_stage(sf: Stageflow) -> str:
    """The stage a change ends in (production in the seed)."""
    return snapshot(sf).pipeline.stage_names[-1]


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

    def build_desired() -> tuple[AppDesired, int]:
        desired = _desired(snap, app)
        return desired, _weight(desired)

    desired = sf.cache.app_desired.get_weighed((snap.revision, app.name), build_desired)
    with sf.uow() as uow:
        # The version first: what is read after it is at least as new as the version says.
        version = uow.state_version()
        view = sf.cache.app_states.get_weighed(
            (snap.revision, app.name, version),
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
    matrix = sf.cache.matrices.get((snap.revision, app.name), lambda: _matrix(snap, app))
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
