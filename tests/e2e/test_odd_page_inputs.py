"""Odd values at the dashboard's live pages (``X-Fragment``, ``If-None-Match``, query
parameters): never a 500, and a refusal says what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from tests.e2e.test_dashboard import signed_in

HUGE = 2**70
ODD = [str(HUGE), "-1", "", "\u00e9\u00e9", "x" * 5000, "nan", "inf", "%00"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages add no queries of their own (test_odd_inputs runs both)."""
    return f"sqlite:///{tmp_path / 'stageflow.db'}"


PAGES = [
    f"/promotions/{HUGE}",
    "/apps/demo/stages/nope",
    "/apps/%C3%A9/stages/development",
    *(f"/apps/demo/stages/development?hours={v}" for v in ODD),
    *(f"/promotions?status={v}&app={v}&to={v}" for v in ODD),
    *(f"/audit?app={v}&stage={v}&actor={v}" for v in ODD),
    "/?after=-1",
]
HEADERS = [
    {},
    {"X-Fragment": "1", "If-None-Match": 'garbage,,"\x7f'},
    {"X-Fragment": "\u00e9", "If-None-Match": "*"},
    {"If-None-Match": 'W/"a",' * 2000},
]


@pytest.mark.parametrize("headers", HEADERS, ids=["plain", "garbage-tag", "star", "many-tags"])
def test_odd_page_values_are_answered_below_500(app: Flask, headers: dict[str, str]) -> None:
    browser = signed_in(app)
    for url in PAGES:
        answer = browser.get(url, headers=headers)
        assert answer.status_code < 500, (url, answer.get_data(as_text=True)[:400])
        if answer.status_code >= 400:
            assert answer.get_data(as_text=True).strip(), url


def test_an_unknown_promotion_page_is_a_404_that_names_it(app: Flask) -> None:
    answer = signed_in(app).get(f"/promotions/{HUGE}", headers={"X-Fragment": "1"})
    assert answer.status_code == 404
    assert str(HUGE) in answer.get_data(as_text=True)
