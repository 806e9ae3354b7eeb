"""Garbage headers at the hot reads (answered in front of Flask by the fast path), the event
log and OFREP: never a 500, and a refusal says what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.e2e.conftest import ADMIN


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: headers are read before any query (test_odd_inputs runs both databases)."""
    return f"sqlite:///{tmp_path / 'stageflow.db'}"


URLS = [
    ("get", "/api/v1/apps/demo"),
    ("get", "/api/v1/apps/demo/flags"),
    ("get", "/api/v1/apps/demo/stages/development/flags"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/apps/demo/metrics/dora"),
    ("post", "/ofrep/v1/evaluate/flags"),
    ("post", "/ofrep/v1/evaluate/flags/new_ui"),
]
GARBAGE = {
    "authorization": {"Authorization": "Bearer \u00e9\u00e9\u00e9"},
    "authorization-empty": {"Authorization": "Bearer "},
    "authorization-huge": {"Authorization": "Bearer " + "x" * 20000},
    "if-none-match": {"If-None-Match": 'garbage,,"\x7f W/'},
    "if-none-match-many": {"If-None-Match": 'W/"a",' * 3000},
    "request-id": {"X-Request-Id": "\u00e9" * 300},
    "content-length": {"Content-Length": "-5"},
    "app-stage": {"X-Stageflow-App": "\u00e9" * 100, "X-Stageflow-Stage": ""},
}


@pytest.mark.parametrize(("method", "url"), URLS)
def test_garbage_headers_are_answered_below_500(
    anonymous: FlaskClient, method: str, url: str
) -> None:
    for name, garbage in GARBAGE.items():
        headers = {"Authorization": f"Bearer {ADMIN}", **garbage}
        answer = getattr(anonymous, method)(url, headers=headers, json={"context": {}})
        assert answer.status_code < 500, (name, answer.get_data(as_text=True)[:400])
        if answer.status_code >= 400:
            body = answer.get_json(silent=True) or {}
            message = (body.get("error") or {}).get("message") or body.get("errorDetails")
            assert message, (name, answer.get_data(as_text=True)[:400])
