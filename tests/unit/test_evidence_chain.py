"""The evidence chain and the event mapping: pure rules, no database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stageflow.domain import events
from stageflow.domain.evidence import GENESIS, canonical, link, trailers_of, verify
from stageflow.domain.ledger import AuditEntry

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _chain(n: int) -> list:
    made, previous = [], GENESIS
    for number in range(1, n + 1):
        entry = replace(link(number, {"promotion": number, "gates": []}, previous, AT), id=number)
        made.append(entry)
        previous = entry.digest
    return made


def test_a_chain_verifies_and_its_records_are_canonical_json():
    chain = _chain(4)
    assert verify(chain) is None
    assert chain[0].previous_digest == GENESIS
    assert chain[0].record == canonical(json.loads(chain[0].record))
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_one_changed_byte_is_named():
    chain = _chain(4)
    changed = chain[2].record.replace('"promotion":3', '"promotion":4')
    chain[2] = replace(chain[2], record=changed)
    broken = verify(chain)
    assert broken is not None and broken.id == 3
    assert "does not match its digest" in broken.problem


def test_a_record_rehashed_after_a_change_breaks_the_next_link():
    chain = _chain(4)
    forged = link(3, {"promotion": 3, "gates": ["forged"]}, chain[1].digest, AT)
    chain[2] = replace(forged, id=3)
    broken = verify(chain)
    assert broken is not None and broken.id == 4
    assert "links to" in broken.problem


def test_a_removed_record_breaks_the_chain():
    chain = _chain(3)
    del chain[1]
    broken = verify(chain)
    assert broken is not None and broken.id == 3


def test_trailers_come_from_the_last_paragraph():
    message = (
        "demo: development -> staging\n\nimages: a 1 -> 2\n\n"
        "Stageflow-Promotion: 7\nStageflow-Actor: bob\n"
    )
    assert trailers_of(message) == {"Stageflow-Promotion": "7", "Stageflow-Actor": "bob"}
    assert trailers_of("") == {}


def _entry(action: str, **kw) -> AuditEntry:
    return AuditEntry(actor="bob", action=action, at=AT, app="demo", stage="staging", **kw)


def test_audit_entries_become_events():
    assert [e.kind for e in events.events_of(_entry("promotion.applied", target="3"))] == [
        events.PROMOTION_APPLIED
    ]
    opened = events.events_of(
        _entry("promotion.create", after={"status": "blocked", "failed_gates": ["metric:err"]})
    )
    assert [e.kind for e in opened] == [events.PROMOTION_BLOCKED, events.GATE_FAILED]
    assert opened[1].data["failed_gates"] == ["metric:err"]
    assert [e.kind for e in events.events_of(_entry("promotion.rolled_back"))] == [events.ROLLBACK]
    assert [e.kind for e in events.events_of(_entry("check.failed"))] == [events.CHECK_FAILED]
    assert [e.kind for e in events.events_of(_entry("flag.update", revision="abc"))] == [
        events.STATE_CHANGED
    ]
    assert events.events_of(_entry("flag.update")) == []  # no commit: nothing changed
    assert events.events_of(_entry("token.create")) == []
    assert events.events_of(_entry("refused")) == []
    assert events.events_of(_entry("promotion.approve"))[0].kind == events.APPROVAL_GIVEN
    assert (
        events.events_of(_entry("promotion.create", after={"status": "pending_approval"}))[0].kind
        == events.APPROVAL_REQUESTED
    )


@pytest.mark.parametrize(
    ("sent", "found"),
    [("17", 17), ("0", 0), (None, None), ("", None), ("²", None), ("1" * 13, None), ("-1", None)],
)
def test_an_event_id_sent_back_is_a_small_number_or_nothing(sent, found):
    assert events.event_id(sent) == found


def test_a_promotion_audits_the_gates_that_failed_while_it_waits():
    from stageflow.domain.gates import GateResult
    from stageflow.domain.promotions import Promotion, Selection

    gates = (
        GateResult("check:smoke", "check", "failed", "smoke failed"),
        GateResult("soak", "soak", "pending", "1m to go"),
    )
    blocked = Promotion(
        app="demo",
        source="development",
        target="staging",
        status="blocked",
        requested_by="ci",
        selection=Selection(),
        plan=None,
        plan_json={},
        gates=gates,
        diff="",
        created_at=AT,
        updated_at=AT,
    )
    assert blocked.audit_after() == {"status": "blocked", "failed_gates": ["check:smoke"]}
    assert replace(blocked, status="applied").audit_after() == {"status": "applied"}
