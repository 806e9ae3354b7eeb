"""Webhooks from the cluster: Flux notification-controller and argocd-notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api.auth import current_stageflow
from stageflow.domain.errors import Invalid, Unauthenticated
from stageflow.domain.feedback import argocd_report, flux_report
from stageflow.services import feedback, tokens

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="What Flux and Argo CD report; each verifies its own signature or token",
)


def _reporter() -> str:
    """Authenticate by a bearer token with the `reporter` role; return its owner."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    token = tokens.authenticate(
        current_stageflow(), secret.strip() if scheme.lower() == "bearer" else None
    )
    token.require("reporter")
    return token.owner


def _verify_hmac(raw: bytes, signature: str) -> None:
    secret = current_app.extensions["stageflow.settings"].flux_webhook_secret
    if not secret:
        raise Unauthenticated(
            "X-Signature sent, but STAGEFLOW_FLUX_WEBHOOK_SECRET is not set on the server; set it "
            "to the generic-hmac provider's secret, or send a reporter token instead",
            code="signature_not_configured",
        )
    algorithm, _, digest = signature.partition("=")
    if algorithm != "sha256":
        raise Unauthenticated(
            f"X-Signature uses {algorithm or 'no algorithm'}; Stageflow expects sha256=<hex>",
            code="bad_signature",
        )
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        raise Unauthenticated(
            "X-Signature does not match the body: check that the provider's secret equals "
            "STAGEFLOW_FLUX_WEBHOOK_SECRET",
            code="bad_signature",
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
    @blp.response(202, description="{recorded, app, stage, revision, health, reason}")
    @blp.alt_response(401, response="DEFAULT_ERROR")
    @blp.doc(security=[{"bearer": []}, {}])
    def post(self):  # type: ignore[no-untyped-def]
        """Take a Flux notification-controller event (generic or generic-hmac provider)."""
        raw = request.get_data(cache=True)
        signature = request.headers.get("X-Signature")
        if signature is not None:
            _verify_hmac(raw, signature)
            actor = "flux"
        else:
            actor = _reporter()
        report = flux_report(_json(raw))
        if report is None:
            return {
                "recorded": False,
                "reason": "event not used (only Kustomization sync and "
                "health events with a revision are)",
            }, 202
        return feedback.record_cluster_report(current_stageflow(), report, actor=actor), 202


@blp.route("/argocd")
class ArgoWebhook(MethodView):
    @blp.response(202, description="{recorded, app, stage, revision, health, reason}")
    @blp.alt_response(401, response="DEFAULT_ERROR")
    def post(self):  # type: ignore[no-untyped-def]
        """Take an argocd-notifications webhook (the template in docs/gitops-controllers.md)."""
        actor = _reporter()
        report = argocd_report(_json(request.get_data(cache=True)))
        if report is None:
            return {
                "recorded": False,
                "reason": "notification not used (no SHA revision or unknown health)",
            }, 202
        return feedback.record_cluster_report(current_stageflow(), report, actor=actor), 202
