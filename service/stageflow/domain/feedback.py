"""What Flux and Argo CD tell us, reduced to (object name, revision, health)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stageflow.domain.errors import Invalid
from stageflow.domain.pipeline import Pipeline

_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")

# Flux reasons (fluxcd/pkg/apis/meta and kustomize-controller) and what they say about health.
FLUX_HEALTH = {
    "ReconciliationSucceeded": "healthy",
    "HealthCheckSucceeded": "healthy",
    "Progressing": "progressing",
    "DependencyNotReady": "progressing",
    "HealthCheckFailed": "degraded",
    "ReconciliationFailed": "degraded",
    "BuildFailed": "degraded",
    "ValidationFailed": "degraded",
    "ArtifactFailed": "degraded",
}

ARGO_HEALTH = {
    "healthy": "healthy",
    "progressing": "progressing",
    "degraded": "degraded",
    "missing": "degraded",
    "suspended": "progressing",
}


@dataclass(frozen=True)
class ClusterReport:
    """A report about one GitOps object (a Flux Kustomization, an Argo CD Application)."""

    source: str  # flux | argocd
    object_name: str
    revision: str
    health: str
    reason: str


def parse_flux_revision(value: str) -> str | None:
    """``main@sha1:<sha>``, ``main/<sha>``, ``sha1:<sha>`` or a bare SHA -> the SHA."""
    text = value.strip()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if ":" in text:
        text = text.split(":", 1)[1]
    if "/" in text:
        text = text.rsplit("/", 1)[1]
    text = text.lower()
    return text if _SHA.match(text) else None


def flux_report(event: Mapping[str, Any]) -> ClusterReport | None:
    """The report in a notification-controller event, or None for events we do not use."""
    obj = event.get("involvedObject")
    reason = event.get("reason")
    if not isinstance(obj, Mapping) or not isinstance(reason, str):
        raise Invalid(
            "not a Flux event: expected involvedObject and reason (the notification-controller "
            "`generic` / `generic-hmac` provider body)",
            code="invalid_event",
        )
    if obj.get("kind") != "Kustomization" or reason not in FLUX_HEALTH:
        return None
    metadata = event.get("metadata") or {}
    revision = None
    if isinstance(metadata, Mapping):
        for key, value in metadata.items():
            # the generic provider strips the group prefix; controller-side keys keep it
            if isinstance(value, str) and (key == "revision" or key.endswith("/revision")):
                revision = parse_flux_revision(value)
                break
    if revision is None or not isinstance(obj.get("name"), str):
        return None
    return ClusterReport("flux", obj["name"], revision, FLUX_HEALTH[reason], reason)


def argocd_report(body: Mapping[str, Any]) -> ClusterReport | None:
    """The report in the body of the argocd-notifications template the README gives."""
    app = body.get("app")
    revision = body.get("revision")
    if not isinstance(app, str) or not isinstance(revision, str):
        raise Invalid(
            "not a Stageflow Argo CD notification: expected {app, revision, sync_status, "
            "health_status, operation_phase} (see the README's argocd-notifications-cm)",
            code="invalid_event",
        )
    sha = parse_flux_revision(revision)
    if sha is None:
        return None
    health = ARGO_HEALTH.get(str(body.get("health_status", "")).lower())
    phase = str(body.get("operation_phase") or "").lower()
    sync = str(body.get("sync_status") or "").lower()
    if phase in ("failed", "error"):
        health = "degraded"
    elif phase == "running" or (sync == "outofsync" and health == "healthy"):
        health = "progressing"
    if health is None:
        return None
    return ClusterReport("argocd", app, sha, health, f"{sync}/{health}/{phase}".strip("/"))


def stage_of(pipeline: Pipeline, source: str, object_name: str) -> tuple[str, str] | None:
    """Map a Kustomization / Application name to (app, stage): explicit map, then <app>-<stage>."""
    for app in pipeline.apps.values():
        mapping = app.flux if source == "flux" else app.argocd
        for stage, name in mapping.items():
            if name == object_name:
                return app.name, stage
    for app in pipeline.apps.values():
        for stage in pipeline.stage_names:
            if object_name == f"{app.name}-{stage}":
                return app.name, stage
    return None
