"""The one map from domain errors to HTTP, and the error body of API.md.

Every error leaves as ``{"error": {"code", "message", "details"}}``. Anything unexpected is logged
with its traceback and answered as a 500 that names the request id, never the exception text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, g, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from stageflow.domain import errors as domain

log = logging.getLogger(__name__)

STATUS: list[tuple[type[domain.StageflowError], int]] = [
    (domain.NotFound, 404),
    (domain.Unauthenticated, 401),
    (domain.Forbidden, 403),
    (domain.TooManyRequests, 429),
    (domain.Malformed, 400),
    (domain.Invalid, 422),
    (domain.Conflict, 409),
    (domain.Unavailable, 503),
]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "snake_case error code"})
    message = fields.String(
        required=True, metadata={"description": "what is wrong and how to fix it"}
    )
    details = fields.Dict(metadata={"description": "structured context, e.g. field errors"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


# What each error status means on any operation of /api/ (the views add their own on top).
COMMON_ERRORS = {
    400: "malformed: the URL or body is not UTF-8, holds a lone surrogate, nests JSON deeper "
    "than 32 levels, or is not JSON",
    401: "no token, or an unknown, revoked or expired one",
    403: "the token lacks the role, or an app or stage it touches is out of its scope",
    409: "the request clashes with the current state, or the repo's stageflow.yaml is broken",
    422: "a parameter or the body breaks a rule; `details.fields` names each field",
    503: "the Git remote or the database cannot be reached",
}
PATH_ERRORS = {404: "no such app, stage, flag, promotion, token or other named thing"}
BODY_ERRORS = {
    413: "the body is larger than STAGEFLOW_MAX_BODY_BYTES",
    415: "the body is not sent as Content-Type: application/json",
}
WRITES = {"post", "put", "patch", "delete"}


class ErrorResponses(BasePlugin):
    """Document the errors every operation can answer here, once, rather than on each view.

    flask-smorest's catch-all ``default`` response is dropped: with every status listed, a
    status that the document does not name is a finding (schemathesis checks it).
    """

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            responses.pop("default", None)
            if not path or not path.startswith("/api/"):
                continue  # OFREP documents its own error shapes (ofrep.py)
            for status, when in _errors_of(path, method, operation).items():
                if status not in responses and str(status) not in responses:
                    responses[str(status)] = {
                        "description": when,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }


def _errors_of(path: str, method: str, operation: dict[str, Any]) -> dict[int, str]:
    """The error statuses an operation of /api/ can answer, and what each means there."""
    errors = dict(COMMON_ERRORS)
    if "{" in path:
        errors.update(PATH_ERRORS)
    if method in WRITES or "requestBody" in operation:
        errors.update(BODY_ERRORS)
    return errors


def status_of(exc: domain.StageflowError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _field_errors_message(messages: Any) -> str:
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            text = "; ".join(str(v) for v in value if not isinstance(v, dict | list))
            if text:
                parts.append(f"{prefix}: {text}")
            for inner in value:
                if isinstance(inner, dict | list):
                    walk(prefix, inner)
        else:
            parts.append(f"{prefix}: {value}")

    walk("", messages)
    return "; ".join(parts)


def handle_http_exception(error: HTTPException) -> Response:
    """Answer Werkzeug's and webargs' HTTP errors in API.md's format, each with its own hint."""
    status = error.code or 500
    if status >= 500:
        return handle_unexpected(error)
    answer = _HTTP_ANSWERS.get(status, _other_http_error)
    return answer(error)


def _error_data(error: HTTPException) -> dict[str, Any]:
    """What webargs and flask-smorest attach to an error (``abort(..., messages=...)``)."""
    data: dict[str, Any] = getattr(error, "data", None) or {}
    return data


