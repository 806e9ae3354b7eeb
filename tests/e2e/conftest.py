"""The HTTP app over real Git, kustomize and database."""

from __future__ import annotations

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
