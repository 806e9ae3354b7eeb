"""The `stageflow_git_*` Prometheus metrics: pushes, writes, and contact with the remote."""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Protocol

from prometheus_client import Gauge, Histogram

from stageflow.services.ports import Outage

PUSH_SECONDS = Histogram("stageflow_git_push_seconds", "Time one `git push` took.", ["outcome"])
WRITE_SECONDS = Histogram(
    "stageflow_git_write_seconds", "Time a whole write (apply, render, commit, push) took."
)
COMMITS_PER_PUSH = Histogram(
    "stageflow_git_commits_per_push",
    "Commits one push carried (writes that waited for their turn are pushed together).",
    buckets=(1, 2, 4, 8, 16, 32),
)


class Watched(Protocol):
    """What the remote gauges read of a repository."""

    @property
    def is_open(self) -> bool: ...

    def head(self, *, fresh: bool = False) -> str: ...

    def outage(self) -> Outage | None: ...

    def contact_age(self) -> float | None: ...


# The repository whose remote the gauges describe: the last one opened in this process
# (one per process in production; tests build many). Weak: the gauges keep no repository alive.
_current: weakref.ref[Watched] | None = None


def watch(repo: weakref.ref[Watched]) -> None:
    """Make the gauges describe ``repo`` (called when it opens)."""
    global _current
    _current = repo


def _scraped() -> Watched | None:
    """The repository the gauges describe, its head asked as a read would ask it.

    So that an idle process does not look out of touch: a local remote's ref is read (a stat), a
    network remote is asked when the last answer is older than the head TTL.
    """
    repo = _current() if _current is not None else None
    if repo is not None and repo.is_open:  # never reopen a closed one
        with contextlib.suppress(Exception):  # an outage is what the gauges report
            repo.head()
    return repo


def _contact_age() -> float:
    repo = _scraped()
    age = None if repo is None else repo.contact_age()
    return math.nan if age is None else age


def _remote_up() -> float:
    repo = _scraped()  # within the head TTL of the age's scrape: no second round trip
    return float(repo is not None and repo.outage() is None and repo.contact_age() is not None)


REMOTE_CONTACT_AGE = Gauge(
    "stageflow_git_remote_contact_age_seconds",
    "Seconds since this process last heard from the Git remote (reads answered meanwhile may "
    "be that stale); NaN before the first contact.",
)
REMOTE_CONTACT_AGE.set_function(_contact_age)
REMOTE_UP = Gauge(
    "stageflow_git_remote_up",
    "1 while the Git remote answered the last time this process asked, else 0.",
)
REMOTE_UP.set_function(_remote_up)
