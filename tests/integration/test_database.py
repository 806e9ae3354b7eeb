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


def test_the_ledger_of_every_stage_of_an_app_is_read_in_one_go(database_url: str, engine: Engine):
    # The app view asks for the latest report, the checks of the current state and the hold of
    # every stage at once; the answers must be those of the per-stage queries.
    from stageflow.domain.gates import CheckResult, Deployment, Hold

    upgrade(database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    stages = ["development", "staging", "production"]
    with SqlUnitOfWork(factory) as uow:
        for index, revision in enumerate(["r1", "r2", "r3"]):
            uow.deployments.add(
                "demo", "development", Deployment(revision, "c1", "healthy", now), "t"
            )
            uow.deployments.add("other", "staging", Deployment(revision, "c1", "healthy", now), "t")
            uow.checks.add(
                "demo",
                "development",
                CheckResult(f"k{index % 2}", revision, "c1", "passed", now),
                None,
                "t",
            )
        uow.deployments.add("demo", "staging", Deployment("s1", "c2", "degraded", now), "t")
        uow.checks.add(
            "demo", "staging", CheckResult("smoke", "s1", "old", "failed", now), None, "t"
        )
        uow.checks.add(
            "demo", "staging", CheckResult("smoke", "s1", "c2", "passed", now), None, "t"
        )
        uow.holds.add(Hold("demo", "staging", "first", "amy", now))
        uow.holds.add(Hold("demo", "staging", "second", "bob", now))
        uow.holds.add(Hold("other", "production", "elsewhere", "bob", now))
        uow.commit()

    contents = {"development": "c1", "staging": "c2", "production": "c3"}
    with SqlUnitOfWork(factory) as uow:
        latest = uow.deployments.latest("demo", stages)
        checks = uow.checks.for_contents("demo", contents)
        holds = uow.holds.active_in("demo")
        for stage in stages:
            recent = uow.deployments.recent("demo", stage, limit=1)
            assert latest.get(stage) == (recent[0] if recent else None)
            assert checks[stage] == uow.checks.for_content("demo", stage, contents[stage])
            assert holds.get(stage) == uow.holds.active("demo", stage)
    assert latest["development"].revision == "r3" and "production" not in latest
    assert [c.status for c in checks["staging"]] == ["passed"]
    assert holds["staging"].reason == "second" and set(holds) == {"staging"}


def test_a_list_of_promotions_reads_their_approvals_in_one_query(database_url: str, engine: Engine):
    # One query for the promotions and one for all their approvals, however many are listed:
    # a query per promotion (N+1) made the promotions page slow with a long history.
    from sqlalchemy import event

    from stageflow.domain.promotions import Approval, Promotion, Selection

    upgrade(database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    with SqlUnitOfWork(factory) as uow:
        for number in range(20):
            added = uow.promotions.add(
                Promotion(
                    app="demo",
                    source="staging",
                    target="production",
                    status="pending_approval",
                    requested_by="amy",
                    selection=Selection(),
                    plan=None,
                    plan_json={},
                    gates=(),
                    diff="",
                    created_at=now,
                    updated_at=now,
                )
            )
            assert added.id is not None
            for approver in ["bob", "carol"][: number % 3]:
                uow.promotions.add_approval(added.id, Approval(approver, now, f"ok {number}"))
        uow.commit()

    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    with SqlUnitOfWork(factory) as uow:
        event.listen(engine, "before_cursor_execute", count)
        try:
            listed = uow.promotions.list(app="demo", limit=100)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(listed) == 20
    assert len(selects) == 2, selects
    by_id = sorted(listed, key=lambda p: p.id or 0)
    assert [len(p.approvals) for p in by_id] == [min(n % 3, 2) for n in range(20)]
    assert [a.approver for a in by_id[2].approvals] == ["bob", "carol"]
    assert by_id[1].approvals[0].comment == "ok 1"
