"""Writes as commits on the remote head: queued, grouped into one push, retried on lost races.

Writes are optimistic: the operation is applied on top of the last remote head this clone knows,
committed and pushed; when the push is rejected because someone else pushed first, the clone
fetches and the *operation* runs again on the new head (never a stale diff), up to a bound. Any
failure resets the clone to where it was, so nothing half-written stays. Within a process, writes
that wait for their turn are grouped: one push carries a commit for each of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from stageflow.adapters.git.commits import Committer
from stageflow.adapters.git.metrics import COMMITS_PER_PUSH
from stageflow.adapters.git.remote import RemoteHead
from stageflow.adapters.git.turns import WriteTurns
from stageflow.adapters.git.workspace import CloneWorkspace
from stageflow.domain.errors import StageflowError, Unavailable, WriteConflict
from stageflow.services.ports import Change, Committed

log = logging.getLogger(__name__)
T = TypeVar("T")

# How many waiting writes one push takes at most (see `WriteQueue.submit`).
MAX_BATCH = 32


class Push(Protocol):
    """Make ``sha`` the remote branch if it is still at ``base`` (a compare-and-swap).

    Returns (True, "") when it landed, (False, why) when someone else pushed first; raises when
    the remote refused for another reason. ``GitPush.push`` is the real one.
    """

    def __call__(self, sha: str, base: str) -> tuple[bool, str]: ...


class Write(Generic[T]):
    """One caller's write waiting in the queue, and what became of it."""

    __slots__ = ("actor", "operation", "result", "trailers")

    def __init__(
        self,
        operation: Callable[[CloneWorkspace], Change[T]],
        actor: str,
        trailers: Mapping[str, str],
    ) -> None:
        self.operation = operation
        self.actor = actor
        self.trailers = trailers
        self.result: Committed[T] | BaseException | None = None  # None while it waits

    @property
    def done(self) -> bool:
        return self.result is not None

    def settle(self, outcome: Committed[T] | BaseException) -> None:
        self.result = outcome

    def outcome(self) -> Committed[T]:
        result = self.result
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result


# What applying one write came to: its commit, its error, or None when its answer may be due to a
# stale base (then the whole batch is applied again on the remote's head).
_Applied = Committed[Any] | Exception | None


