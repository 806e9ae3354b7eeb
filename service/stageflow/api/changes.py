"""Change the desired state: flags and images, each change one commit on the remote."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api import access
from stageflow.api.answers import Written
from stageflow.api.auth import current_actor, current_stageflow, requires
from stageflow.api.idempotency import idempotent
from stageflow.api.schemas import (
    FlagCreatedSchema,
    FlagCreateSchema,
    FlagEditSchema,
    ImageSetResultSchema,
    ImageSetSchema,
    RevisionSchema,
    StageFlagPatchSchema,
)
from stageflow.domain.flags import Flag
from stageflow.domain.images import ImageRef
from stageflow.services import flags, images
from stageflow.services.flags import UNSET

blp = Blueprint(
    "changes",
    __name__,
    url_prefix="/api/v1",
    description="Change flags and images; each change is one rendered, pushed commit",
)

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "repeat a write safely: the same key and body return the first answer",
}


@blp.route("/apps/<app>/flags")
class Flags(MethodView):
    @requires("editor", touches=access.first_stage)
    @idempotent
    @blp.arguments(FlagCreateSchema)
    @blp.response(201, FlagCreatedSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR")
    @blp.alt_response(422, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def post(self, body: dict[str, Any], app: str) -> Written[Flag]:
        """Create a flag in the first stage (OFF unless defaultVariant says otherwise)."""
        spec = flags.NewFlag(
            body["key"],
            description=body.get("description"),
            lifecycle=body.get("lifecycle"),
            variants=body.get("variants"),
            default_variant=body.get("defaultVariant"),
        )
        done = flags.create_flag(current_stageflow(), app, spec, actor=current_actor())
        return Written.of(done, done.result.value)


@blp.route("/apps/<app>/flags/<key>")
class FlagByKey(MethodView):
    @requires("editor", touches=access.stages_with_flag)
    @idempotent
    @blp.arguments(FlagEditSchema)
    @blp.response(200, RevisionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def patch(self, body: dict[str, Any], app: str, key: str) -> Written[None]:
        """Change a flag's lifecycle or description in every stage that has it."""
        done = flags.edit_flag(
            current_stageflow(),
            app,
            key,
            actor=current_actor(),
            lifecycle=body.get("lifecycle"),
            description=body.get("description", UNSET),
        )
        return Written.of(done, None)


@blp.route("/apps/<app>/stages/<stage>/flags/<key>")
class StageFlag(MethodView):
    @requires("editor")
    @idempotent
    @blp.arguments(StageFlagPatchSchema)
    @blp.response(200, FlagCreatedSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR", description="flag_not_allowed")
    @blp.alt_response(422, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def patch(self, body: dict[str, Any], app: str, stage: str, key: str) -> Written[Flag]:
        """Toggle or change a flag in one stage (ON obeys flags.allow; OFF always works)."""
        change = flags.StageFlagChange(
            enabled=body.get("enabled"),
            default_variant=body.get("defaultVariant", UNSET),
            state=body.get("state", UNSET),
            targeting=body.get("targeting", UNSET),
        )
        done = flags.update_stage_flag(
            current_stageflow(), app, stage, key, change, actor=current_actor()
        )
        return Written.of(done, done.result.value)

    @requires("editor")
    @idempotent
    @blp.response(200, RevisionSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def delete(self, app: str, stage: str, key: str) -> Written[None]:
        """Remove a flag's definition from one stage."""
        done = flags.delete_stage_flag(current_stageflow(), app, stage, key, actor=current_actor())
        return Written.of(done, None)


@blp.route("/apps/<app>/stages/<stage>/images")
class StageImages(MethodView):
    @requires("editor")
    @idempotent
    @blp.arguments(ImageSetSchema)
    @blp.response(200, ImageSetResultSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    @blp.alt_response(409, response="DEFAULT_ERROR", description="stage_skipped")
    @blp.alt_response(422, response="DEFAULT_ERROR")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER])
    def put(self, body: dict[str, Any], app: str, stage: str) -> Written[ImageRef]:
        """Set an image tag or digest in the first stage (later stages get it by promotion)."""
        done = images.set_image(
            current_stageflow(),
            app,
            stage,
            ImageRef(body["name"], tag=body.get("tag"), digest=body.get("digest")),
            actor=current_actor(),
        )
        return Written.of(done, done.result.value)
