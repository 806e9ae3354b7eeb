"""Run the Alembic migrations from code (start-up, `stageflow migrate`, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from stageflow.domain.errors import Unavailable
from stageflow.resources import shipped

MIGRATIONS = shipped("migrations")  # the wheel's copy, else the checkout's


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, connection: Connection | None = None, revision: str = "head") -> None:
    try:
        command.upgrade(alembic_config(url, connection), revision)
    except OperationalError as exc:  # start-up says what is wrong instead of a traceback
        raise Unavailable(
            f"cannot migrate the database: it is unreachable ({exc.orig}); check "
            "STAGEFLOW_DATABASE_URL and that the server is up",
            code="database_unavailable",
        ) from exc


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
