"""This process's working clone of the remote: its slot, its checkout and its tracking ref.

Each process owns one working clone (a numbered slot under ``<data dir>/clones``, held with an
exclusive ``flock`` for the life of the process, so a restarted process reuses a clone instead of
leaving a new one behind). The clone is only a cache of the remote: one that cannot be brought up
to date is cloned afresh, and while the remote is unreachable a clone left by an earlier process
serves the head it last had.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import git

from stageflow.adapters.git.environment import Origin, stderr_of
from stageflow.adapters.git.refs import RefFiles
from stageflow.adapters.git.status import RemoteStatus
from stageflow.domain.errors import Unavailable

log = logging.getLogger(__name__)

# How long a failed open keeps failing at once before a network remote is asked again.
_OPEN_RETRY_SECONDS = 1.0


class Clone:
    """The working clone: a slot, a GitPython repository in it, and what it is known to hold.

    ``lock`` guards the object database (GitPython's long-lived `cat-file` helpers serve one
    request at a time); it is only ever held for one lookup, never across a subprocess.
    ``fetch_lock`` is held by every command that moves the tracking ref (fetch, push): two of
    them at once would fail on the ref's lock file.
    """

    def __init__(
        self,
        origin: Origin,
        clones_dir: Path,
        status: RemoteStatus,
        refs: RefFiles,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.origin = origin
        self.clones_dir = clones_dir
        self.status = status
        self.refs = refs
        self._on_open = on_open
        self.lock = threading.RLock()
        self.fetch_lock = threading.Lock()
        self.workdir: Path | None = None
        # The commit the working tree is known to match exactly (None: unknown).
        self.clean_at: str | None = None
        self.tracking_sha: str | None = None  # the tracking ref, kept in memory
        self._slot: IO[str] | None = None
        self._repo: git.Repo | None = None
        self._open_failed: tuple[float, Unavailable] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._repo is not None

    @property
    def repo(self) -> git.Repo:
        """The GitPython repository of the clone, opened on first use."""
        if self._repo is None:
            self.open()
        assert self._repo is not None
        return self._repo

    def open(self) -> None:
        """Take a clone slot and make it an exact copy of the remote head.

        When the remote cannot be reached, a clone left by an earlier process is kept at the head
        it last had (reads answer from it, saying so); without one this raises ``Unavailable``,
        and a later use tries again (at most once a second).
        """
        with self.lock:
            if self._repo is not None:
                return
            self._refuse_retry_too_soon()
            if self._slot is None:
                self._take_slot()
            try:
                self._open_in_slot()
            except git.GitCommandError as exc:
                self.abandon()
                error = self._clone_failed(exc)
                # not `lost`: there is no last head to answer from
                self.status.unreachable(error.message)
                self._open_failed = (time.monotonic(), error)
                raise error from exc
            except Unavailable as exc:
                self.abandon()
                self._open_failed = (time.monotonic(), exc)
                raise
            except BaseException:
                self.abandon()
                raise
            self._open_failed = None
        if self._on_open is not None:
            self._on_open()

    def _refuse_retry_too_soon(self) -> None:
        """Raise the last open's error again while it is too soon to ask the remote again.

        A network remote is asked again at most once a second; a local one whenever its branch
        can be read again (a stat).
        """
        failed = self._open_failed
        if (
            failed is not None
            and time.monotonic() - failed[0] < _OPEN_RETRY_SECONDS
            and (
                not self.origin.local
                or self.refs.read(self.origin.path, self.origin.branch_ref) is None
            )
        ):
            raise failed[1]

    def _open_in_slot(self) -> None:
        reused = self._reuse_clone()
        if reused is None or not self._sync(reused, fresh=False):
            self._sync(self._fresh_clone(), fresh=True)

    def _clone_failed(self, exc: git.GitCommandError) -> Unavailable:
        origin = self.origin
        return Unavailable(
            f"cannot clone {origin.display_url} (branch {origin.branch}): {stderr_of(exc)}; "
            "check STAGEFLOW_GIT_URL and STAGEFLOW_GIT_BRANCH (and the credentials: "
            "STAGEFLOW_GIT_TOKEN, STAGEFLOW_GIT_SSH_KEY); there is no earlier clone "
            f"in {self.clones_dir} to serve from meanwhile",
            code="git_unavailable",
            details={"part": "remote"},
        )

    def _sync(self, repo: git.Repo, *, fresh: bool) -> bool:
        """Make ``repo`` this instance's clone, at the remote head; False if a reused one fails."""
        self._repo, self.clean_at = repo, None
        try:
            self.fetch()
            self.reset(self.tracking())
        except Unavailable as exc:
            if fresh:
                raise
            if self._serve_offline(repo, exc):
                return True
            repo.close()
            self._repo = None
            return False
        except git.GitCommandError:
            if fresh:
                raise
            # The clone is only a cache of the remote: one that a crash or a full disk damaged
            # is replaced rather than failing every start from now on.
            log.warning(
                "the clone in %s cannot be brought up to date; cloning afresh", self.workdir
            )
            repo.close()
            self._repo = None
            return False
        return True

    def _serve_offline(self, repo: git.Repo, exc: Unavailable) -> bool:
        """Keep a clone at the head it last fetched while the remote is unreachable."""
        try:
            sha = str(
                repo.git.rev_parse("--verify", "-q", f"{self.origin.tracking_ref}^{{commit}}")
            )
            self.reset(sha)  # fails when the clone lacks the objects (e.g. borrowed ones)
        except git.GitCommandError:
            return False
        self.tracking_sha = sha
        self.status.lost(exc)
        log.warning(
            "the Git remote %s is unreachable (%s): serving the head the clone in %s last had, "
            "%s, until it is back; writes answer 503 meanwhile",
            self.origin.display_url,
            exc.message,
            self.workdir,
            sha,
        )
        return True

    def _take_slot(self) -> None:
        self.clones_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1024):
            handle = open(self.clones_dir / f"slot-{n}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self._slot = handle
            self.workdir = self.clones_dir / f"slot-{n}"
            return
        raise Unavailable(  # pragma: no cover - 1024 live processes on one data dir
            "no free clone slot under " + str(self.clones_dir)
        )

    def _reuse_clone(self) -> git.Repo | None:
        """Open the slot's clone left by an earlier process, or None when it cannot be used."""
        assert self.workdir is not None
        if not (self.workdir / ".git").is_dir():
            return None
        # We hold the slot's lock, so a lock file inside the clone is a leftover of a process
        # that died mid-command; left there it would fail every later checkout.
        for stale in (".git/index.lock", ".git/HEAD.lock"):
            (self.workdir / stale).unlink(missing_ok=True)
        try:
            repo = git.Repo(self.workdir)
            repo.git.update_environment(**self.origin.env)
            repo.git.remote("set-url", "origin", self.origin.url)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
            log.warning("the clone in %s is unusable; cloning afresh", self.workdir)
            return None
        return self._configure(repo)

    def _fresh_clone(self) -> git.Repo:
        assert self.workdir is not None
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        repo = git.Repo.clone_from(
            self.origin.url,
            self.workdir,
            branch=self.origin.branch,
            single_branch=True,
            no_checkout=True,
            env=self.origin.env,
        )
        repo.git.update_environment(**self.origin.env)
        return self._configure(repo)

    def _configure(self, repo: git.Repo) -> git.Repo:
        repo.git.config("core.quotepath", "off")
        repo.git.config("gc.auto", "0")
        repo.git.config("commit.gpgsign", "false")
        if self.origin.local:
            self._borrow_objects(repo)
        return repo

    def _borrow_objects(self, repo: git.Repo) -> None:
        """Let the clone read a local remote's objects in place (``git clone --shared``).

        With the remote's object directory as an alternate, a commit another process pushed is
        readable here at once: catching up is a ref update in memory (``fetch_unlocked``), not
        a `git fetch`. Git warns that a clone borrowing objects breaks when the source prunes
        objects it uses: this clone only ever points at the remote branch's history (reachable
        there) and at its own commits (stored here), and `gc.auto` is off in it.
        """
        objects = self.origin.path / "objects"
        if not objects.is_dir():
            return
        info = Path(repo.git_dir) / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        alternates = info / "alternates"
        wanted = f"{objects.resolve()}\n"
        if not alternates.exists() or alternates.read_text() != wanted:
            alternates.write_text(wanted)

    def abandon(self) -> None:
        """Give the slot back (after a failed open, or on close): a retry takes the same slot."""
        self.tracking_sha = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    # -- the tracking ref and the working tree ------------------------------------------------

    def fetch(self) -> None:
        """Bring the tracking ref up to the remote's branch."""
        # Opened first, outside the lock: opening fetches, and would wait for this lock forever.
        self.repo  # noqa: B018
        with self.fetch_lock:  # a reader's and a writer's fetch must not race for the ref lock
            self.fetch_unlocked()

    def fetch_unlocked(self) -> None:
        """``fetch`` for a caller that holds ``fetch_lock`` already."""
        origin = self.origin
        if origin.local:
            # The remote's objects are ours too (_borrow_objects): knowing its head is enough.
            # The ref file on disk may lag; everything here reads the SHA kept in memory.
            remote = self.refs.read(origin.path, origin.branch_ref)
            if remote is not None and self.has_commit(remote):
                self.tracking_sha = remote
                return
        try:
            self.repo.git.fetch(
                "-q", "--no-tags", "origin", f"+{origin.branch_ref}:{origin.tracking_ref}"
            )
        except git.GitCommandError as exc:
            error = Unavailable(
                f"cannot fetch from {origin.display_url}: {stderr_of(exc)}; check that the "
                "remote is up and that STAGEFLOW_GIT_URL and the credentials are right",
                code="git_unavailable",
                details={"part": "remote"},
            )
            self.status.lost(error)
            raise error from exc
        self.status.contact()
        assert self.workdir is not None
        self.tracking_sha = self.refs.read(self.workdir / ".git", origin.tracking_ref) or str(
            self.repo.git.rev_parse(origin.tracking_ref)
        )

    def tracking(self) -> str:
        """Return the tracking ref: the remote head as of our last fetch or push."""
        sha = self.tracking_sha
        if sha is None:
            sha = self.tracking_sha = str(self.repo.git.rev_parse(self.origin.tracking_ref))
        return sha

    def reset(self, revision: str) -> None:
        """Check ``revision`` out, with nothing else in the working tree."""
        # `clean_at` is the commit the working tree is known to match exactly; skipping the
        # checkout then saves two subprocesses on every write. A tree known clean at another
        # commit has no stray files: the checkout alone moves it.
        if self.clean_at == revision:
            return
        clean = self.clean_at is not None
        self.clean_at = None
        self.repo.git.checkout("-q", "-f", "--detach", revision)
        if not clean:
            self.repo.git.clean("-q", "-f", "-d", "-x")
        self.clean_at = revision

    def restore(self, base: str) -> None:
        """Put the clone back at ``base`` after a failed write, without hiding the failure."""
        self.clean_at = None
        try:
            self.reset(base)
        except Exception:  # the next write resets again; the original error matters more
            log.exception("cannot reset the clone %s to %s", self.workdir, base)

    def head(self) -> str:
        """Return the commit the clone's (detached) HEAD is at, without a `rev-parse`."""
        assert self.workdir is not None
        found = self.refs.read(self.workdir / ".git", "HEAD")
        return found if found is not None else str(self.repo.git.rev_parse("HEAD"))

    # -- asking the clone's object database ---------------------------------------------------

    def has_commit(self, sha: str) -> bool:
        try:
            with self.lock:
                self.repo.odb.info(bytes.fromhex(sha))
        except (ValueError, Exception):  # gitdb raises BadObject / ValueError
            return False
        return True

    def rev_parse(self, revision: str) -> str | None:
        """Return the commit ``revision`` names in the clone (None: no such commit)."""
        try:
            return str(self.repo.git.rev_parse("--verify", "-q", f"{revision.lower()}^{{commit}}"))
        except git.GitCommandError:
            return None

    def is_ancestor(self, sha: str, head: str) -> bool:
        status, _, _ = self.repo.git.merge_base(
            "--is-ancestor", sha, head, with_extended_output=True, with_exceptions=False
        )
        return bool(status == 0)