class WriteQueue:
    """Applies, commits and pushes the writes of this process, a batch per turn.

    ``push`` is the compare-and-swap that publishes a batch: the remote's (``GitPush.push``), or
    whatever a test passes in its place.
    """

    def __init__(
        self,
        committer: Committer,
        remote: RemoteHead,
        push: Push,
        turns: WriteTurns,
        attempts: int = 5,
    ) -> None:
        self.committer = committer
        self.clone = committer.clone
        self.objects = committer.objects
        self.remote = remote
        self.push = push
        self.turns = turns
        self.attempts = attempts
        self.max_batch = MAX_BATCH
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[Write[Any]] = []  # writes waiting for the write lock, oldest first

    def waiting(self) -> int:
        """How many writes wait for their turn."""
        with self._queue_lock:
            return len(self._queue)

    def submit(
        self,
        operation: Callable[[CloneWorkspace], Change[T]],
        actor: str,
        trailers: Mapping[str, str],
    ) -> Committed[T]:
        """Apply ``operation`` on the remote head and push it as one commit.

        Writes of this process that arrive while another is being written are *grouped*: the
        thread that next takes the write lock applies every waiting operation in turn, each as
        its own commit on top of the previous one, and pushes them all at once. Each caller gets
        its own commit (or its own error) only once the push has landed. Under concurrent writers
        this shares the push, the dearest part of a write, and keeps one commit per change.
        """
        write = Write(operation, actor, trailers)
        with self._queue_lock:
            self._queue.append(write)
        # Only the write locks are held for the whole write: reads (which take the object lock
        # for one lookup at a time) go on while the operations render and push.
        with self._write_lock:
            while not write.done:  # an earlier leader may have written it meanwhile
                self._lead()
        return write.outcome()

    def _lead(self) -> None:
        """Write the next batch of waiting writes; settle each with its outcome or the error."""
        batch: list[Write[Any]] = []
        try:
            with self.turns.take() as waited:
                # Taken once the turn is ours: the writes that queued while this process
                # waited for it (behind other processes and replicas) go too.
                batch = self._take_batch()
                self._write_batch(batch, waited)
        except BaseException as exc:
            if not batch:  # no turn (e.g. no database): the waiting writes fail alike
                batch = self._take_batch()
            for other in batch:  # e.g. the push failed: each write of the batch did
                if not other.done:
                    other.settle(exc)
            if not isinstance(exc, Exception):
                raise

    def _take_batch(self) -> list[Write[Any]]:
        size = self.max_batch
        with self._queue_lock:
            batch, self._queue = self._queue[:size], self._queue[size:]
        return batch

    def _write_batch(self, batch: list[Write[Any]], waited: bool) -> None:
        """Apply, commit and push ``batch`` (in order); settle every write of it."""
        clone = self.clone
        base = self._fresh_base(clone.tracking(), waited=waited)
        conflicts: list[str] = []
        for attempt in range(1, self.attempts + 1):
            applied = self._apply_batch(batch, base)
            if applied is None:  # a refusal decided on a stale base: again, on the new head
                base = clone.tracking()
                continue
            head, settled = applied
            rejected = self._publish(head, base, settled)
            if rejected is None:
                return
            clone.clean_at = None  # our unpushed commits are in the tree; go back on retry
            conflicts.append(rejected)
            log.info("push rejected (attempt %d), re-applying on the new head", attempt)
            try:
                clone.fetch()
            except BaseException:
                clone.restore(base)
                raise
            base = clone.tracking()
        clone.restore(base)
        raise WriteConflict(
            f"the remote kept changing: {self.attempts} pushes in a row were rejected "
            "because others pushed first; nothing was committed — try again",
            details={"attempts": self.attempts, "rejections": conflicts[-3:]},
        )

    def _publish(self, head: str, base: str, settled: list[tuple[Write[Any], Any]]) -> str | None:
        """Push the batch's commits and settle its writes; None, or why the push was rejected."""
        try:  # nothing to push when every write failed or changed nothing
            pushed, why = (True, "") if head == base else self.push(head, base)
        except BaseException:
            self.clone.restore(base)
            raise
        if not pushed:
            return why
        if head != base:
            self.remote.pushed(head)
            COMMITS_PER_PUSH.observe(
                sum(isinstance(done, Committed) and done.committed for _, done in settled)
            )
        for write, outcome in settled:
            write.settle(outcome)
        return None

    def _apply_batch(
        self, batch: list[Write[Any]], base: str
    ) -> tuple[str, list[tuple[Write[Any], Any]]] | None:
        """Commit each write's operation on top of the last; return the head and the outcomes.

        A write whose operation fails leaves no trace (the tree goes back to the commit before
        it) and the next one goes on. None when a refusal may be due to a stale ``base``.
        """
        head = base
        settled: list[tuple[Write[Any], Any]] = []
        for write in batch:
            outcome = self._apply(write, head, base)
            if outcome is None:
                return None
            settled.append((write, outcome))
            if isinstance(outcome, Committed) and outcome.committed:
                head = outcome.revision
        return head, settled

    def _apply(self, write: Write[Any], head: str, base: str) -> _Applied:
        """Commit one write's operation on ``head`` (the batch started at ``base``)."""
        clone = self.clone
        clone.reset(head)
        workspace = CloneWorkspace(
            Path(clone.repo.working_tree_dir or "."), head, blob_of=self.objects.blob_id
        )
        try:
            change = write.operation(workspace)
            sha = self.committer.commit(workspace, change, write.actor, write.trailers)
        except StageflowError as exc:
            clone.restore(head)
            # Writes start optimistically from the last head this clone knows. A refusal
            # (unknown flag, nothing to change, policy) decided on a stale base would be
            # a wrong answer: decide again on the remote's head.
            if isinstance(exc, Unavailable) or not self._behind(base):
                return exc
            return None
        except Exception as exc:
            clone.restore(head)
            return exc
        except BaseException:
            clone.restore(base)
            raise
        if sha is not None:
            return Committed(revision=sha, result=change.result, committed=True)
        # Nothing to change on this head; make sure the remote has not moved, or a
        # toggle another process made meanwhile would be silently undone ("lost").
        if head == base and self._behind(base):
            return None
        return Committed(revision=head, result=change.result, committed=False)

    def _fresh_base(self, base: str, *, waited: bool) -> str:
        """Return the remote's head when it is cheap to know and has moved past ``base``.

        The workers of one host take turns (the host lock), so after a wait the remote has most
        likely moved: starting from its head beats losing the push race and rendering again. A
        local remote's head is a file read, so there it is always worth a look.
        """
        remote = self.remote.peek(waited=waited)
        if remote is None or remote == base:
            return base  # unknown or current: the push's compare-and-swap has the last word
        self.clone.fetch()
        return self.clone.tracking()

    def _behind(self, base: str) -> bool:
        """Fetch when the remote moved past ``base``; True when it had."""
        if self.remote.ask() == base:
            return False
        self.clone.fetch()
        return self.clone.tracking() != base
