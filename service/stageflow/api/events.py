"""Events, promotion evidence and DORA figures."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.answers import Page
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
from stageflow.domain.notify import Delivery
from stageflow.services import dora, events, evidence

blp = Blueprint(
    "events", __name__, url_prefix="/api/v1", description="Events, evidence and DORA figures"
)


@blp.route("/events")
class Events(MethodView):
    @requires("viewer")
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventPageSchema)
    def get(self, query: dict[str, Any]) -> events.Page:
        """What happened, oldest first, from `after` on: the event log that notifications and
        event streams read. Only events of the apps and stages the token covers."""
        return events.page(
            current_stageflow(),
            current_token().scope,
            after=query["after"],
            limit=query["limit"],
            kinds=query.get("kind") or (),
            app=query.get("app"),
        )


@blp.route("/notifications")
class Notifications(MethodView):
    @requires("viewer")
    @blp.arguments(NotificationQuerySchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, query: dict[str, Any]) -> Page[Delivery]:
        """Each event sent to a `notify:` target: status, attempts, last error; newest first."""
        items, following = events.deliveries(
            current_stageflow(),
            current_token().scope,
            status=query.get("status"),
            target=query.get("target"),
            before=query.get("before"),
            limit=query["limit"],
        )
        return Page(items, following)


@blp.route("/promotions/<int:promotion_id>/evidence")
class PromotionEvidence(MethodView):
    @requires("viewer", touches=access.promotion)
    @blp.response(200, EvidenceSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, promotion_id: int) -> Evidence:
        """A settled promotion's evidence: `{record, digest, previous_digest}`."""
        return evidence.of_promotion(current_stageflow(), promotion_id)


@blp.route("/evidence")
class EvidenceChain(MethodView):
    @requires("viewer", touches=access.everything)
    @blp.arguments(EvidenceQuerySchema, location="query")
    @blp.response(200, EvidencePageSchema)
    def get(self, query: dict[str, Any]) -> Page[Evidence]:
        """The whole evidence chain, oldest first (`stageflow evidence verify` reads it). The
        chain links every app's records, so it needs a token without a scope."""
        limit = query["limit"]
        return Page.of(evidence.page(current_stageflow(), after=query["after"], limit=limit), limit)


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