def _invalid_request(error: HTTPException) -> Response:
    """422: the fields that break a rule, or the unknown fields to remove."""
    data = _error_data(error)
    if "messages" not in data:
        return _other_http_error(error)
    location, messages = _without_location(data["messages"])
    unknown = _unknown_fields(messages)
    if unknown:
        message = f"unknown field(s) {', '.join(unknown)}; remove them (see /docs for the body)"
        return error_response(422, "unknown_field", message, {"fields": messages})
    where = "body" if location == "json" else location or "input"
    message = f"the request {where} is invalid: {_field_errors_message(messages)}"
    return error_response(422, "invalid_request", message, {"fields": messages})


def _without_location(messages: Any) -> tuple[str | None, Any]:
    """webargs nests by location ("json", "query"); show the fields, not the plumbing."""
    if isinstance(messages, dict) and len(messages) == 1:
        ((location, inner),) = messages.items()
        return location, inner
    return None, messages


def _unknown_fields(messages: Any) -> list[str]:
    if not isinstance(messages, dict):
        return []
    return [key for key, value in messages.items() if value == ["Unknown field."]]


def _bad_request(error: HTTPException) -> Response:
    """400: a body that is not JSON says so, anything else keeps Werkzeug's description."""
    message = _error_data(error).get("message") or error.description or "malformed request"
    if "JSON" in message or request.mimetype == "application/json":
        message = f"the body is not valid JSON ({message}); send a JSON object"
        return error_response(400, "malformed_json", message)
    return error_response(400, "bad_request", message)


def _no_endpoint(error: HTTPException) -> Response:
    return error_response(
        404, "not_found", f"no such endpoint {request.method} {request.path}; see /docs"
    )


def _method_not_allowed(error: HTTPException) -> Response:
    allowed = getattr(error, "valid_methods", None) or []  # MethodNotAllowed's, when routed
    return error_response(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(allowed))}",
    )


def _body_too_large(error: HTTPException) -> Response:
    limit = request.max_content_length
    return error_response(
        413,
        "body_too_large",
        f"the request body is larger than {limit} bytes (STAGEFLOW_MAX_BODY_BYTES); send less",
        {"max_bytes": limit},
    )


def _unsupported_media_type(error: HTTPException) -> Response:
    received = request.headers.get("Content-Type") or "none"
    return error_response(
        415,
        "unsupported_media_type",
        f"the body is sent as {received[:100]!r}; send it as JSON with "
        "Content-Type: application/json",
        {"expected": "application/json", "received": received[:100]},
    )


def _other_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = _error_data(error).get("message") or error.description or error.name
    return error_response(status, HTTP_CODES.get(status, "error"), str(message))


_HTTP_ANSWERS: dict[int, Callable[[HTTPException], Response]] = {
    400: _bad_request,
    404: _no_endpoint,
    405: _method_not_allowed,
    413: _body_too_large,
    415: _unsupported_media_type,
    422: _invalid_request,
}


def handle_domain_error(exc: domain.StageflowError) -> Response:
    status = status_of(exc)
    if status >= 500:
        log.warning("dependency unavailable: %s", exc.message)
    response = error_response(status, exc.code, exc.message, exc.details)
    if isinstance(exc, domain.TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def handle_unexpected(exc: BaseException) -> Response:
    request_id = getattr(g, "request_id", "-")
    log.exception("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(
        500,
        "internal_error",
        f"Stageflow failed unexpectedly; nothing was committed. Report request id {request_id}.",
        {"request_id": request_id},
    )


def handle_recursion(exc: RecursionError) -> Response:
    """A JSON body nested beyond what the parser recurses into is the client's fault: 400.

    Python's json raises RecursionError (not ValueError) there, so every parser on the way
    (webargs, the idempotency fingerprint, OFREP) lets it through. Deciding here, on the failure
    path, keeps a second parse of every body off the hot path.
    """
    if request.is_json:
        try:
            json.loads(request.get_data(cache=True) or b"null")
        except RecursionError:
            return error_response(
                400, "malformed_json", "the JSON body is nested too deeply; send a flat object"
            )
        except ValueError:
            pass
    return handle_unexpected(exc)


def register(app: Flask) -> None:
    app.register_error_handler(domain.StageflowError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(RecursionError, handle_recursion)
    app.register_error_handler(Exception, handle_unexpected)
