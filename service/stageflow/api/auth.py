"""Bearer tokens: who is asking, and what they may do (``requires`` is the one decorator)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from stageflow.domain.identity import ApiToken
from stageflow.services import tokens
from stageflow.services.changes import Actor
from stageflow.services.context import Stageflow

F = TypeVar("F", bound=Callable[..., Any])

OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/api/v1/webhooks/")


def authenticate_request() -> None:
    """Resolve the bearer token of an /api/ or /ofrep/ request into ``g.token`` (401 if bad)."""
    g.token = None
    path = request.path
    if (
        not path.startswith(("/api/", "/ofrep/"))
        or path.startswith(OPEN_PATHS)
        or request.method == "OPTIONS"
    ):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    g.token = tokens.authenticate(
        current_app.extensions["stageflow"], secret.strip() if scheme.lower() == "bearer" else None
    )


def current_stageflow() -> Stageflow:
    """The composed Stageflow this app serves (see ``create_app``)."""
    sf: Stageflow = current_app.extensions["stageflow"]
    return sf


def current_actor() -> Actor:
    """The token's owner, with this request's change id (the Stageflow-Change trailer).

    The id is made on first use: only writes ask for it, and reads should not pay for a UUID.
    """
    environ = request.environ
    change_id = environ.get("stageflow.change_id") or environ.setdefault(
        "stageflow.change_id", str(uuid.uuid4())
    )
    return Actor(current_token().owner, change_id)


def current_token() -> ApiToken:
    token: ApiToken = g.token
    return token


def requires(role: str) -> Callable[[F], F]:
    """Let the view run only for a token with ``role`` whose scope covers the app and stage."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_token().require(role, app=kwargs.get("app"), stage=kwargs.get("stage"))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
