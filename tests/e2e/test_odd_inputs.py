"""Odd values a client can send to the event, evidence, DORA and token endpoints: never a 500.

Each value reaches the app through the real request path (access resolvers first, then the
schemas, then the services and the database), so an int past the database's range, a number
where a list of names belongs, or a repeated parameter is an answer below 500 whose message says
what was wrong. Both databases: PostgreSQL refuses ints SQLite takes.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

HUGE = 2**70
ODD = [str(HUGE), "-1", "0", "", "abc", "\u00e9\u00e9", "x" * 5000, "1.5", "nan", "%00"]


def _assert_refused_clearly(answer: Any, what: object) -> None:
    assert answer.status_code < 500, (what, answer.get_data(as_text=True)[:400])
    if answer.status_code >= 400:
        message = answer.get_json()["error"]["message"]
        assert isinstance(message, str) and message.strip(), (what, answer.get_json())


QUERIES = [
    *(f"/api/v1/events?{name}={v}" for name in ("after", "limit", "kind", "app") for v in ODD),
    "/api/v1/events?after=1&after=2&kind=deployed&kind=nope",
    *(f"/api/v1/notifications?{name}={v}" for name in ("before", "status", "target") for v in ODD),
    *(f"/api/v1/evidence?{name}={v}" for name in ("after", "limit") for v in ODD),
    *(f"/api/v1/apps/demo/metrics/dora?{name}={v}" for name in ("days", "stage") for v in ODD),
    "/api/v1/apps/demo/metrics/dora?stage=production&stage=development",
    "/api/v1/apps/%C3%A9/metrics/dora",
    f"/api/v1/promotions/{HUGE}/evidence",
    f"/api/v1/promotions/{HUGE}",
    *(f"/api/v1/promotions?before={v}" for v in ODD),
]


def test_odd_query_values_are_answered_below_500(client: FlaskClient) -> None:
    # one app for every value (a fixture per value took most of this file's time)
    for url in QUERIES:
        _assert_refused_clearly(client.get(url), url)


def test_an_unknown_promotions_evidence_is_a_404_that_names_it(client: FlaskClient) -> None:
    answer = client.get(f"/api/v1/promotions/{HUGE}/evidence")
    assert answer.status_code == 404
    assert str(HUGE) in answer.get_json()["error"]["message"]


TOKEN = {"name": "odd", "owner": "odd", "roles": ["viewer"]}
TOKEN_BODIES = [
    {**TOKEN, "scope": {"apps": 5}},
    {**TOKEN, "scope": {"stages": True}},
    {**TOKEN, "scope": {"apps": "demo"}},
    {**TOKEN, "scope": {"apps": [5]}},
    {**TOKEN, "scope": 5},
    {**TOKEN, "roles": "admin"},
    {**TOKEN, "roles": [5]},
    {**TOKEN, "roles": {"admin": 1}},
    [],
    "token",
    HUGE,
    None,
]


def test_odd_token_bodies_are_a_422_not_a_500(client: FlaskClient) -> None:
    """The token resolver reads the raw body before the schema: it must leave odd shapes to
    the schema (it once spread ``scope.apps`` and failed on a number)."""
    for body in TOKEN_BODIES:
        answer = client.post("/api/v1/tokens", json=body)
        _assert_refused_clearly(answer, body)
        assert answer.status_code == 422, (body, answer.get_json())
