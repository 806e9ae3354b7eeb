"""The HTTP API: ``create_app`` builds the Flask app; nothing is built at import time."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from flask_smorest import Api
from werkzeug.routing import IntegerConverter

from stageflow.api import (
    access,
    admin,
    changes,
    errors,
    events,
    fastpath,
    inputs,
    links,
    ofrep,
    operate,
    promotions,
    reads,
    security,
    telemetry,
    webhooks,
)
from stageflow.web import pages


class DatabaseId(IntegerConverter):
    """``<int:...>`` path ids that fit an INTEGER column: a larger one is a 404, not a 500."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


class StageflowApi(Api):
    ERROR_SCHEMA = errors.ErrorSchema

    def _register_error_handlers(self) -> None:
        errors.register(self._app)


def create_app(settings: Any = None, stageflow: Any = None, readiness: Any = None) -> Flask:
    """Build the Flask app around a composed Stageflow (``bootstrap.build`` when not given)."""
    if stageflow is None:
        from stageflow import bootstrap

        settings = settings or bootstrap.Settings.from_env()
        stageflow, readiness = bootstrap.build(settings)
    app = Flask("stageflow")
    app.url_map.converters["int"] = DatabaseId
    app.config.update(
        API_TITLE="Stageflow",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=getattr(settings, "max_body_bytes", 1024 * 1024),
        JSON_SORT_KEYS=False,
    )
    # DefaultJSONProvider has sort_keys; the JSONProvider type Flask declares does not.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["stageflow"] = stageflow
    app.extensions["stageflow.settings"] = settings
    app.extensions["stageflow.readiness"] = readiness or {}

    api = StageflowApi(
        app,
        spec_kwargs={
            "info": {
                "description": "Promote image tags and feature flags through GitOps stages.",
            },
            "extra_plugins": [errors.ErrorResponses(), links.Links()],
        },
    )
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.options["security"] = [{"bearer": []}]
    for blueprint in (
        reads.blp,
        changes.blp,
        promotions.blp,
        webhooks.blp,
        admin.blp,
        events.blp,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(operate.blp)
    api.register_blueprint(ofrep.blp)  # OFREP: /ofrep/v1/evaluate/flags[/{key}]
    app.register_blueprint(pages.blp)  # the dashboard: /, /login, /apps/..., /promotions, /audit

    security.register(app)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = telemetry.answer_request_id(request.headers.get("X-Request-Id"))
        fastpath.raise_failure(request.environ)  # what the fast path failed with, as a view would
        access.authorize_request()
        inputs.check_request()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        telemetry.record(
            telemetry.Answered(
                method=request.method,
                endpoint=request.url_rule.rule if request.url_rule else "unmatched",
                path=request.path,
                status=response.status_code,
                request_id=g.get("request_id"),
                seconds=time.perf_counter() - g.get("started", time.perf_counter()),
                actor=getattr(g.get("token"), "owner", None),
            )
        )
        return response

    # The hot reads skip Flask's dispatch when they will succeed (see fastpath.py).
    # Flask's documented way to add WSGI middleware; mypy sees a method being replaced.
    app.wsgi_app = fastpath.FastReads(app, app.wsgi_app)  # type: ignore[method-assign]
    return app
