"""Request-wide input rules, applied before any view reads a field.

Fields have their schemas; what is checked here holds for every request whatever the endpoint:
the URL is UTF-8, a body is JSON (415 otherwise, naming the type to send) within the size limit
(413, also when it comes chunked), holds no lone surrogate and nests at most ``MAX_DEPTH`` deep.
"""

from __future__ import annotations

import re
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from stageflow.domain.inputs import check_json, check_url

JSON = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# OFREP answers a bad body in its own error shape (``read_request`` applies the same rules).
OWN_BODY_RULES = ("/ofrep/",)


# A client's X-Request-Id is echoed in the answer and written to every log line of the request:
# one that is not a short plain token is replaced by one of ours rather than refused.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def client_request_id(value: str | None) -> str | None:
    """Return the client's request id when it is 1-128 plain ASCII characters, else None."""
    return value if value and _REQUEST_ID.fullmatch(value) else None


def is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/merge-patch+json``."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == JSON or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def has_body(environ: dict[str, Any]) -> bool:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    return environ.get("CONTENT_LENGTH", "") not in ("", "0")


def check_request() -> None:
    """Refuse a request whose URL or body breaks a request-wide rule (a before_request hook)."""
    environ = request.environ
    check_url(environ.get("PATH_INFO", "").encode("latin-1"), environ.get("QUERY_STRING", ""))
    if request.method not in BODY_METHODS or not has_body(environ):
        return
    # The API speaks JSON; the dashboard's pages post forms (their views read them themselves).
    speaks_json = request.path.startswith(("/api/", "/ofrep/"))
    if speaks_json and not is_json(request.mimetype):  # Flask lowers it and drops parameters
        raise UnsupportedMediaType(
            f"the body is sent as {request.content_type or 'no type'!r}; send it as JSON with "
            "Content-Type: application/json"
        )
    raw = request.get_data(cache=True)  # cached: the views read these bytes
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body has no length to refuse up front, and Werkzeug stops reading it at
        # MAX_CONTENT_LENGTH without a word: the cut-off body would answer as malformed JSON.
        raise RequestEntityTooLarge()
    if speaks_json and not request.path.startswith(OWN_BODY_RULES):
        check_json(raw)
