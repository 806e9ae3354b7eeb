"""Whether the Git remote answers: when it last did, and since when it does not."""

from __future__ import annotations

import logging
import time

from stageflow.domain.errors import Unavailable
from stageflow.services.ports import Outage

log = logging.getLogger(__name__)


class RemoteStatus:
    """The remote's contact and outage, shared by everything that talks to it.

    Reads go on from the last head seen while the remote is down; this is what says so (to
    ``outage``, the gauges and the errors of objects that were never read before).
    """

    def __init__(self, display_url: str) -> None:
        self.display_url = display_url
        self.contact_at: float | None = None  # time.time() the remote last answered
        self.down: Outage | None = None  # set while the remote does not answer

    def contact(self) -> None:
        """The remote answered: note when, and end an outage."""
        self.contact_at = time.time()
        if self.down is not None:
            log.warning("the Git remote %s answers again", self.display_url)
            self.down = None

    def lost(self, exc: Unavailable) -> None:
        """The remote did not answer: start an outage, unless one is going on."""
        if self.down is None:
            log.warning("%s; reads answer from the last head seen, writes answer 503", exc.message)
            self.down = Outage(since=time.time(), message=exc.message)

    def unreachable(self, message: str) -> None:
        """Start an outage without a last head to answer from (nothing to warn about yet)."""
        if self.down is None:
            self.down = Outage(since=time.time(), message=message)

    def contact_age(self) -> float | None:
        """Seconds since the remote last answered this process (None: it never did)."""
        return None if self.contact_at is None else max(0.0, time.time() - self.contact_at)

    def objects_gone(self) -> None:
        """Raise ``Unavailable`` when an object is missing because the remote is unreachable.

        A clone of a local remote borrows its objects (``Clone.borrow_objects``): with the remote
        moved away, what was not read before is gone until it is back. That is the remote's
        outage, not a revision that does not exist.
        """
        down = self.down
        if down is not None:
            raise Unavailable(
                f"{down.message}; this part of the last head was not read before the remote "
                "went away and cannot be read until it is back",
                code="git_unavailable",
                details={"part": "remote"},
            )
