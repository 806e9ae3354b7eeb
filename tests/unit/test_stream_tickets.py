"""Event-stream tickets (services.stream_tickets) over the fake ledger: issue, redeem, refuse."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stageflow.domain.errors import TooManyRequests, Unauthenticated, Unavailable
from stageflow.services import stream_tickets, tokens
from stageflow.services.context import Stageflow
from stageflow.services.limits import RateLimiter
from tests.fakes import FakeWorld, fake_stageflow


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return fake_stageflow(tmp_path)


def _token(sf: Stageflow, expires_at: datetime | None = None) -> str:
    new = tokens.NewToken(name="app", owner="app", roles=["client"], expires_at=expires_at)
    token, _ = tokens.create_token(sf, new, created_by="test")
    return token.id


def test_a_ticket_stands_for_its_token_in_its_app_stage_only(world: FakeWorld) -> None:
    sf = world.sf
    token_id = _token(sf)
    ticket = stream_tickets.issue(sf, token_id, "demo", "development")
    assert ticket is not None and ticket.startswith(token_id + ".")
    assert stream_tickets.issue(sf, token_id, "demo", "development") == ticket  # stable
    assert stream_tickets.redeem(sf, ticket, "demo", "development", client=None).id == token_id
    for app, stage in [("demo", "staging"), ("other", "development"), (None, "development")]:
        with pytest.raises(Unauthenticated) as refused:
            stream_tickets.redeem(sf, ticket, app, stage, client=None)
        assert refused.value.code == "ticket_invalid"
    # another token's id with this MAC, or no id at all
    forged = _token(sf) + ticket[len(token_id) :]
    non_ascii = f"{token_id}.{'é' * 43}"  # the MAC's length, not its alphabet: no 500
    for bad in (forged, ticket.split(".", 1)[1], "", "." * 300, non_ascii):
        with pytest.raises(Unauthenticated):
            stream_tickets.redeem(sf, bad, "demo", "development", client=None)


def test_every_process_on_one_ledger_signs_with_the_same_key(world: FakeWorld) -> None:
    token_id = _token(world.sf)
    ticket = stream_tickets.issue(world.sf, token_id, "demo", "development")
    assert ticket is not None
    # another process: its own Stageflow (no key read yet), the same ledger
    other = Stageflow(
        repo=world.sf.repo,
        renderer=world.sf.renderer,
        codecs=world.sf.codecs,
        uow=world.sf.uow,
        clock=world.sf.clock,
    )
    assert stream_tickets.redeem(other, ticket, "demo", "development", client=None).id == token_id
    assert list(world.ledger.server_keys) == [stream_tickets.KEY_NAME]


def test_a_ticket_ends_with_its_token(world: FakeWorld) -> None:
    sf = world.sf
    revoked = _token(sf)
    expiring = _token(sf, expires_at=world.clock() + timedelta(hours=1))
    tickets = {
        token_id: stream_tickets.issue(sf, token_id, "demo", "development")
        for token_id in (revoked, expiring)
    }
    tokens.revoke_token(sf, revoked, actor="admin")
    world.clock.advance(hours=2)
    for token_id, state in ((revoked, "revoked"), (expiring, "expired")):
        ticket = tickets[token_id]
        assert ticket is not None
        with pytest.raises(Unauthenticated, match=state) as refused:
            stream_tickets.redeem(sf, ticket, "demo", "development", client=None)
        assert refused.value.code == "token_inactive"


def test_bad_tickets_count_as_failed_sign_ins(world: FakeWorld) -> None:
    sf = world.sf
    sf.auth_failures = RateLimiter(rate=0.01, burst=3)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            stream_tickets.redeem(sf, "x.y", "demo", "development", client="10.0.0.9")
    with pytest.raises(TooManyRequests):
        stream_tickets.redeem(sf, "x.y", "demo", "development", client="10.0.0.9")


def test_without_the_ledger_there_is_no_ticket_and_redeeming_says_why(
    world: FakeWorld,
) -> None:
    sf = world.sf

    def down() -> object:
        raise Unavailable("the database is unreachable", code="database_unavailable")

    sf.uow = down  # type: ignore[assignment]
    assert stream_tickets.issue(sf, "some-token", "demo", "development") is None
    with pytest.raises(Unavailable, match="Authorization: Bearer"):
        stream_tickets.redeem(sf, "some-token.x", "demo", "development", client=None)
