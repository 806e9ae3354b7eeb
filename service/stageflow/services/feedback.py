"""Use case: a report from Flux or Argo CD becomes a deployment record (and may roll back)."""

from __future__ import annotations

from typing import Any

from stageflow.domain.errors import Invalid
from stageflow.domain.feedback import ClusterReport, stage_of
from stageflow.services import reports
from stageflow.services.context import Stageflow
from stageflow.services.state import snapshot


def record_cluster_report(sf: Stageflow, report: ClusterReport, *, actor: str) -> dict[str, Any]:
    """Record what a GitOps controller reported; say why when it is not used."""
    pipeline = snapshot(sf).pipeline
    mapped = stage_of(pipeline, report.source, report.object_name)
    if mapped is None:
        kind = "Kustomization" if report.source == "flux" else "Application"
        return {
            "recorded": False,
            "reason": f"{kind} {report.object_name!r} names no app and stage: call it "
            f"<app>-<stage> or map it under apps.<app>.{report.source} in stageflow.yaml",
        }
    app, stage = mapped
    try:
        deployment = reports.record_deployment(
            sf,
            app,
            stage,
            revision=report.revision,
            health=report.health,
            actor=actor,
            source=report.source,
        )
    except Invalid as exc:
        return {"recorded": False, "app": app, "stage": stage, "reason": exc.message}
    return {
        "recorded": True,
        "app": app,
        "stage": stage,
        "revision": deployment.revision,
        "health": deployment.health,
        "reason": report.reason,
    }
