"""Promote an app's state to the next stage, and the reports that gate it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.answers import (
    DryRun,
    HoldReleased,
    Page,
    RejectionReleased,
    ReportedCheck,
    RolledBack,
    StageDeployment,
    StageThawed,
)
from stageflow.api.auth import current_actor, current_stageflow, current_token, requires
from stageflow.api.changes import IDEMPOTENCY_HEADER
from stageflow.api.idempotency import idempotent
from stageflow.api.promotion_schemas import (
    ApprovalCreateSchema,
    CheckCreateSchema,
    CheckQuerySchema,
    CheckSchema,
    DeploymentCreateSchema,
    DeploymentSchema,
    FreezeCreateSchema,
    FreezeSchema,
    FrozenSchema,
    HeldSchema,
    HoldCreateSchema,
    HoldReleasedSchema,
    PromotionCreateSchema,
    PromotionPageSchema,
    PromotionQuerySchema,
    PromotionSchema,
    RejectionReleasedSchema,
    RejectionSchema,
    RollbackSchema,
    ThawedSchema,
)
from stageflow.domain.gates import Freeze, Hold
from stageflow.domain.promotions import Promotion, Rejection, Selection
from stageflow.services import holds, promotions, reports, rollbacks

blp = Blueprint(
    "promotions",
    __name__,
    url_prefix="/api/v1",
    description="Promotions, their gates, and the checks and deployments that feed them",
)


def with_restore(promotion: Promotion) -> Promotion | RolledBack:
    """A rolled-back promotion answers with its rollback's time to restore."""
    if promotion.status != "rolled_back" or promotion.id is None:
        return promotion
    return RolledBack(promotion, rollbacks.restore_of(current_stageflow(), promotion.id))


def _restore_json(promotion_id: int | None) -> dict[str, Any] | None:
    restore = rollbacks.restore_of(current_stageflow(), promotion_id) if promotion_id else None
    return None if restore is None else restore.to_json()


@blp.route("/apps/<app>/promotions")
class AppPromotions(MethodView):
    @requires("promoter", touches=access.target_stage)
    @idempotent
    @blp.arguments(PromotionCreateSchema)
    @blp.response(201, PromotionSchema)
    @blp.alt_response(200, schema=PromotionSchema, description="dry_run: nothing stored")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR", description="nothing_to_promote")
    @blp.alt_response(422, response="DEFAULT_ERROR", description="stage_skipped")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def post(self, body: dict[str, Any], app: str) -> Promotion | tuple[DryRun, int]:
        """Promote the app into `to` from the stage before it, when that stage's gates hold."""
        promotion = promotions.promote(
            current_stageflow(),
            app,
            to=body["to"],
            from_=body.get("from_"),
            selection=Selection(images=body["images"], flags=body["flags"]),
            dry_run=body["dry_run"],
            reason=body.get("reason"),
            actor=current_actor(),
        )
        if body["dry_run"]:
            return DryRun(promotion), 200
        return promotion


@blp.route("/promotions")
class PromotionList(MethodView):
    @requires("viewer")
    @blp.arguments(PromotionQuerySchema, location="query")
    @blp.response(200, PromotionPageSchema)
    def get(self, query: dict[str, Any]) -> Page[Promotion]:
        """List promotions, newest first; page with `before`."""
        limit = query["limit"]
        items = promotions.list_promotions(
            current_stageflow(),
            app=query.get("app"),
            target=query.get("to"),
            status=query.get("status"),
            before_id=query.get("before"),
            limit=limit,
            scope=current_token().scope,
        )
        return Page.of(items, limit)


@blp.route("/promotions/<int:promotion_id>")
class PromotionById(MethodView):
    @requires("viewer", touches=access.promotion)
    @blp.response(200, PromotionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, promotion_id: int) -> Promotion | RolledBack:
        """Show a promotion with its plan, gates, diff and approvals."""
        return with_restore(promotions.get_promotion(current_stageflow(), promotion_id))


@blp.route("/promotions/<int:promotion_id>/approvals")
class PromotionApprovals(MethodView):
    @requires("approver", touches=access.promotion)
    @idempotent
    @blp.arguments(ApprovalCreateSchema)
    @blp.response(201, PromotionSchema)
    @blp.alt_response(403, response="DEFAULT_ERROR", description="self_approval")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def post(self, body: dict[str, Any], promotion_id: int) -> Promotion:
        """Approve a promotion (never your own); applies it when the gates hold."""
        return promotions.approve(
            current_stageflow(), promotion_id, actor=current_actor(), comment=body.get("comment")
        )


