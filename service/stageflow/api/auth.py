"""Who is asking: the request's token and actor (``access.py`` decides what it may do)."""

from __future__ import annotations

import uuid

from flask import current_app, g, request

from stageflow.api.access import requires
from stageflow.domain.identity import ApiToken
from stageflow.services.changes import Actor
from stageflow.services.context import Stageflow

__all__ = ["current_actor", "current_stageflow", "current_token", "requires"]


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
