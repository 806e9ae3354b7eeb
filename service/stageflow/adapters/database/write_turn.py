"""One write turn across every replica: a PostgreSQL advisory lock per GitOps repository.

Each replica has its own clone and pushes with a compare-and-swap; without a shared turn, two
replicas writing steadily keep rejecting each other's pushes until one gives up (409). Holding a
session-level advisory lock while a batch is applied and pushed makes the replicas queue
instead. PostgreSQL grants a lock's waiters in the order they asked, so every replica gets its
turn (no starvation), and a replica that dies mid-write loses its session and so its turn.
Within a replica, the writes that wait meanwhile are still grouped into one push
(``GitPythonRepo.change``), so N replicas push at least as much per turn as one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from stageflow.domain.errors import Unavailable

log = logging.getLogger(__name__)


def lock_key(url: str, branch: str) -> int:
    """Return the advisory lock key of one branch of one remote (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"stageflow-write-turn\0{url}\0{branch}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryWriteTurn:
    """The write turn as a context manager: ``with turn() as waited: ...``.

    The lock is taken on a connection this process keeps for it, in autocommit: a turn costs two
    round trips (lock, unlock), not a pool checkout, a ping and transactions around them.
    """

    def __init__(self, engine: Engine, key: int, *, timeout: float = 60.0) -> None:
        self.engine = engine
        self.key = key
        self.timeout = timeout
        self._lock = threading.Lock()  # one turn per process at a time (writers queue above)
        self._connection: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[bool]:
        with self._lock:
            reused = self._connection is not None
            connection = self._connect()
            held = False
            try:
                try:
                    got = self._try(connection)
                except Unavailable:
                    if not reused:
                        raise
                    # The kept session died (the database restarted, say): one fresh try.
                    connection = self._connect()
                    got = self._try(connection)
                waited = not got
                if waited:
                    self._wait(connection)
                held = True
                yield waited
            finally:
                self._release(connection, held)

    def _connect(self) -> Any:
        if self._connection is None:
            try:
                connection = self.engine.connect()
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                # This session only ever waits for the turn: bound the wait for good.
                connection.execute(text(f"SET lock_timeout = {int(self.timeout * 1000)}"))
            except DBAPIError as exc:
                raise _unreachable(exc) from exc
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        """Forget the connection (its session ends, and with it any lock it held)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
            with contextlib.suppress(Exception):
                connection.close()

    def _try(self, connection: Any) -> bool:
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
            ).scalar()
        except DBAPIError as exc:
            self._drop()
            raise _unreachable(exc) from exc
        return bool(got)

    def _wait(self, connection: Any) -> None:
        raw = connection.connection.dbapi_connection
        usual = getattr(raw, "query_timeout", None)
        if usual is not None:  # this one statement waits for the turn, not for an answer
            raw.query_timeout = self.timeout + 5
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise Unavailable(
                    f"other replicas have held the write turn for over {self.timeout:g} s (a "
                    "write stuck on the Git remote?); nothing was committed — try again",
                    code="write_turn_busy",
                    details={"waited_seconds": self.timeout},
                ) from None
            self._drop()
            raise _unreachable(exc) from exc
        finally:
            if usual is not None and not raw.closed:
                raw.query_timeout = usual

    def _release(self, connection: Any, held: bool) -> None:
        if not held:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        except DBAPIError:
            # Ending the session gives the lock back whatever happened to the statement.
            log.warning("cannot release the write turn; dropping its database session")
            self._drop()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = None


def _unreachable(exc: DBAPIError) -> Unavailable:
    return Unavailable(
        f"the database is unreachable, so this replica cannot take its write turn: {exc.orig}; "
        "nothing was committed — try again once it is back",
        code="database_unavailable",
    )
