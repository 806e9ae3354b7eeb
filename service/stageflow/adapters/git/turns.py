"""Whose turn it is to write: the processes of this host, then the replicas on other hosts."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from stageflow.domain.errors import WriteConflict

# The turn shared with other replicas (a database lock); it yields whether it had to wait.
WriteTurn = Callable[[], contextlib.AbstractContextManager[bool]]


@contextlib.contextmanager
def no_turn() -> Iterator[bool]:
    """The replica turn when there is no other replica to take turns with."""
    yield False


class WriteTurns:
    """The host-wide write lock (an ``flock`` on ``<clones>/write.lock``), then the replicas' turn.

    Each gunicorn worker has its own clone; without the host lock, two workers' writes race for
    the push and the loser renders and commits again (or answers 409 after too many losses).
    Replicas on other hosts queue on ``replica_turn`` (taken inside the host lock) when there is
    one, else on the push's compare-and-swap alone.
    """

    def __init__(
        self,
        clones_dir: Path,
        remote_name: str,
        timeout: float = 60.0,
        replica_turn: WriteTurn | None = None,
    ) -> None:
        self.clones_dir = clones_dir
        self.remote_name = remote_name  # the remote's display URL, for the error
        self.timeout = timeout
        self._replica_turn = replica_turn or no_turn
        self._handle: IO[str] | None = None

    @contextlib.contextmanager
    def take(self) -> Iterator[bool]:
        """Hold the turn to write; yields whether someone else was writing first."""
        with self._host_lock() as waited, self._replica_turn() as queued:
            yield waited or queued

    @contextlib.contextmanager
    def _host_lock(self) -> Iterator[bool]:
        """Take turns with the other processes of this host that write through this data dir.

        Yields whether the lock was busy (someone else of this host was writing).
        """
        if self._handle is None:
            self.clones_dir.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.clones_dir / "write.lock", "a")  # noqa: SIM115
        handle = self._handle
        waited = False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            self._wait_for(handle)
        try:
            yield waited
        finally:
            with contextlib.suppress(OSError, ValueError):  # closed by close() meanwhile
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _wait_for(self, handle: IO[str]) -> None:
        """Take the busy lock, polling; ``WriteConflict`` past the timeout.

        Polled, not blocking: a blocking flock cannot time out, and a writer stuck on an
        unreachable remote must not hang every other worker's writes for good.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WriteConflict(
                        f"another process of this host has been writing to "
                        f"{self.remote_name} for over {self.timeout:g} s; "
                        "nothing was committed — try again",
                        details={"waited_seconds": self.timeout},
                    ) from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
