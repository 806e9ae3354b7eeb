"""Webhooks from the cluster: Flux notification-controller and argocd-notifications."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.auth import current_stageflow, current_token, requires
from stageflow.domain.errors import Invalid
from stageflow.domain.feedback import argocd_report, flux_report
from stageflow.services import feedback

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="What Flux and Argo CD report; each verifies its own signature or token",
)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("the body is not JSON", code="malformed_json") from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object", code="invalid_event")
    return body


@blp.route("/flux")
class FluxWebhook(MethodView):
    # A reporter token (generic provider) or the HMAC secret (generic-hmac), either limited to
    # its scope over the app and stage the event's Kustomization names.
    @requires("reporter", touches=access.webhook_target("flux"), principal=access.flux_principal)
    @blp.response(202, description="{recorded, app, stage, revision, health, reason}")
    @blp.alt_response(401, response="DEFAULT_ERROR")
    @blp.doc(security=[{"bearer": []}, {}])
    def post(self) -> tuple[dict[str, Any], int]:
        """Take a Flux notification-controller event (generic or generic-hmac provider)."""
        actor = current_token().owner
        report = flux_report(_json(request.get_data(cache=True)))
        if report is None:
            return {
                "recorded": False,
                "reason": "event not used (only Kustomization sync and "
                "health events with a revision are)",
            }, 202
        return feedback.record_cluster_report(current_stageflow(), report, actor=actor), 202


@blp.route("/argocd")
class ArgoWebhook(MethodView):
    @requires("reporter", touches=access.webhook_target("argocd"))
    @blp.response(202, description="{recorded, app, stage, revision, health, reason}")
    @blp.alt_response(401, response="DEFAULT_ERROR")
    def post(self) -> tuple[dict[str, Any], int]:
        """Take an argocd-notifications webhook (the template in docs/gitops-controllers.md)."""
        actor = current_token().owner
        report = argocd_report(_json(request.get_data(cache=True)))
        if report is None:
            return {
                "recorded": False,
                "reason": "notification not used (no SHA revision or unknown health)",
            }, 202
        return feedback.record_cluster_report(current_stageflow(), report, actor=actor), 202
