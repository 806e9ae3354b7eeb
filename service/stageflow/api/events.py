"""Events, promotion evidence and DORA figures."""

from __future__ import annotations

import json
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.auth import current_stageflow, current_token, requires
from stageflow.api.schemas import (
    DoraQuerySchema,
    DoraSchema,
    EventPageSchema,
    EventQuerySchema,
    EvidencePageSchema,
    EvidenceQuerySchema,
    EvidenceSchema,
    NotificationPageSchema,
    NotificationQuerySchema,
)
from stageflow.domain.evidence import Evidence
from stageflow.services import dora, events, evidence

blp = Blueprint(
    "events", __name__, url_prefix="/api/v1", description="Events, evidence and DORA figures"
)


def evidence_view(found: Evidence) -> dict[str, Any]:
    return {
        "id": found.id,
        "promotion_id": found.promotion_id,
        "at": found.at.isoformat(),
        "record": json.loads(found.record),
        "record_json": found.record,
        "digest": found.digest,
        "previous_digest": found.previous_digest,
    }


@blp.route("/events")
class Events(MethodView):
    @requires("viewer")
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """What happened, oldest first, from `after` on: the event log that notifications and
        event streams read. Only events of the apps and stages the token covers."""
        found = events.page(
            current_stageflow(),
            current_token().scope,
            after=query["after"],
            limit=query["limit"],
            kinds=query.get("kind") or (),
            app=query.get("app"),
        )
        items = [event.to_json() for event in found.items]
        return {"items": items, "next": found.next}


@blp.route("/notifications")
class Notifications(MethodView):
    @requires("viewer")
    @blp.arguments(NotificationQuerySchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Each event sent to a `notify:` target: status, attempts, last error; newest first."""
        items, following = events.deliveries(
            current_stageflow(),
            current_token().scope,
            status=query.get("status"),
            target=query.get("target"),
            before=query.get("before"),
            limit=query["limit"],
        )
        return {"items": [item.to_json() for item in items], "next": following}


@blp.route("/promotions/<int:promotion_id>/evidence")
class PromotionEvidence(MethodView):
    @requires("viewer", touches=access.promotion)
    @blp.response(200, EvidenceSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, promotion_id: int) -> dict[str, Any]:
        """A settled promotion's evidence: `{record, digest, previous_digest}`."""
        return evidence_view(evidence.of_promotion(current_stageflow(), promotion_id))


@blp.route("/evidence")
class EvidenceChain(MethodView):
    @requires("viewer", touches=access.everything)
    @blp.arguments(EvidenceQuerySchema, location="query")
    @blp.response(200, EvidencePageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The whole evidence chain, oldest first (`stageflow evidence verify` reads it). The
        chain links every app's records, so it needs a token without a scope."""
        limit = query["limit"]
        found = evidence.page(current_stageflow(), after=query["after"], limit=limit)
        return {
            "items": [evidence_view(entry) for entry in found],
            "next": found[-1].id if len(found) == limit else None,
        }


@blp.route("/apps/<app>/metrics/dora")
class Dora(MethodView):
    @requires("viewer", touches=access.app_wide)
    @blp.arguments(DoraQuerySchema, location="query")
    @blp.response(200, DoraSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, query: dict[str, Any], app: str) -> dict[str, Any]:
        """Deployment frequency, lead time, change failure rate and time to restore of a stage
        (default: the last), over the last `days` (default 30), from the ledger."""
        return dora.figures(current_stageflow(), app, stage=query.get("stage"), days=query["days"])
