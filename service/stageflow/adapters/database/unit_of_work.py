"""The unit of work: one database transaction, rolled back unless committed."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Hashable
from types import TracebackType
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from stageflow.adapters.database.events import SqlEvents, SqlEvidence, SqlNotifications
from stageflow.adapters.database.records import LedgerVersionRecord
from stageflow.adapters.database.repositories import (
    SqlAuditLog,
    SqlIdempotencyStore,
    SqlReplicas,
    SqlServerKeys,
    SqlTokenStore,
)
from stageflow.adapters.database.restores import SqlRestores
from stageflow.adapters.database.workflow import (
    APP_STATE_VERSION,
    SqlChecks,
    SqlDeployments,
    SqlFreezes,
    SqlHolds,
    SqlPromotions,
    SqlRejections,
    move_versions,
)
from stageflow.domain.errors import Invalid, Unavailable


class TimedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip gives up after ``query_timeout`` seconds.

    PostgreSQL's own ``statement_timeout`` is kept by the server: a frozen server (stopped, or
    cut off without a reset) never sends the error, and the client would wait for the whole
    outage, holding a request thread (and ``/readyz``) all along. This deadline is the client's:
    past it the connection is closed (SQLAlchemy then drops it from the pool as disconnected)
    and the caller gets an OperationalError, which the unit of work answers as 503.
    """

    query_timeout: float | None = None

    def wait(  # type: ignore[override]
        self, gen: Any, interval: float = 0.1, timeout: float | None = None
    ) -> Any:
        limit = self.query_timeout if timeout is None else timeout
        try:
            return super().wait(gen, interval, limit)
        except psycopg.errors._WaitTimeout:
            with contextlib.suppress(Exception):
                self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g} s (STAGEFLOW_DATABASE_TIMEOUT)"
            ) from None


def make_engine(url: str, *, timeout: float = 5.0) -> Engine:
    """Create the engine; SQLite gets WAL and a busy timeout so threads and workers can share it.

    PostgreSQL connections get a connect timeout and a deadline on every round trip
    (``TimedConnection``), so an unreachable or frozen server is an error within ``timeout``
    seconds, never a hang.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=max(timeout, 1.0),
        # libpq's connect_timeout is whole seconds, at least 2
        connect_args={"connect_timeout": max(2, math.ceil(timeout))},
    )
    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "do_connect")
        def _timed_connect(dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
            connection = TimedConnection.connect(*cargs, **cparams)
            connection.query_timeout = timeout
            return connection

    return engine


def ping(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise Unavailable(
            f"the database is unreachable: {exc.orig}", code="database_unavailable"
        ) from exc


# See SqlUnitOfWork.state_version.
_STATE_VERSION = (
    f"SELECT version FROM {LedgerVersionRecord.__tablename__} WHERE name = '{APP_STATE_VERSION}'"
)


class SqlUnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self.session_factory()
        self.audit = SqlAuditLog(self.session)
        self.tokens = SqlTokenStore(self.session)
        self.idempotency = SqlIdempotencyStore(self.session)
        self.promotions = SqlPromotions(self.session)
        self.checks = SqlChecks(self.session)
        self.deployments = SqlDeployments(self.session)
        self.freezes = SqlFreezes(self.session)
        self.holds = SqlHolds(self.session)
        self.rejections = SqlRejections(self.session)
        self.replicas = SqlReplicas(self.session)
        self.server_keys = SqlServerKeys(self.session)
        self.events = SqlEvents(self.session)
        self.evidence = SqlEvidence(self.session)
        self.notifications = SqlNotifications(self.session)
        self.restores = SqlRestores(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()
        if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
            raise Unavailable(
                f"the database is unreachable: {exc.orig}", code="database_unavailable"
            ) from exc
        if isinstance(exc, DataError):
            # A value the database cannot hold (a NUL byte in PostgreSQL text, a string longer
            # than its column, a number out of range): the client sent it, so a 422, not a 500.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
            raise Invalid(
                f"a value in the request cannot be stored: {reason}; remove control characters "
                "and keep names and texts within their documented lengths",
                code="invalid_value",
            ) from exc

    def commit(self) -> None:
        move_versions(self.session)
        self.session.commit()

    def serialize(self, name: str) -> None:
        """Hold ``name`` until this transaction ends: every process doing the same waits.

        PostgreSQL: a transaction-level advisory lock. SQLite: its one write lock, taken by a
        write that changes nothing (a read alone would not start the transaction), so the
        reads that follow see everything committed before.
        """
        connection = self.session.connection()
        if connection.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        else:
            connection.execute(
                text(
                    f"UPDATE {LedgerVersionRecord.__tablename__} SET version = version "
                    "WHERE name = :name"
                ),
                {"name": APP_STATE_VERSION},
            )

    def state_version(self) -> Hashable:
        """A value that changes whenever deployment reports, checks or holds change.

        It is the ``app_state`` row of ``ledger_versions``, which every writer of those tables
        moves in its own transaction: commits take turns on the row, so the value a reader sees
        covers every change committed before it (newest ids would not: concurrent PostgreSQL
        transactions may commit their ids out of order).
        """
        # Plain SQL on the session's connection: the ORM's statement handling would cost
        # three times the query itself, and every app-state read asks this.
        return self.session.connection().exec_driver_sql(_STATE_VERSION).scalar()
