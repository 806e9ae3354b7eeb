"""OFREP: ``POST /ofrep/v1/evaluate/flags/{key}`` and ``POST /ofrep/v1/evaluate/flags``.

The OpenFeature Remote Evaluation Protocol, as its OpenAPI document defines it, so that any
OpenFeature SDK's OFREP provider can read the flags of one app in one stage. Answers, errors
included, use OFREP's own bodies (``{key, value, reason, variant, metadata}`` and
``{key, errorCode, errorDetails}``), not Stageflow's error format. Browsers may call it: the
answers carry CORS headers (tokens travel in a header, never in cookies, so any origin may).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from stageflow.api import errors
from stageflow.api.access import Asked, Target
from stageflow.api.auth import current_token, requires
from stageflow.api.fastpath import Answer, Read, conditional_response, fast_read
from stageflow.api.reads import stale_headers
from stageflow.domain import errors as domain
from stageflow.domain.evaluation import (
    FLAG_NOT_FOUND,
    GENERAL,
    PARSE_ERROR,
    EvaluationRequest,
    EvaluationRequestError,
    read_request,
)
from stageflow.domain.identity import ApiToken
from stageflow.services import evaluation
from stageflow.services.context import Stageflow
from stageflow.services.evaluation import APP_HEADER, STAGE_HEADER, FlagSet
from stageflow.services.limits import RateLimiter

log = logging.getLogger(__name__)

LIMITER = "stageflow.ofrep_limiter"

blp = Blueprint(
    "ofrep",
    __name__,
    url_prefix="/ofrep/v1",
    description="OpenFeature Remote Evaluation Protocol (OFREP): evaluate the flags of one app "
    "in one stage, from the committed flags.json, with the reference flagd evaluator. The token's "
    f"scope picks the app and stage; a token that may read several says which with `{APP_HEADER}`"
    f" / `{STAGE_HEADER}`.",
)


@blp.record_once
def _make_limiter(state: Any) -> None:
    settings = state.app.extensions.get("stageflow.settings")
    state.app.extensions[LIMITER] = RateLimiter(getattr(settings, "ofrep_rate_limit", 0) or 0)


# -- OpenAPI: the OFREP schemas, inline so that the document stays self-contained -----------------

_CONTEXT = {
    "type": "object",
    "description": "Evaluation context: targetingKey (a user or session id) and any attributes.",
    "properties": {"targetingKey": {"type": "string"}},
    "additionalProperties": True,
}
_REQUEST = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["context"],
                "properties": {"context": _CONTEXT},
            },
            "example": {"context": {"targetingKey": "user-123", "plan": "pro"}},
        }
    },
}
_METADATA = {
    "type": "object",
    "description": "the flag set's flagSetId and the flag's own metadata (not the document's "
    "version, which moves with every commit: the bulk answer's metadata carries it)",
    "additionalProperties": {
        "oneOf": [{"type": "boolean"}, {"type": "string"}, {"type": "number"}]
    },
}
_SUCCESS = {
    "type": "object",
    "required": ["key", "reason"],
    "properties": {
        "key": {"type": "string"},
        "value": {"description": "absent when the client is to use its code default"},
        "reason": {
            "type": "string",
            "description": "flagd's reason: STATIC, TARGETING_MATCH, DEFAULT or DISABLED",
        },
        "variant": {
            "type": "string",
            "description": "the variant served; empty when the client is to use its code default",
        },
        "metadata": _METADATA,
    },
}
_FAILURE = {
    "type": "object",
    "required": ["key", "errorCode"],
    "properties": {
        "key": {"type": "string"},
        "errorCode": {
            "type": "string",
            "enum": [
                "FLAG_NOT_FOUND",
                "PARSE_ERROR",
                "TARGETING_KEY_MISSING",
                "INVALID_CONTEXT",
                "GENERAL",
            ],
        },
        "errorDetails": {"type": "string"},
    },
}
_BULK_FAILURE = {
    "type": "object",
    "required": ["errorCode"],
    "properties": {"errorCode": {"type": "string"}, "errorDetails": {"type": "string"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SELECT_HEADERS = [
    {
        "name": APP_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the app, when the token's scope allows several",
    },
    {
        "name": STAGE_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the stage, when the token's scope allows several",
    },
]
_COMMON_RESPONSES = {
    "401": _json(_BULK_FAILURE, "no token, or an unknown, revoked or expired one"),
    "403": _json(_BULK_FAILURE, "the token lacks the client role or the app/stage is out of scope"),
    "429": {
        "description": "rate limit exceeded (STAGEFLOW_OFREP_RATE_LIMIT)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
    "413": _json(_BULK_FAILURE, "the body is larger than STAGEFLOW_MAX_BODY_BYTES"),
    "415": _json(_BULK_FAILURE, "the body is not sent as Content-Type: application/json"),
    "503": _json(_BULK_FAILURE, "the Git remote or the database cannot be reached"),
    "500": _json(
        {"type": "object", "properties": {"errorDetails": {"type": "string"}}}, "server error"
    ),
}


# -- errors in OFREP's format ---------------------------------------------------------------------


def _failure(status: int, error_code: str, details: str) -> ResponseReturnValue:
    body: dict[str, Any] = {"errorCode": error_code, "errorDetails": details}
    key = (request.view_args or {}).get("key")
    if key is not None:
        body = {"key": key, **body}
    return jsonify(body), status


@blp.errorhandler(domain.StageflowError)
def _domain_error(exc: domain.StageflowError) -> ResponseReturnValue:
    if isinstance(exc, EvaluationRequestError):
        return _failure(400, exc.error_code, exc.message)
    if isinstance(exc, domain.Malformed):  # the URL (api/inputs.py)
        return _failure(400, PARSE_ERROR, exc.message)
    status = errors.status_of(exc)
    if status in (401, 403, 503):
        return _failure(status, GENERAL, exc.message)
    if isinstance(exc, domain.TooManyRequests):
        response, _ = _failure(429, GENERAL, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, 429
    # Anything else is the state of the repo (e.g. a stageflow.yaml broken with no valid version
    # in reach), not the request: unavailable until someone fixes it, never a 500.
    log.warning("OFREP cannot evaluate: %s", exc.message)
    return _failure(503, GENERAL, exc.message)


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status >= 500:
        return _unexpected(exc)
    return _failure(status, GENERAL, str(exc.description or exc.name))


@blp.errorhandler(Exception)
def _unexpected(exc: BaseException) -> ResponseReturnValue:
    request_id = g.get("request_id", "-")
    log.exception("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return jsonify(
        {"errorDetails": f"Stageflow failed unexpectedly; report request id {request_id}"}
    ), 500


# -- rate limit and CORS --------------------------------------------------------------------------


@blp.before_request
def _rate_limit() -> ResponseReturnValue | None:
    token = g.get("token")
    if request.method == "OPTIONS" or token is None:
        return None
    wait = current_app.extensions[LIMITER].acquire(token.id)
    if not wait:
        return None
    response = jsonify(
        {
            "errorCode": GENERAL,
            "errorDetails": f"token {token.name!r} sent more than "
            f"{current_app.extensions[LIMITER].rate:g} requests a second; retry in {wait} s",
        }
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


# Every answer's CORS headers, and the bulk answer's cache policy (the fast path sends them too).
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "ETag, Retry-After"),
)
BULK_CACHE_CONTROL = "private, no-cache"
# The fast path runs no after_request hook: the bulk answer carries the CORS headers itself.
_BULK_HEADERS = [*CORS_HEADERS, ("Cache-Control", BULK_CACHE_CONTROL)]


@blp.after_request
def _cors(response: Response) -> Response:
    for name, value in CORS_HEADERS:
        response.headers[name] = value
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            f"Authorization, Content-Type, If-None-Match, {APP_HEADER}, {STAGE_HEADER}"
        )
        response.headers["Access-Control-Max-Age"] = "600"
    return response


# -- the two endpoints ----------------------------------------------------------------------------


def _flag_set() -> FlagSet:
    app, stage = _selection(request)
    return evaluation.flag_set(
        current_app.extensions["stageflow"],
        current_token(),
        app=app,
        stage=stage,
        config_etag=_config_etag(request),
    )


def _config_etag(asking: Request) -> str | None:
    """An event stream's `etag` on its re-fetch (ADR-0008's ``flagConfigEtag``), if any."""
    return asking.args.get("flagConfigEtag") or None


def selected_flag_set(sf: Stageflow, asked: Asked) -> list[Target]:
    """The app and stage the selection headers name (the token's scope picks them otherwise)."""
    return [_selection(asked.request)]


def _selection(asking: Request) -> Target:
    return asking.headers.get(APP_HEADER) or None, asking.headers.get(STAGE_HEADER) or None


@blp.route("/evaluate/flags/<key>", methods=["POST"])
@blp.doc(
    operationId="evaluateFlag",
    parameters=_SELECT_HEADERS,
    requestBody=_REQUEST,
    responses={
        "200": _json(_SUCCESS, "the flag's value, variant and reason"),
        "400": _json(_FAILURE, "PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING or GENERAL"),
        "404": _json(_FAILURE, "FLAG_NOT_FOUND"),
        **_COMMON_RESPONSES,
    },
)
@requires("client", touches=selected_flag_set)
def evaluate_flag(key: str) -> ResponseReturnValue:
    """Evaluate one flag for a context (OFREP)."""
    flags = _flag_set()
    answer = evaluation.evaluate_flag(flags, key, read_request(request.get_data()))
    response = jsonify(answer.to_json())
    if answer.failed:
        response.status_code = 404 if answer.error_code == FLAG_NOT_FOUND else 400
    _mark_stale(response, flags)
    return response


def bulk_answer(read: Read) -> Answer | None:
    """The bulk evaluation on the fast path (None: Flask reads the body or answers the 429)."""
    body = read.json_body()
    if body is None:
        return None
    sf = read.stageflow
    app, stage = _selection(read.request)
    flags = evaluation.flag_set(
        sf, read.token, app=app, stage=stage, config_etag=_config_etag(read.request)
    )
    context = read_request(body)
    # Taken last, once the request is known to be good: a request Flask answers after all
    # would take a second one there (in ``_rate_limit``).
    if read.app.extensions[LIMITER].acquire(read.token.id):
        return None
    return _bulk(sf, read.token, flags, context)


def _bulk(sf: Stageflow, token: ApiToken, flags: FlagSet, context: EvaluationRequest) -> Answer:
    """Every flag of the set evaluated, with the token's event streams and the CORS, cache and
    staleness headers."""
    answer = evaluation.evaluate_flags(flags, context)
    etag, body = answer.with_streams(evaluation.event_streams(sf, token, flags))
    stale = stale_headers(evaluation.flag_set_notes(sf, flags))
    return Answer(etag, body, [*_BULK_HEADERS, *stale])


@blp.route("/evaluate/flags", methods=["POST"])
@blp.doc(
    operationId="evaluateFlagsBulk",
    parameters=[
        *_SELECT_HEADERS,
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "the ETag of an earlier answer: 304 when the answer is the same",
        },
        {
            "name": "flagConfigEtag",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "an event stream's `etag` (ADR-0008): the answer is made from that "
            "revision of the flags or a later one",
        },
        {
            "name": "flagConfigLastModified",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": 64},
            "description": "an event stream's `lastModified` (accepted; the etag decides)",
        },
    ],
    requestBody=_REQUEST,
    responses={
        "200": {
            **_json(
                {
                    "type": "object",
                    "required": ["flags"],
                    "properties": {
                        "flags": {"type": "array", "items": {"oneOf": [_SUCCESS, _FAILURE]}},
                        "metadata": {**_METADATA, "description": "flag-set metadata"},
                        "eventStreams": {
                            "type": "array",
                            "description": "where to hear of changes (ADR-0008): SSE",
                            "items": {"type": "object", "required": ["type"]},
                        },
                    },
                },
                "every flag of the app in the stage, evaluated",
            ),
            "headers": {"ETag": {"schema": {"type": "string"}}},
        },
        "304": {"description": "the answer has not changed since the If-None-Match ETag"},
        "400": _json(_BULK_FAILURE, "PARSE_ERROR, INVALID_CONTEXT or GENERAL"),
        **_COMMON_RESPONSES,
    },
)
@fast_read(bulk_answer)
@requires("client", touches=selected_flag_set)
def evaluate_flags() -> ResponseReturnValue:
    """Evaluate every flag for a context (OFREP bulk evaluation)."""
    sf: Stageflow = current_app.extensions["stageflow"]
    flags = _flag_set()
    return conditional_response(_bulk(sf, current_token(), flags, read_request(request.get_data())))


def _mark_stale(response: Response, flags: FlagSet) -> None:
    """Say in a ``Warning`` header when the flag set may be stale (see reads.stale_headers)."""
    for name, value in stale_headers(
        evaluation.flag_set_notes(current_app.extensions["stageflow"], flags)
    ):
        response.headers[name] = value
