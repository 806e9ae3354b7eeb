"""Read the desired state: pipeline, apps, app state, flag matrix, flagd document."""

from __future__ import annotations

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api.auth import current_stageflow, requires
from stageflow.api.schemas import AppStateSchema, AppSummarySchema, PipelineSchema
from stageflow.services import state

blp = Blueprint(
    "reads", __name__, url_prefix="/api/v1", description="The desired state, read from Git"
)


@blp.route("/pipeline")
class PipelineView(MethodView):
    @requires("viewer")
    @blp.response(200, PipelineSchema)
    @blp.alt_response(401, response="DEFAULT_ERROR")
    def get(self):  # type: ignore[no-untyped-def]
        """Show the pipeline: stages in order with their policy, the apps and the repository."""
        return state.pipeline_view(current_stageflow())


@blp.route("/apps")
class Apps(MethodView):
    @requires("viewer")
    @blp.response(200, AppSummarySchema(many=True))
    def get(self):  # type: ignore[no-untyped-def]
        """List the apps of the pipeline."""
        return state.apps_view(current_stageflow())


@blp.route("/apps/<app>")
class AppByName(MethodView):
    @requires("viewer")
    @blp.response(200, AppStateSchema)
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str):  # type: ignore[no-untyped-def]
        """Show an app's images, flags and overlay revision in every stage."""
        # AppStateSchema documents the answer; the view already builds exactly that shape, and
        # a marshmallow dump of hundreds of flag cells would cost a third of the request. A
        # Response passes through flask-smorest unchanged.
        return current_app.json.response(state.app_view(current_stageflow(), app))


@blp.route("/apps/<app>/flags")
class FlagMatrix(MethodView):
    @requires("viewer")
    @blp.response(200, description="{key: {lifecycle, description, stages: {stage: cell|null}}}")
    @blp.alt_response(304, description="not modified since If-None-Match (the revision)")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str):  # type: ignore[no-untyped-def]
        """Show every flag of an app across the stages (null where a stage lacks it)."""
        sf = current_stageflow()
        revision, matrix = state.flag_matrix(sf, app)
        etag = f'"{revision}"'
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return Response(status=304, headers={"ETag": etag})
        body = sf.cache.get(("matrix-json", revision, app), lambda: current_app.json.dumps(matrix))
        return Response(body, mimetype="application/json", headers={"ETag": etag})


@blp.route("/apps/<app>/stages/<stage>/flags")
class StageFlagsDocument(MethodView):
    @requires("viewer")
    @blp.response(200, description="the flagd document exactly as committed, ETag = revision")
    @blp.alt_response(304, description="not modified since If-None-Match")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str, stage: str):  # type: ignore[no-untyped-def]
        """Return the stage's flagd document byte for byte as committed."""
        revision, text = state.stage_flags_document(current_stageflow(), app, stage)
        etag = f'"{revision}"'
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return Response(status=304, headers={"ETag": etag})
        return Response(text, mimetype="application/json", headers={"ETag": etag})
