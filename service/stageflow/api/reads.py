"""Read the desired state: pipeline, apps, app state, flag matrix, flagd document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api.auth import current_stageflow, current_token, requires
from stageflow.api.schemas import AppStateSchema, AppSummarySchema, PipelineSchema
from stageflow.services import state
from stageflow.services.context import Stageflow
from stageflow.services.memos import Memo

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
        return state.pipeline_view(current_stageflow(), current_token().scope)


@blp.route("/apps")
class Apps(MethodView):
    @requires("viewer")
    @blp.response(200, AppSummarySchema(many=True))
    def get(self):  # type: ignore[no-untyped-def]
        """List the apps of the pipeline."""
        return state.apps_view(current_stageflow(), current_token().scope)


@blp.route("/apps/<app>")
class AppByName(MethodView):
    @requires("viewer")
    @blp.response(200, AppStateSchema)
    @blp.alt_response(304, description="not modified since If-None-Match")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str):  # type: ignore[no-untyped-def]
        """Show an app's images, flags, deployments, checks and holds in every stage."""
        # AppStateSchema documents the answer; the view already builds exactly that shape, and
        # a marshmallow dump of hundreds of flag cells would cost a third of the request. A
        # Response passes through flask-smorest unchanged.
        return _conditional(
            *app_state_answer(
                current_stageflow(), current_app.json.dumps, app, current_token().scope.stages
            )
        )


@blp.route("/apps/<app>/flags")
class FlagMatrix(MethodView):
    @requires("viewer")
    @blp.response(200, description="{key: {lifecycle, description, stages: {stage: cell|null}}}")
    @blp.alt_response(304, description="not modified since If-None-Match (the revision)")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str):  # type: ignore[no-untyped-def]
        """Show every flag of an app across the stages (null where a stage lacks it)."""
        return _conditional(
            *matrix_answer(
                current_stageflow(), current_app.json.dumps, app, current_token().scope.stages
            )
        )


@blp.route("/apps/<app>/stages/<stage>/flags")
class StageFlagsDocument(MethodView):
    @requires("viewer")
    @blp.response(200, description="the flagd document exactly as committed, ETag = revision")
    @blp.alt_response(304, description="not modified since If-None-Match")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str, stage: str):  # type: ignore[no-untyped-def]
        """Return the stage's flagd document byte for byte as committed."""
        return _conditional(*document_answer(current_stageflow(), app, stage))


# -- the answers, shared with the fast path (fastpath.py) ----------------------------------------

Body = Callable[[], bytes]
Headers = list[tuple[str, str]]
STALE_HEADER = "Warning"


def stale_headers(notes: Sequence[str]) -> Headers:
    """The ``Warning`` header of an answer that may be stale (RFC 7234 code 110), or none.

    One warning value per reason: the Git remote unreachable since a time (the answer is the
    last head this process saw), or a file pushed broken (read as its last valid version).
    """
    if not notes:
        return []
    values = []
    for note in notes:
        text = note.replace("\\", "\\\\").replace('"', '\\"')
        values.append(f'110 stageflow "Response is Stale: {text}"')
    return [(STALE_HEADER, ", ".join(values))]


def app_state_answer(
    sf: Stageflow, dumps: Callable[[Any], str], app: str, stages: Sequence[str] = ()
) -> tuple[str, Body, Headers]:
    """Return the ETag of an app's state, a maker of its JSON body (made once per tag), and
    the headers saying whether it may be stale.

    ``stages``: a stage-scoped reader's stages, the only ones its answer shows (default: all).
    """
    tag, view = state.app_view(sf, app)
    headers = _stale(sf, view["revision"], app)
    if stages:
        view, tag = state.within_stages(view, stages), _scoped_tag(tag, stages)
    return (*_cached_json(sf.cache.app_state_json, tag, app, view, dumps), headers)


def matrix_answer(
    sf: Stageflow, dumps: Callable[[Any], str], app: str, stages: Sequence[str] = ()
) -> tuple[str, Body, Headers]:
    """Return the ETag (the revision) of an app's flag matrix, a maker of its JSON body, and
    the headers saying whether it may be stale."""
    tag, matrix = state.flag_matrix(sf, app)
    headers = _stale(sf, tag, app)
    if stages:
        matrix, tag = state.matrix_within_stages(matrix, stages), _scoped_tag(tag, stages)
    return (*_cached_json(sf.cache.matrix_json, tag, app, matrix, dumps), headers)


def _stale(sf: Stageflow, revision: str, app: str, stage: str | None = None) -> Headers:
    notes = state.outage_notes(sf, revision) + state.file_notes(sf, revision, app, stage)
    return stale_headers(notes)


def _scoped_tag(tag: str, stages: Sequence[str]) -> str:
    return f"{tag}.{'+'.join(sorted(stages))}"


def document_answer(sf: Stageflow, app: str, stage: str) -> tuple[str, Body, Headers]:
    """Return the ETag (the revision) of a stage's flagd document, a maker of its bytes, and
    the headers saying whether it may be stale."""
    revision, data = state.stage_flags_document(sf, app, stage)
    return f'"{revision}"', lambda: data, _stale(sf, revision, app, stage)


def _cached_json(
    memo: Memo[tuple[str, str], bytes], tag: str, app: str, view: Any, dumps: Callable[[Any], str]
) -> tuple[str, Body]:
    """Serialize a view that ``tag`` versions once per tag and app in this process."""

    def serialize() -> tuple[bytes, int]:
        data = dumps(view).encode("utf-8")
        return data, len(data)

    return f'"{tag}"', lambda: memo.get_weighed((tag, app), serialize)


def _conditional(etag: str, body: Body, headers: Headers) -> Response:
    """Answer 304 when If-None-Match names ``etag``, else 200 with ``body()``; ETag either way."""
    if request.if_none_match.contains_weak(etag.strip('"')):  # as the OFREP bulk answer does
        return Response(status=304, headers=[("ETag", etag), *headers])
    return Response(body(), mimetype="application/json", headers=[("ETag", etag), *headers])
