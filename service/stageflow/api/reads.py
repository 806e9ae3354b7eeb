"""Read the desired state: pipeline, apps, app state, flag matrix, flagd document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from stageflow.api.auth import current_stageflow, current_token, requires
from stageflow.api.fastpath import Answer, Headers, Read, conditional_response, fast_read
from stageflow.api.pipeline_schemas import AppSummarySchema, PipelineSchema
from stageflow.api.schemas import AppStateSchema
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
    def get(self) -> state.PipelineOverview:
        """Show the pipeline: stages in order with their policy, the apps and the repository."""
        return state.pipeline_view(current_stageflow(), current_token().scope)


@blp.route("/apps")
class Apps(MethodView):
    @requires("viewer")
    @blp.response(200, AppSummarySchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """List the apps of the pipeline."""
        return state.apps_view(current_stageflow(), current_token().scope)


# -- the hot reads: one builder each, run by the view and by the fast path (fastpath.py) ----------


def app_state(read: Read) -> Answer:
    """An app's state as the token may see it (a stage-scoped reader: its stages only)."""
    return app_state_answer(
        read.stageflow, read.app.json.dumps, read.args["app"], read.token.scope.stages
    )


def flag_matrix(read: Read) -> Answer:
    """An app's flag matrix as the token may see it."""
    return matrix_answer(
        read.stageflow, read.app.json.dumps, read.args["app"], read.token.scope.stages
    )


def flags_document(read: Read) -> Answer:
    """A stage's flagd document byte for byte as committed."""
    return document_answer(read.stageflow, read.args["app"], read.args["stage"])


@blp.route("/apps/<app>")
class AppByName(MethodView):
    @fast_read(app_state)
    @requires("viewer")
    @blp.response(200, AppStateSchema)
    @blp.alt_response(304, description="not modified since If-None-Match")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str) -> Response:
        """Show an app's images, flags, deployments, checks and holds in every stage."""
        # AppStateSchema documents the answer; the view already builds exactly that shape, and
        # a marshmallow dump of hundreds of flag cells would cost a third of the request. A
        # Response passes through flask-smorest unchanged.
        return conditional_response(app_state(Read.from_flask()))


@blp.route("/apps/<app>/flags")
class FlagMatrix(MethodView):
    @fast_read(flag_matrix)
    @requires("viewer")
    @blp.response(200, description="{key: {lifecycle, description, stages: {stage: cell|null}}}")
    @blp.alt_response(304, description="not modified since If-None-Match (the revision)")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str) -> Response:
        """Show every flag of an app across the stages (null where a stage lacks it)."""
        return conditional_response(flag_matrix(Read.from_flask()))


@blp.route("/apps/<app>/stages/<stage>/flags")
class StageFlagsDocument(MethodView):
    @fast_read(flags_document)
    @requires("viewer")
    @blp.response(200, description="the flagd document exactly as committed, ETag = revision")
    @blp.alt_response(304, description="not modified since If-None-Match")
    @blp.alt_response(404, response="DEFAULT_ERROR")
    def get(self, app: str, stage: str) -> Response:
        """Return the stage's flagd document byte for byte as committed."""
        return conditional_response(flags_document(Read.from_flask()))


# -- the answers ---------------------------------------------------------------------------------

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
) -> Answer:
    """Return an app's state: its ETag, a maker of its JSON body (made once per tag), and the
    headers saying whether it may be stale.

    ``stages``: a stage-scoped reader's stages, the only ones its answer shows (default: all).
    """
    tag, view = state.app_view(sf, app)
    headers = _stale(sf, view["revision"], app)
    if stages:
        view, tag = state.within_stages(view, stages), _scoped_tag(tag, stages)
    return _cached_json(sf.cache.app_state_json, tag, app, view, dumps, headers)


def matrix_answer(
    sf: Stageflow, dumps: Callable[[Any], str], app: str, stages: Sequence[str] = ()
) -> Answer:
    """Return an app's flag matrix: its ETag (the revision), a maker of its JSON body, and the
    headers saying whether it may be stale."""
    tag, matrix = state.flag_matrix(sf, app)
    headers = _stale(sf, tag, app)
    if stages:
        matrix, tag = state.matrix_within_stages(matrix, stages), _scoped_tag(tag, stages)
    return _cached_json(sf.cache.matrix_json, tag, app, matrix, dumps, headers)


def _stale(sf: Stageflow, revision: str, app: str, stage: str | None = None) -> Headers:
    notes = state.outage_notes(sf, revision) + state.file_notes(sf, revision, app, stage)
    return stale_headers(notes)


def _scoped_tag(tag: str, stages: Sequence[str]) -> str:
    return f"{tag}.{'+'.join(sorted(stages))}"


def document_answer(sf: Stageflow, app: str, stage: str) -> Answer:
    """Return a stage's flagd document: its ETag (the revision), a maker of its bytes, and the
    headers saying whether it may be stale."""
    revision, data = state.stage_flags_document(sf, app, stage)
    return Answer(f'"{revision}"', lambda: data, _stale(sf, revision, app, stage))


def _cached_json(
    memo: Memo[tuple[str, str], bytes],
    tag: str,
    app: str,
    view: Any,
    dumps: Callable[[Any], str],
    headers: Headers,
) -> Answer:
    """Serialize a view that ``tag`` versions once per tag and app in this process."""

    def serialize() -> tuple[bytes, int]:
        data = dumps(view).encode("utf-8")
        return data, len(data)

    def body() -> bytes:
        return memo.get_weighed((tag, app), serialize)

    return Answer(f'"{tag}"', body, headers)
