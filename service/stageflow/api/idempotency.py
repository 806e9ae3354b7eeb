"""The Idempotency-Key header on writes: the same key and body get the first answer, once."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Response, current_app, jsonify, make_response, request

from stageflow.api.auth import current_token
from stageflow.domain.errors import Invalid
from stageflow.domain.ledger import IdempotentAnswer
from stageflow.services import idempotency

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "Idempotency-Key"


def _fingerprint() -> str:
    raw = request.get_data(cache=True)
    try:
        body: Any = json.loads(raw) if raw else None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = raw.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def _recovered(revision: str) -> Response:
    """The answer to a retry whose first try died after its push: the change is done."""
    return make_response(
        jsonify(
            {
                "revision": revision,
                "recovered": True,
                "message": "the first request with this Idempotency-Key was committed as "
                f"{revision[:12]} before it could answer; nothing was written again",
            }
        ),
        200,
    )


def _serve(sf: Any, owner: str, key: str, view: Any, args: Any, kwargs: Any) -> Any:
    claimed = idempotency.claim(sf, owner, key, _fingerprint())
    if isinstance(claimed, IdempotentAnswer):
        response = make_response(jsonify(claimed.body), claimed.status)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    # The key names the change (its Stageflow-Change trailer), so that a retry after a crash
    # finds what the first try pushed, instead of writing it again.
    request.environ["stageflow.change_id"] = claimed.change_id
    try:
        pushed = idempotency.committed_before(sf, claimed)
        response = view(*args, **kwargs) if pushed is None else _recovered(pushed)
    except BaseException:
        idempotency.release(sf, owner, key)
        raise
    if isinstance(response, Response) and response.status_code < 300:
        idempotency.remember(sf, owner, key, response.status_code, response.get_json())
    else:
        idempotency.release(sf, owner, key)
    return response


def idempotent(view: F) -> F:
    """Replay the stored answer for a repeated Idempotency-Key instead of writing again."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip()
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise Invalid(
                f"{HEADER} must be 1 to 255 printable characters (a UUID is a good choice)",
                code="invalid_idempotency_key",
            )
        sf = current_app.extensions["stageflow"]
        owner = current_token().id
        # In flight from before the claim: this process's settler must never take it for dead.
        with sf.in_flight(idempotency.working_on(owner, key)):
            return _serve(sf, owner, key, view, args, kwargs)

    return cast(F, wrapper)
