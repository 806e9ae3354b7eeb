"""The remote's head, as cheaply as it can be known: a file read, or a cached `ls-remote`."""

from __future__ import annotations

import subprocess
import threading
import time

import git

from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.environment import NETWORK_TIMEOUT, stderr_of
from stageflow.domain.errors import Unavailable


class RemoteHead:
    """Answers the head of the tracked branch on the remote, and what the answer is worth.

    A local remote's ref is a file: reading it costs microseconds, so it is never stale. Asking a
    network remote costs a round trip: within ``ttl`` the last answer stands, and past it one
    thread asks while the others keep answering from the cache. While the remote does not answer,
    the last head seen stands in for it (``RemoteStatus`` says since when).
    """

    def __init__(self, clone: Clone, ttl: float) -> None:
        self.clone = clone
        self.origin = clone.origin
        self.status = clone.status
        self.ttl = ttl
        self._local = clone.origin.local
        self._refresh = threading.Lock()  # one thread asks a network remote at a time
        self._head: str | None = None
        self._head_at = 0.0

    def head(self, *, fresh: bool = False) -> str:
        """Return the SHA at the head of the tracked branch on the remote."""
        now = time.monotonic()
        cached = self._head
        try:
            if self._local:
                sha = self.ask()
            else:
                answered = self._ask_network(cached, now, fresh=fresh)
                if answered is None:
                    assert cached is not None
                    return cached
                sha = answered
            self.status.contact()
            self._catch_up(sha, cached)
        except Unavailable as exc:
            # Flag reads are the last thing that should stop: answer from the last head seen
            # (its parsed state is in memory, its objects in the clone), and say so.
            return self._last_head(exc)
        # A write of this process may have pushed (and cached) a newer head while we asked the
        # remote; caching our older answer over it would let a client that got that write's
        # revision read the state from before it.
        if self._head_at <= now:
            self._head, self._head_at = sha, now
        return sha

    def _ask_network(self, cached: str | None, now: float, *, fresh: bool) -> str | None:
        """Ask a network remote, or None when the cached head answers (within the TTL, or
        while another thread asks)."""
        if cached is not None and not fresh:
            if now - self._head_at < self.ttl:
                return None
            if not self._refresh.acquire(blocking=False):
                return None
        else:
            self._refresh.acquire()
        try:
            return self.ask()
        finally:
            self._refresh.release()

    def _catch_up(self, sha: str, cached: str | None) -> None:
        """Make a new head's commit readable in the clone."""
        clone = self.clone
        if sha != cached and not clone.has_commit(sha):
            with clone.fetch_lock:
                # Every reader of a new head gets here at once: only the first one fetches.
                if not clone.has_commit(sha):
                    clone.fetch_unlocked()

    def pushed(self, sha: str) -> None:
        """A write of this process pushed ``sha``: reads see it from now on."""
        self._head, self._head_at = sha, time.monotonic()

    def forget(self) -> None:
        self._head = None

    def _last_head(self, exc: Unavailable) -> str:
        """Return the last head this process knows, marking the remote as unreachable."""
        known = self._head or self.clone.tracking_sha
        if known is None and self.clone.is_open:
            known = self.clone.rev_parse(self.origin.tracking_ref)
        if known is None:
            raise exc
        self.status.lost(exc)
        return known

    def peek(self, *, waited: bool) -> str | None:
        """Return the remote's head where that is cheap to know, else None.

        A local remote's head is a file read, so it is always worth a look; a network remote's
        only after a wait for the write turn (when it has most likely moved).
        """
        if self._local:
            return self.clone.refs.read(self.origin.path, self.origin.branch_ref)
        if waited:
            return self.ask()
        return None

    def ask(self) -> str:
        """Ask the remote for its head now (no cache); ``Unavailable`` when it does not answer."""
        try:
            if self._local:
                return self._local_head()
            out_text = str(
                self.clone.repo.git.ls_remote(
                    "origin", self.origin.branch_ref, kill_after_timeout=NETWORK_TIMEOUT
                )
            )
        except git.GitCommandError as exc:
            raise Unavailable(
                f"Git remote {self.origin.display_url} is unreachable: {stderr_of(exc)}; check "
                "that it is up and that STAGEFLOW_GIT_URL and the credentials are right",
                code="git_unavailable",
                details={"part": "remote"},
            ) from exc
        if not out_text.strip():
            raise Unavailable(
                f"branch {self.origin.branch} not found in {self.origin.display_url}",
                code="git_unavailable",
            )
        return out_text.split(maxsplit=1)[0]

    def _local_head(self) -> str:
        path = self.origin.path
        found = self.clone.refs.read(path, self.origin.branch_ref)
        if found is not None:
            return found
        if not path.is_dir():  # one stat, not two processes, per read while it is gone
            raise Unavailable(self.local_remote_problem(), code="git_unavailable")
        out = subprocess.run(
            ["git", "--git-dir", str(path), "rev-parse", "--verify", "-q", self.origin.branch_ref],
            capture_output=True,
            text=True,
            check=False,
            env=self.origin.process_env(),
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            raise Unavailable(self.local_remote_problem(), code="git_unavailable")
        return sha

    def local_remote_problem(self) -> str:
        """Say what is wrong with a local remote whose branch cannot be read."""
        path = self.origin.path
        display_url = self.origin.display_url
        if not path.exists():
            return (
                f"Git remote {display_url} is unreachable: {path} does not exist; "
                "check STAGEFLOW_GIT_URL"
            )
        probe = subprocess.run(
            ["git", "--git-dir", str(path), "rev-parse", "--git-dir"],
            capture_output=True,
            text=True,
            check=False,
            env=self.origin.process_env(),
        )
        if probe.returncode != 0:
            return (
                f"Git remote {display_url} is unreachable: {path} is not a Git repository; "
                "check STAGEFLOW_GIT_URL"
            )
        return f"branch {self.origin.branch} not found in {display_url}; check STAGEFLOW_GIT_BRANCH"
