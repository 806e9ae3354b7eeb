"""Token checks while the ledger is unreachable: recently verified tokens go on working."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import sessionmaker

from stageflow import bootstrap
from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine
from stageflow.config import Settings
from stageflow.domain.errors import Unavailable
from stageflow.services import tokens
from tests.integration.conftest import free_port

ADMIN = "test-admin-token-0123456789"


@pytest.fixture
def sf(settings: Settings):
    bootstrap.prepare(settings)
    built, _ = bootstrap.build(settings.with_overrides(token_outage_grace=60.0), open_repo=False)
    yield built
    built.close()


def unreachable_ledger(sf) -> None:
    """Point the use cases at a PostgreSQL server that is not there (nothing listens)."""
    engine = make_engine(f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/none", timeout=2)
    sf.closers.append(engine.dispose)
    factory = sessionmaker(engine, expire_on_commit=False)
    sf.uow = lambda: SqlUnitOfWork(factory)


def past_the_cache() -> None:
    time.sleep(tokens.CACHE_TTL + 0.05)


def test_a_recently_verified_token_works_while_the_ledger_is_down(sf):
    admin = tokens.authenticate(sf, ADMIN)
    unreachable_ledger(sf)
    past_the_cache()

    assert tokens.authenticate(sf, ADMIN).id == admin.id
    assert sf.ledger_outage.skip()  # the next checks do not wait for the database again
    with pytest.raises(Unavailable) as unknown:  # never seen: cannot be vouched for
        tokens.authenticate(sf, "sf_never-seen-before-0123456789")
    assert unknown.value.code == "database_unavailable"


def test_without_a_grace_the_outage_is_a_503(sf):
    tokens.authenticate(sf, ADMIN)
    sf.token_outage_grace = 0.0
    unreachable_ledger(sf)
    past_the_cache()

    with pytest.raises(Unavailable):
        tokens.authenticate(sf, ADMIN)
