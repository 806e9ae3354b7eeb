"""What an open dashboard page hears of the event log: its token's scope, then its own page."""

from __future__ import annotations

from datetime import UTC, datetime

from stageflow.domain.events import CHECK_PASSED, PROMOTION_APPLIED, Event, Watch, page_notice
from stageflow.domain.identity import Scope

AT = datetime(2026, 1, 1, tzinfo=UTC)


def event(app: str | None, stage: str | None, kind: str = CHECK_PASSED) -> Event:
    return Event(kind=kind, at=AT, actor="ci", app=app, stage=stage, subject="7", id=12)


def test_the_scope_comes_first_then_the_page_narrows_it():
    staging_only = Watch(Scope(stages=("staging",)))
    assert staging_only.sees(event("demo", "staging"))
    assert not staging_only.sees(event("demo", "development"))
    assert staging_only.sees(event("demo", None))  # every stage of the app: its stage too
    one_app = Watch(Scope(apps=("demo",)), app="shop")  # asking for more than the scope: nothing
    assert not one_app.sees(event("shop", "staging"))
    stage_page = Watch(Scope(), app="demo", stage="staging")
    assert stage_page.sees(event("demo", "staging"))
    assert stage_page.sees(event("demo", None))
    assert not stage_page.sees(event("demo", "production"))
    assert not stage_page.sees(event("shop", "staging"))
    assert Watch(Scope()).sees(event("shop", "production"))


def test_a_notice_carries_the_kind_and_ids_and_nothing_of_the_data():
    notice = page_notice(
        Event(
            kind=PROMOTION_APPLIED,
            at=AT,
            actor="bob",
            app="demo",
            stage="staging",
            subject="7",
            revision="a" * 40,
            data={"status": "applied", "secret": "x"},
            id=12,
        )
    )
    assert notice == {
        "id": 12,
        "kind": PROMOTION_APPLIED,
        "app": "demo",
        "stage": "staging",
        "subject": "7",
        "revision": "a" * 40,
    }
