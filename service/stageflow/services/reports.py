"""Use cases: what the cluster and the test runners report (deployments, checks)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from stageflow.domain.errors import Invalid, NotFound
from stageflow.domain.events import DEPLOYED, Event
from stageflow.domain.gates import CheckResult, CheckStatus, Deployment
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.promotions import Promotion
from stageflow.services import autopromote, promotions, rollbacks
from stageflow.services.context import Stageflow
from stageflow.services.state import content_at, snapshot

log = logging.getLogger(__name__)

CHECK_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
HEALTH = ("healthy", "progressing", "degraded")


def _resolve(sf: Stageflow, revision: str) -> str:
    try:
        return sf.repo.resolve(revision)
    except NotFound as exc:
        raise Invalid(exc.message, code="unknown_revision", details={"revision": revision}) from exc


class CheckFields(TypedDict):
    """A check result as a test runner reports it."""

    kind: str  # smoke, load, ... (lowercase letters, digits, - or _)
    revision: str
    status: str  # passed | failed
    actor: str
    summary: NotRequired[str | None]
    url: NotRequired[str | None]
    details: NotRequired[Any]


def record_check(
    sf: Stageflow, app_name: str, stage_name: str, **report: Unpack[CheckFields]
) -> tuple[CheckResult, Any, Promotion | None]:
    """Record a smoke / load / custom check result for a revision of a stage."""
    kind, revision = report["kind"], report["revision"]
    status, actor = report["status"], report["actor"]
    summary, url, details = report.get("summary"), report.get("url"), report.get("details")
    if not CHECK_KIND.match(kind):
        raise Invalid(
            f"check kind {kind!r} must be lowercase letters, digits, - or _ (like smoke)",
            code="invalid_check_kind",
        )
    if status not in tuple(CheckStatus):
        raise Invalid(f"status must be passed or failed, not {status!r}")
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    sha = _resolve(sf, revision)
    check = CheckResult(
        kind=kind,
        revision=sha,
        content=content_at(sf, sha, app, stage_name),
        status=CheckStatus(status),
        at=sf.clock(),
        summary=summary,
        url=url,
    )
    with sf.uow() as uow:
        stored = uow.checks.add(app.name, stage_name, check, details, actor)
        uow.audit.add(
            AuditEntry(
                actor=actor,
                action=f"check.{status}",
                app=app.name,
                stage=stage_name,
                target=kind,
                after={"summary": summary, "url": url},
                revision=sha,
                at=check.at,
            )
        )
        uow.commit()
    rolled = None
    if status == CheckStatus.FAILED and kind == "smoke":
        rolled = rollbacks.on_failure(
            sf,
            app,
            snap.pipeline.stage(stage_name),
            sha,
            f"smoke check failed for {sha[:12]}" + (f": {summary}" if summary else ""),
        )
    promotions.reevaluate_waiting(sf, app=app.name, source=stage_name)
    return stored, details, rolled


class CheckQuery(TypedDict, total=False):
    """Which check results ``list_checks`` answers, newest first."""

    revision: str | None  # any name of a commit: its results only
    kind: str | None
    before_id: int | None
    limit: int  # default 100


def list_checks(
    sf: Stageflow, app_name: str, stage_name: str, **query: Unpack[CheckQuery]
) -> Sequence[tuple[CheckResult, Any, str]]:
    revision, kind = query.get("revision"), query.get("kind")
    before_id, limit = query.get("before_id"), query.get("limit", 100)
    snap = snapshot(sf)
    snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    sha = _resolve(sf, revision) if revision else None
    with sf.uow() as uow:
        return uow.checks.list(
            app_name, stage_name, revision=sha, kind=kind, before_id=before_id, limit=limit
        )


class DeploymentFields(TypedDict):
    """What a stage runs, as the cluster (or a pipeline) reports it."""

    revision: str
    health: str  # healthy | progressing | degraded
    actor: str
    source: NotRequired[str]  # api (default), flux, argocd
    at: NotRequired[datetime | None]  # when the controller saw it (None: now)


def record_deployment(
    sf: Stageflow, app_name: str, stage_name: str, **report: Unpack[DeploymentFields]
) -> Deployment:
    """Record what a stage runs now (a revision and its health), as the cluster reports it.

    ``at`` is when the controller saw it (a Flux event's timestamp); a time ahead of this
    process's clock (skew) is taken as now, so soak time never starts in the future.
    """
    revision, health, actor = report["revision"], report["health"], report["actor"]
    source, at = report.get("source", "api"), report.get("at")
    if health not in HEALTH:
        raise Invalid(f"health must be one of {', '.join(HEALTH)}, not {health!r}")
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    sha = _resolve(sf, revision)
    now = sf.clock()
    deployment = Deployment(
        revision=sha,
        content=content_at(sf, sha, app, stage_name),
        health=health,
        at=min(at, now) if at is not None else now,
        source=source,
    )
    flags = snapshot(sf, sha).flags_blob(app, stage_name)[0]
    with sf.uow() as uow:
        before = uow.deployments.recent(app.name, stage_name, limit=1)
        flags_before = (
            snapshot(sf, before[0].revision).flags_blob(app, stage_name)[0] if before else None
        )
        uow.deployments.add(app.name, stage_name, deployment, actor)
        # In the same transaction: event streams in `live` mode tell clients from this.
        uow.events.add(
            Event(
                kind=DEPLOYED,
                at=deployment.at,
                actor=actor,
                app=app.name,
                stage=stage_name,
                subject=health,
                revision=sha,
                data={"health": health, "flags": flags, "flags_before": flags_before},
            )
        )
        if health == "healthy":  # a rolled-back stage healthy again: its restore is complete
            uow.restores.healthy(app.name, stage_name, deployment.content, deployment.at)
        uow.commit()
    if health == "degraded":
        rollbacks.on_failure(
            sf,
            app,
            snap.pipeline.stage(stage_name),
            sha,
            f"{stage_name} reported degraded at {sha[:12]} ({source})",
        )
    # A new state offered first: its promotion supersedes the one waiting on the older state
    # (which re-evaluating would fail as "the source changed").
    autopromote.after_report(sf, app, stage_name, deployment)
    promotions.reevaluate_waiting(sf, app=app.name, source=stage_name)
    return deployment


def recent_deployments(
    sf: Stageflow, app_name: str, stage_name: str, limit: int = 50
) -> Sequence[Deployment]:
    snap = snapshot(sf)
    snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    with sf.uow() as uow:
        return uow.deployments.recent(app_name, stage_name, limit)
