"""Which process is which: this one's name, its heartbeat, and whether another one is gone.

Half-done work (an `applying` promotion, an Idempotency-Key in progress) names the process that
does it (``host:pid``). Whether that process still lives decides whether to wait for it or to
settle its work from the commit trailers: this process knows what it is working on
(``Stageflow.in_flight``); the kernel knows about the other processes of this host; another
host's processes are gone when their heartbeat (written by each settler round) stopped.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from stageflow.services.context import Stageflow

# Work of a process that never wrote a heartbeat (an older version, or a settler turned off)
# counts as abandoned after this long.
STALE = timedelta(minutes=5)
# Heartbeats older than a day are dropped.
FORGET_AFTER = timedelta(days=1)


def me() -> str:
    """Return this process's name: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(sf: Stageflow) -> None:
    """Say that this process lives (and drop the heartbeats of long-gone ones)."""
    now = sf.clock()
    with sf.uow() as uow:
        uow.replicas.beat(me(), now)
        uow.replicas.forget_older(now - FORGET_AFTER)
        uow.commit()


def gone(
    sf: Stageflow,
    process: str | None,
    *,
    since: datetime,
    working_on: str,
    stale: timedelta = STALE,
) -> bool:
    """Whether ``process`` no longer works on ``working_on`` (started or last moved ``since``)."""
    if not process:
        return sf.clock() - since > stale
    if process == me():
        return working_on not in sf.in_flight
    host, _, pid = process.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _alive(int(pid))
    with sf.uow() as uow:
        seen = uow.replicas.seen(process)
    if seen is None:
        return sf.clock() - since > stale
    return sf.clock() - seen > timedelta(seconds=sf.heartbeat_lease)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process that nobody reaped yet is a zombie: gone all the same
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
