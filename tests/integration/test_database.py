"""The ledger's migrations on SQLite and PostgreSQL: up, down, up again, and matching the models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from stageflow.adapters.database.migrate import alembic_config, downgrade, upgrade
from stageflow.adapters.database.records import Base
from stageflow.adapters.database.unit_of_work import SqlUnitOfWork, make_engine


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def model_differences(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(database_url: str, engine: Engine):
    model_tables = set(Base.metadata.tables)
    script = ScriptDirectory.from_config(alembic_config(database_url))
    heads = script.get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"

    upgrade(database_url)
    assert tables(engine) == model_tables
    assert current_revision(engine) == heads[0]

    downgrade(database_url, "base")
    assert tables(engine) == set()
    assert current_revision(engine) is None

    upgrade(database_url)
    assert tables(engine) == model_tables
    assert current_revision(engine) == heads[0]
    assert model_differences(engine) == []


def test_every_migration_steps_down_and_up_again(database_url: str, engine: Engine):
    script = ScriptDirectory.from_config(alembic_config(database_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]

    for revision in revisions:  # one step at a time, each leaving a schema it can go back from
        upgrade(database_url, revision=revision)
        assert current_revision(engine) == revision
    for previous in reversed([None, *revisions[:-1]]):
        downgrade(database_url, previous or "base")
        assert current_revision(engine) == previous
    assert tables(engine) == set()


def test_the_models_match_the_migrations(database_url: str, engine: Engine):
    upgrade(database_url)

    assert model_differences(engine) == []


def test_an_idempotency_key_can_be_claimed_once(database_url: str, engine: Engine):
    # The unique constraint is what makes retried writes safe across replicas.
    upgrade(database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)

    with SqlUnitOfWork(factory) as uow:
        assert uow.idempotency.begin("owner", "key-1", "f" * 64, now) is True
        uow.commit()
    with SqlUnitOfWork(factory) as uow:
        assert uow.idempotency.begin("owner", "key-1", "f" * 64, now) is False
        assert uow.idempotency.begin("other", "key-1", "f" * 64, now) is True
        uow.commit()
    with SqlUnitOfWork(factory) as uow:
        stored = uow.idempotency.get("owner", "key-1")
        assert stored is not None and stored.status is None
        assert stored.created_at.tzinfo is not None
