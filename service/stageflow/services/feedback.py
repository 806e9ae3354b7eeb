"""Use case: a report from Flux or Argo CD becomes a deployment record (and may roll back)."""

from __future__ import annotations

from typing import Any

from stageflow.domain.errors import Invalid, NotFound
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
    revision = _first_commit(sf, report.revisions)
    try:
        deployment = reports.record_deployment(
            sf,
            app,
            stage,
            revision=revision,
            health=report.health,
            actor=actor,
            source=report.source,
            at=report.at,
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


def _first_commit(sf: Stageflow, revisions: tuple[str, ...]) -> str:
    """The first of the reported revisions that is a commit of the GitOps repo.

    A multi-source Argo CD Application reports one revision per source (other Git repos, Helm
    chart versions); the one that counts is Stageflow's. When none is, the first is returned and
    record_deployment says it is unknown.
    """
    for revision in revisions:
        try:
            return sf.repo.resolve(revision)
        except NotFound:
            continue
    return revisions[0]
