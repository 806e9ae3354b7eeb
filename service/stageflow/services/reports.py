"""Use cases: what the cluster and the test runners report (deployments, checks)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stageflow.domain.errors import Invalid, NotFound
from stageflow.domain.gates import CheckResult, Deployment
from stageflow.domain.ledger import AuditEntry
from stageflow.domain.promotions import Promotion
from stageflow.services import promotions, rollbacks
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


def record_check(
    sf: Stageflow,
    app_name: str,
    stage_name: str,
    *,
    kind: str,
    revision: str,
    status: str,
    actor: str,
    summary: str | None = None,
    url: str | None = None,
    details: Any = None,
) -> tuple[CheckResult, Any, Promotion | None]:
    """Record a smoke / load / custom check result for a revision of a stage."""
    if not CHECK_KIND.match(kind):
        raise Invalid(
            f"check kind {kind!r} must be lowercase letters, digits, - or _ (like smoke)",
            code="invalid_check_kind",
        )
    if status not in ("passed", "failed"):
        raise Invalid(f"status must be passed or failed, not {status!r}")
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    sha = _resolve(sf, revision)
    check = CheckResult(
        kind=kind,
        revision=sha,
        content=content_at(sf, sha, app, stage_name),
        status=status,
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
    if status == "failed" and kind == "smoke":
        rolled = rollbacks.on_failure(
            sf,
            app,
            snap.pipeline.stage(stage_name),
            sha,
            f"smoke check failed for {sha[:12]}" + (f": {summary}" if summary else ""),
        )
    promotions.reevaluate_waiting(sf, app=app.name, source=stage_name)
    return stored, details, rolled


def list_checks(
    sf: Stageflow,
    app_name: str,
    stage_name: str,
    *,
    revision: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[tuple[CheckResult, Any, str]]:
    snap = snapshot(sf)
    snap.pipeline.app(app_name)
    snap.pipeline.stage(stage_name)
    sha = _resolve(sf, revision) if revision else None
    with sf.uow() as uow:
        return uow.checks.list(
            app_name, stage_name, revision=sha, kind=kind, before_id=before_id, limit=limit
        )


def record_deployment(
    sf: Stageflow,
    app_name: str,
    stage_name: str,
    *,
    revision: str,
    health: str,
    actor: str,
    source: str = "api",
    at: datetime | None = None,
) -> Deployment:
    """Record what a stage runs now (a revision and its health), as the cluster reports it.

    ``at`` is when the controller saw it (a Flux event's timestamp); a time ahead of this
    process's clock (skew) is taken as now, so soak time never starts in the future.
    """
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
    with sf.uow() as uow:
        uow.deployments.add(app.name, stage_name, deployment, actor)
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
