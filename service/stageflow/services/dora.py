"""DORA figures of an app's stage (production by default), derived from the ledger.

- **Deployment frequency**: promotions applied into the stage in the window, per day.
- **Lead time**: from the first commit of a change to its promotion applied in the stage. The
  change is followed back stage by stage: the promotion into each earlier stage that was applied
  last before the later one was opened, down to the first stage, whose revision (the commit the
  first promotion moved, as the event log recorded its write) starts the clock.
- **Change failure rate**: of those promotions, the share rolled back.
- **Time to restore**: from a rollback (pushed ~0.1 s after the failure report that caused it)
  to the first healthy deployment report of the restored revision in the stage.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from stageflow.domain.events import PROMOTION_APPLIED, ROLLBACK, STATE_CHANGED, Event
from stageflow.domain.pipeline import Pipeline
from stageflow.domain.promotions import Promotion
from stageflow.services.context import Stageflow
from stageflow.services.state import snapshot


def figures(
    sf: Stageflow, app_name: str, *, stage: str | None = None, days: int = 30
) -> dict[str, Any]:
    snap = snapshot(sf)
    app = snap.pipeline.app(app_name)
    target = snap.pipeline.stage(stage) if stage else snap.pipeline.stages[-1]
    now = sf.clock()
    start = now - timedelta(days=days)
    with sf.uow() as uow:
        events = uow.events.since(
            start, kinds=(PROMOTION_APPLIED, ROLLBACK), app=app.name, stage=target.name
        )
    applied = [e for e in events if e.kind == PROMOTION_APPLIED]
    applied_ids = {e.subject for e in applied}
    rolled = [e for e in events if e.kind == ROLLBACK and e.subject in applied_ids]
    leads = _lead_times(sf, snap.pipeline, app.name, applied)
    restores, open_ = _restores(sf, app.name, target.name, rolled)
    return {
        "app": app.name,
        "stage": target.name,
        "days": days,
        "since": start.isoformat(),
        "until": now.isoformat(),
        "deployment_frequency": {
            "deployments": len(applied),
            "per_day": round(len(applied) / days, 4),
            "per_week": round(len(applied) * 7 / days, 4),
        },
        "lead_time_seconds": _summary(leads),
        "change_failure_rate": {
            "deployments": len(applied),
            "rolled_back": len(rolled),
            "rate": round(len(rolled) / len(applied), 4) if applied else None,
        },
        "time_to_restore_seconds": {**_summary(restores), "not_restored": open_},
    }


def _summary(samples: Sequence[float]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0, "median": None, "max": None}
    return {
        "samples": len(samples),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
    }


def _lead_times(
    sf: Stageflow, pipeline: Pipeline, app: str, applied: Sequence[Event]
) -> list[float]:
    if not applied:  # no deployment in the window: no promotion history to read
        return []
    with sf.uow() as uow:
        earlier = uow.promotions.list(app=app, statuses=("applied", "rolled_back"), limit=500)
        starts: dict[int, str] = {}
        for event in applied:
            first = _first_promotion(pipeline, earlier, event.subject)
            if first is not None and first.source_revision:
                starts[int(event.subject or 0)] = first.source_revision
        born = uow.events.first_with_revision(STATE_CHANGED, sorted(set(starts.values())))
    leads = []
    for event in applied:
        revision = starts.get(int(event.subject or 0))
        if revision in born:
            leads.append((event.at - born[revision]).total_seconds())
    return leads


def _first_promotion(
    pipeline: Pipeline, promotions: Sequence[Promotion], promotion_id: str | None
) -> Promotion | None:
    """Follow the promotion ``promotion_id`` back to the one that took the change out of the
    first stage."""
    current = next((p for p in promotions if str(p.id) == promotion_id), None)
    first = pipeline.stages[0].name
    while current is not None and current.source != first:
        before = [
            p
            for p in promotions
            if p.target == current.source and p.revision and p.updated_at <= current.created_at
        ]
        current = max(before, key=lambda p: p.id or 0, default=None)
    return current


def _restores(
    sf: Stageflow, app: str, stage: str, rolled: Sequence[Event]
) -> tuple[list[float], int]:
    if not rolled:
        return [], 0
    with sf.uow() as uow:
        reports = uow.deployments.recent(app, stage, limit=1000)
        promotions = {
            str(p.id): p
            for p in uow.promotions.list(app=app, target=stage, statuses=("rolled_back",))
        }
    restores, open_ = [], 0
    for event in rolled:
        promotion = promotions.get(event.subject or "")
        revision = promotion.rolled_back_revision if promotion else None
        healthy = [
            r.at
            for r in reports
            if r.revision == revision and r.health == "healthy" and r.at >= event.at
        ]
        if healthy:
            restores.append((min(healthy) - event.at).total_seconds())
        else:
            open_ += 1
    return restores, open_
