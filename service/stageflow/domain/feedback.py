"""What Flux and Argo CD tell us, reduced to (object name, revision, health)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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


# What Go's text/template prints for a field the object does not have (argocd-notifications
# templates that read .app.status.operationState.* of an app that never ran an operation).
NO_VALUE = "<no value>"


@dataclass(frozen=True)
class ClusterReport:
    """A report about one GitOps object (a Flux Kustomization, an Argo CD Application).

    ``revision`` is the commit it reports; ``alternatives`` are further candidates, in order,
    for an object with several sources (an Argo CD multi-source Application reports one revision
    per source, and only the caller knows which of them are commits of the GitOps repo). ``at``
    is when the controller saw it (Flux's event ``timestamp``), None for "when it arrives".
    """

    source: str  # flux | argocd
    object_name: str
    revision: str
    health: str
    reason: str
    alternatives: tuple[str, ...] = ()
    at: datetime | None = None

    @property
    def revisions(self) -> tuple[str, ...]:
        """Every candidate commit, the preferred first."""
        return (self.revision, *self.alternatives)


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
    return ClusterReport(
        "flux",
        obj["name"],
        revision,
        FLUX_HEALTH[reason],
        reason,
        at=parse_timestamp(event.get("timestamp")),
    )


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 time (``2023-08-16T10:26:43Z``) as an aware UTC datetime, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a time without a zone cannot be placed
    return parsed.astimezone(UTC)


def _shas(*values: Any) -> list[str]:
    """The SHAs among strings and lists of strings, in order, once each."""
    found: list[str] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.strip() and item != NO_VALUE:
                sha = parse_flux_revision(item)
                if sha is not None and sha not in found:
                    found.append(sha)
    return found


def _word(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) and value != NO_VALUE else ""


def argocd_report(body: Mapping[str, Any]) -> ClusterReport | None:
    """The report in the body of the argocd-notifications template of docs/gitops-controllers.md.

    The revision is what the last sync operation applied: ``revision`` (a single-source app) or
    ``revisions`` (a multi-source one: one per source). An app that never ran an operation has
    neither; while it is Synced, what runs is the sync status's ``sync_revision`` /
    ``sync_revisions``. Missing fields may come as null, absent, or ``"<no value>"`` (bodies of
    older templates); none of them is a revision.
    """
    app = body.get("app")
    if not isinstance(app, str) or not app or app == NO_VALUE:
        raise Invalid(
            "not a Stageflow Argo CD notification: expected {app, revision, revisions, "
            "sync_status, health_status, operation_phase} (the template in "
            "docs/gitops-controllers.md)",
            code="invalid_event",
        )
    sync = _word(body.get("sync_status"))
    shas = _shas(body.get("revision"), body.get("revisions"))
    if not shas and sync == "synced":
        shas = _shas(body.get("sync_revision"), body.get("sync_revisions"))
    if not shas:
        return None
    health = ARGO_HEALTH.get(_word(body.get("health_status")))
    phase = _word(body.get("operation_phase"))
    if phase in ("failed", "error"):
        health = "degraded"
    elif phase == "running" or (sync == "outofsync" and health == "healthy"):
        health = "progressing"
    if health is None:
        return None
    return ClusterReport(
        "argocd",
        app,
        shas[0],
        health,
        f"{sync}/{health}/{phase}".strip("/"),
        alternatives=tuple(shas[1:]),
    )


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