@blp.route("/promotions/<int:promotion_id>/evaluate")
class PromotionEvaluate(MethodView):
    @requires("promoter", touches=access.promotion)
    @idempotent
    @blp.response(200, PromotionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR")
    def post(self, promotion_id: int) -> Promotion:
        """Re-run the gates; apply when they hold."""
        return promotions.evaluate(current_stageflow(), promotion_id, actor=current_actor())


@blp.route("/promotions/<int:promotion_id>/cancel")
class PromotionCancel(MethodView):
    @requires("promoter", touches=access.promotion)
    @blp.response(200, PromotionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR")
    def post(self, promotion_id: int) -> Promotion:
        """Cancel a waiting promotion."""
        return promotions.cancel(current_stageflow(), promotion_id, actor=current_actor())


@blp.route("/apps/<app>/stages/<stage>/checks")
class StageChecks(MethodView):
    @requires("reporter")
    @blp.arguments(CheckCreateSchema)
    @blp.response(201, CheckSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(422, response="DEFAULT_ERROR", description="unknown_revision")
    def post(self, body: dict[str, Any], app: str, stage: str) -> ReportedCheck:
        """Record a check result (smoke, load, ...) for a revision of a stage."""
        owner = current_token().owner
        check, details, rolled = reports.record_check(
            current_stageflow(),
            app,
            stage,
            kind=body["kind"],
            revision=body["revision"],
            status=body["status"],
            summary=body.get("summary"),
            url=body.get("url"),
            details=body.get("details"),
            actor=owner,
        )
        rollback = None
        if rolled is not None:
            rollback = {
                "promotion": rolled.id,
                "revision": rolled.rolled_back_revision,
                # in a Dict field: ISO strings, as the restore's own JSON gives them
                "restore": _restore_json(rolled.id),
            }
        return ReportedCheck(app, stage, check, details, owner, rollback)

    @requires("viewer")
    @blp.arguments(CheckQuerySchema, location="query")
    @blp.response(200, CheckSchema(many=True))
    def get(self, query: dict[str, Any], app: str, stage: str) -> list[ReportedCheck]:
        """List check results of a stage, newest first."""
        rows = reports.list_checks(
            current_stageflow(),
            app,
            stage,
            revision=query.get("revision"),
            kind=query.get("kind"),
            before_id=query.get("before"),
            limit=query["limit"],
        )
        return [ReportedCheck(app, stage, check, details, by) for check, details, by in rows]


@blp.route("/apps/<app>/stages/<stage>/deployments")
class StageDeployments(MethodView):
    @requires("reporter")
    @blp.arguments(DeploymentCreateSchema)
    @blp.response(201, DeploymentSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(422, response="DEFAULT_ERROR")
    def post(self, body: dict[str, Any], app: str, stage: str) -> StageDeployment:
        """Report what a stage runs (any tool; Flux and Argo CD have their own webhooks)."""
        deployment = reports.record_deployment(
            current_stageflow(),
            app,
            stage,
            revision=body["revision"],
            health=body["health"],
            actor=current_token().owner,
        )
        return StageDeployment(app, stage, deployment)

    @requires("viewer")
    @blp.response(200, DeploymentSchema(many=True))
    def get(self, app: str, stage: str) -> list[StageDeployment]:
        """List what a stage reported running, newest first."""
        found = reports.recent_deployments(current_stageflow(), app, stage)
        return [StageDeployment(app, stage, deployment) for deployment in found]


@blp.route("/apps/<app>/stages/<stage>/hold")
class StageHold(MethodView):
    @requires("admin")
    @blp.arguments(HoldCreateSchema)
    @blp.response(201, HeldSchema, description="held")
    def post(self, body: dict[str, Any], app: str, stage: str) -> Hold:
        """Put an app's stage on hold: no promotion into it until released."""
        return holds.hold(
            current_stageflow(), app, stage, reason=body["reason"], actor=current_token().owner
        )

    @requires("admin")
    @blp.response(200, HoldReleasedSchema, description="released")
    def delete(self, app: str, stage: str) -> HoldReleased:
        """Release the hold."""
        holds.release(current_stageflow(), app, stage, actor=current_token().owner)
        return HoldReleased(app, stage)


@blp.route("/stages/<stage>/freeze")
class StageFreeze(MethodView):
    @requires("admin", touches=access.every_app)
    @blp.arguments(FreezeCreateSchema)
    @blp.response(201, FrozenSchema, description="frozen")
    def post(self, body: dict[str, Any], stage: str) -> Freeze:
        """Freeze a stage for every app (no promotion into it)."""
        return holds.freeze(
            current_stageflow(),
            stage,
            reason=body["reason"],
            until=body.get("until"),
            actor=current_token().owner,
        )

    @requires("admin", touches=access.every_app)
    @blp.response(200, ThawedSchema, description="thawed")
    def delete(self, stage: str) -> StageThawed:
        """Thaw a frozen stage."""
        holds.thaw(current_stageflow(), stage, actor=current_token().owner)
        return StageThawed(stage)


@blp.route("/freezes")
class Freezes(MethodView):
    @requires("viewer")
    @blp.response(200, FreezeSchema(many=True))
    def get(self) -> Sequence[Freeze]:
        """List the stages frozen now, with who froze them, why and until when."""
        return holds.active_freezes(current_stageflow())


@blp.route("/promotions/<int:promotion_id>/rollback")
class PromotionRollback(MethodView):
    @requires("promoter", touches=access.promotion)
    @idempotent
    @blp.arguments(RollbackSchema)
    @blp.response(200, PromotionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR", description="rollback_conflict")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def post(self, body: dict[str, Any], promotion_id: int) -> RolledBack:
        """Restore the target overlay as before this promotion, in a new commit."""
        sf = current_stageflow()
        rolled = rollbacks.rollback(
            sf, promotion_id, actor=current_actor(), reason=body.get("reason")
        )
        # The answer's revision is the rollback's commit (the promotion's own stays stored).
        return RolledBack(
            replace(rolled, revision=rolled.rolled_back_revision),
            rollbacks.restore_of(sf, promotion_id),
        )


@blp.route("/apps/<app>/rejections")
class AppRejections(MethodView):
    @requires("viewer")
    @blp.response(
        200, RejectionSchema(many=True), description="image versions that may not be promoted"
    )
    def get(self, app: str) -> Sequence[Rejection]:
        """List the rejected (rolled-back) image versions of an app."""
        return rollbacks.rejections(current_stageflow(), app)


@blp.route("/apps/<app>/rejections/<int:rejection_id>")
class AppRejection(MethodView):
    @requires("promoter", touches=access.every_stage)
    @blp.response(200, RejectionReleasedSchema, description="released")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def delete(self, app: str, rejection_id: int) -> RejectionReleased:
        """Allow a rejected image version to be promoted again."""
        rollbacks.release_rejection(
            current_stageflow(), app, rejection_id, actor=current_token().owner
        )
        return RejectionReleased(rejection_id)
