"""The Idempotency-Key header on writes: the same key and body get the first answer, once."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, jsonify, make_response, request

from stageflow.api.auth import current_token
from stageflow.domain.errors import Invalid
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
        stored = idempotency.claim(sf, owner, key, _fingerprint())
        if stored is not None:
            response = make_response(jsonify(stored.body), stored.status)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        try:
            response = view(*args, **kwargs)
        except BaseException:
            idempotency.release(sf, owner, key)
            raise
        if isinstance(response, Response) and response.status_code < 300:
            idempotency.remember(sf, owner, key, response.status_code, response.get_json())
        else:
            idempotency.release(sf, owner, key)
        return response

    return wrapper  # type: ignore[return-value]
