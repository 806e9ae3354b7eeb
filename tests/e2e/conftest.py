"""The HTTP app over real Git, kustomize and database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stageflow import bootstrap
from stageflow.api import create_app
from stageflow.config import Settings
from stageflow.services.context import Stageflow

ADMIN = "test-admin-token-0123456789"


@pytest.fixture
def stageflow(settings: Settings) -> Iterator[tuple[Stageflow, dict[str, Any]]]:
    bootstrap.prepare(settings)
    sf, readiness = bootstrap.build(settings)
    yield sf, readiness
    sf.close()


@pytest.fixture
def app(settings: Settings, stageflow: tuple[Stageflow, dict[str, Any]]) -> Flask:
    sf, readiness = stageflow
    flask_app = create_app(settings, sf, readiness)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that sends the admin token by default."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
    return test_client


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


class LiveServer:
    """The app behind a real HTTP server (werkzeug's, threaded) on a free 127.0.0.1 port."""

    def __init__(self, app: Flask) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # the app logs what matters; a line per request only buries a failure

        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app)
    yield server
    server.stop()
