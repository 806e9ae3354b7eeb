"""The GitOps repository: reads at the remote head, and writes as one commit per operation.

Each process owns one working clone (a numbered slot under ``<data dir>/clones``, held with an
exclusive ``flock`` for the life of the process, so a restarted process reuses a clone instead of
leaving a new one behind). Writes are optimistic: the operation is applied on top of the last
remote head this clone knows, committed and pushed; when the push is rejected because someone else
pushed first, the clone fetches and the *operation* runs again on the new head (never a stale
diff), up to a bound. Any failure resets the clone to where it was, so nothing half-written stays.
The processes of one host (gunicorn workers on one data dir) take turns writing, through an
``flock`` on ``<clones>/write.lock``, instead of racing each other for the push. Within a process,
writes that wait for their turn are grouped: one push carries a commit for each of them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import git
from gitdb.exc import ODBError
from prometheus_client import Gauge, Histogram

from stageflow.domain.errors import NotFound, StageflowError, Unavailable, WriteConflict
from stageflow.logs import redact
from stageflow.services.ports import Change, Committed, Outage

log = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING: Any = object()

PUSH_SECONDS = Histogram("stageflow_git_push_seconds", "Time one `git push` took.", ["outcome"])
WRITE_SECONDS = Histogram(
    "stageflow_git_write_seconds", "Time a whole write (apply, render, commit, push) took."
)
COMMITS_PER_PUSH = Histogram(
    "stageflow_git_commits_per_push",
    "Commits one push carried (writes that waited for their turn are pushed together).",
    buckets=(1, 2, 4, 8, 16, 32),
)

# The repository whose remote the gauges below describe: the last one opened in this process
# (one per process in production; tests build many).
_CURRENT: weakref.ref[GitPythonRepo] | None = None


def _scraped() -> GitPythonRepo | None:
    """The repository the gauges describe, its head asked as a read would ask it.

    So that an idle process does not look out of touch: a local remote's ref is read (a stat), a
    network remote is asked when the last answer is older than the head TTL.
    """
    repo = _CURRENT() if _CURRENT is not None else None
    if repo is not None and repo._repo is not None:  # never reopen a closed one
        with contextlib.suppress(Exception):  # an outage is what the gauges report
            repo.head()
    return repo


def _contact_age() -> float:
    repo = _scraped()
    if repo is None or repo._contact_at is None:
        return float("nan")
    return max(0.0, time.time() - repo._contact_at)


def _remote_up() -> float:
    repo = _scraped()  # within the head TTL of the age's scrape: no second round trip
    return float(repo is not None and repo._down is None and repo._contact_at is not None)


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

# Network operations give up instead of hanging a read or a write on a dead connection.
_NETWORK_TIMEOUT = 15

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",  # bytes/s below which an HTTP transfer ...
    "GIT_HTTP_LOW_SPEED_TIME": str(_NETWORK_TIMEOUT),  # ... for this long is given up
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_COMMITTER_NAME": "Stageflow",
    "GIT_COMMITTER_EMAIL": "stageflow@localhost",
    "LC_ALL": "C",
}

# How a push to a remote on this host packs (the `-c` of this command only: the clone's config,
# and the remote's, stay as they are). The pack goes through a pipe, so there is nothing to save
# by computing deltas or compressing hard, and with a large file both cost more than the rest of
# the push: a 1 MB flags.json is delta-searched against its previous version
# (`pack.window`) and deflated at zlib's default level (`pack.compression`), then the remote
# inflates and re-applies it. Without the delta search and at level 1 the push of a toggle in a
# 5,000-flag stage takes ~5 ms less. The remote stores the same objects either way:
# `receive-pack` unpacks a push of a few objects into loose objects of its own compression.
_LOCAL_PUSH_OPTIONS = ("-c", "pack.window=0", "-c", "pack.compression=1")
# A commit stores a file from this size on (a 5,000-flag flags.json) straight into a pack of its
# own, deflated once at level 1, instead of as a loose object: the push then sends that packed
# data as it is instead of inflating and deflating it again (~2.5 ms less on 1 MB). Given to the
# commit and the push only: in the clone's config it would make `git diff` call such files binary.
_BIG_FILE_OPTIONS = ("-c", "core.bigFileThreshold=256k", "-c", "pack.compression=1")
# Files from this size on are compared with their base blob by size first (`_other_size`).
_SIZE_CHECK_FROM = 64 * 1024


def redact_url(url: str) -> str:
    """Return the remote URL without credentials (safe to show to clients)."""
    parts = urlsplit(url)
    if parts.scheme and (parts.username or parts.password):
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def auth_env(
    *,
    ssh_key: str | None = None,
    ssh_known_hosts: str | None = None,
    token: str | None = None,
    username: str = "x-access-token",
) -> dict[str, str]:
    """Return the environment that makes git authenticate to the remote as configured.

    The token reaches git through a credential helper that reads it from the environment, so
    it is never in a command line, a config file or a URL that a message could repeat. Without
    these settings git authenticates as it would for the user (GIT_SSH_COMMAND, ssh-agent,
    ~/.ssh/config, credential helpers, credentials in the URL).
    """
    env: dict[str, str] = {}
    if ssh_key:
        command = [
            "ssh",
            "-i",
            shlex.quote(ssh_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={_NETWORK_TIMEOUT}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]
        if ssh_known_hosts:
            command += [
                "-o",
                f"UserKnownHostsFile={shlex.quote(ssh_known_hosts)}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        env["GIT_SSH_COMMAND"] = " ".join(command)
    if token:
        env.update(
            {
                "STAGEFLOW_GIT_TOKEN": token,
                "STAGEFLOW_GIT_USERNAME": username,
                # An empty helper first clears those of the user's config: this token is the
                # one to use, not one a credential store remembers for the host.
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": "",
                "GIT_CONFIG_KEY_1": "credential.helper",
                "GIT_CONFIG_VALUE_1": '!f() { test "$1" = get || return 0; '
                'echo "username=$STAGEFLOW_GIT_USERNAME"; '
                'echo "password=$STAGEFLOW_GIT_TOKEN"; }; f',
            }
        )
    return env


def _is_local(url: str) -> bool:
    return ("://" not in url and ":" not in url.split("/", 1)[0]) or url.startswith("file://")


def _local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url)


# path -> ((inode, mtime, ctime, size), sha) of loose refs read by _read_ref
_LOOSE_REFS: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def _read_ref(git_dir: Path, ref: str) -> str | None:
    """Return the SHA a ref names by reading the ref files, or None when git must be asked.

    A loose ref is replaced by a rename and `pack-refs` writes ``packed-refs`` before it removes
    the loose file, so each read sees a whole, current value. Anything unusual (a symbolic ref, a
    reftable repository, a missing ref) returns None, and the caller asks git itself.

    A loose ref's value is kept with the file's identity (inode, times, size): every update is a
    new file renamed into place, so while those match one ``stat`` answers, without reading it
    (fewer system calls per read, each of which gives up the GIL under load).
    """
    path = os.path.join(git_dir, ref)
    try:
        st = os.stat(path)
        seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        known = _LOOSE_REFS.get(path)
        if known is not None and known[0] == seen:
            return known[1]
        with open(path, "rb") as file:
            text = file.read().decode("ascii").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        text = ""
    except (OSError, UnicodeError):
        return None
    if text:
        if not _is_object_id(text):
            return None
        _LOOSE_REFS[path] = (seen, text)
        return text
    if (git_dir / "reftable").exists():
        return None
    try:
        packed = (git_dir / "packed-refs").read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    suffix = " " + ref
    for line in packed.splitlines():
        if line.endswith(suffix) and not line.startswith(("#", "^")):
            sha = line[: -len(suffix)]
            return sha if _is_object_id(sha) else None
    return None


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _object_id(kind: bytes, data: bytes, like: str) -> str:
    """Return the id git gives ``data`` as an object of ``kind`` (the hash of ids like ``like``)."""
    digest = hashlib.sha256() if len(like) == 64 else hashlib.sha1()
    digest.update(b"%s %d\0" % (kind, len(data)))
    digest.update(data)
    return digest.hexdigest()


def seed_bare_remote(seed_dir: Path, bare: Path, branch: str) -> bool:
    """Create ``bare`` from the files of ``seed_dir`` in one commit, unless it exists already."""
    if (bare / "HEAD").exists():
        return False
    if bare.is_dir() and any(bare.iterdir()):
        raise StageflowError(
            f"cannot seed the embedded Git remote: {bare} exists but is not a Git repository; "
            "move it away, or set STAGEFLOW_GIT_URL to a real remote"
        )
    if not (seed_dir / "stageflow.yaml").exists():
        raise StageflowError(
            f"cannot seed the embedded Git remote: {seed_dir}/stageflow.yaml is missing; "
            "set STAGEFLOW_SEED_DIR to a starter repo or STAGEFLOW_GIT_URL to a real remote"
        )
    bare.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **_GIT_ENV,
        "GIT_AUTHOR_NAME": "Stageflow",
        "GIT_AUTHOR_EMAIL": "stageflow@localhost",
    }
    with tempfile.TemporaryDirectory(prefix="stageflow-seed-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(seed_dir, work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        staging = Path(tmp) / "gitops.git"
        for args, cwd in (
            (["git", "init", "-q", "--bare", "-b", branch, str(staging)], tmp),
            (["git", "init", "-q", "-b", branch], work),
            (["git", "add", "-A"], work),
            (
                [
                    "git",
                    "commit",
                    "-q",
                    "--no-gpg-sign",
                    "-m",
                    "Seed the GitOps repo from the starter overlays",
                ],
                work,
            ),
            (["git", "push", "-q", str(staging), f"HEAD:refs/heads/{branch}"], work),
        ):
            subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
        # Move into place only when complete, so a crash never leaves a half-seeded remote. An
        # empty directory in the way would make `move` put the repository *inside* it.
        if bare.is_dir():
            bare.rmdir()
        shutil.move(str(staging), str(bare))
    return True


def _text(data: bytes) -> str:
    """Decode a file as ``Path.read_text(encoding="utf-8")`` does (universal newlines).

    The text layer decodes and translates in 8 KB chunks: for a 1 MB flags.json ~0.8 ms, where
    this takes ~0.1 ms.
    """
    text = data.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class _Workspace:
    """The `Workspace` port over the working tree of the clone, at one base revision."""

    root: Path
    revision: str
    written: set[str] = field(default_factory=set)
    blob_of: Callable[[str, str], str | None] | None = None  # (revision, path) -> blob id

    def _path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise StageflowError(f"path {rel!r} leaves the repository")
        return path

    def read(self, path: str) -> str | None:
        try:
            return _text(self._path(path).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def unwritten_blob(self, path: str) -> str | None:
        # The clone is reset to `revision` before the operation: an unwritten file is the blob.
        if self.blob_of is None or path in self.written:
            return None
        return self.blob_of(self.revision, path)

    def write(self, path: str, text: str) -> None:
        target = self._path(path)
        data = text.encode("utf-8")
        try:
            size: int | None = target.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            size = None
        # The file's text (decoded, newlines translated) is never longer than its bytes: a file
        # smaller than the new text cannot hold it, and a toggle of a 1 MB flags.json need not
        # read it back first.
        if size is not None and size >= len(data):
            current = target.read_bytes()
            if current == data or _text(current) == text:
                return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Overwritten in place, then cut to length: the same bytes as `write_bytes`, but without
        # truncating first, which makes the file system free every block and allocate it again
        # (on ext4 ~0.8 ms for 1 MB, twenty times the write itself).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(fd, memoryview(data)[written:], written)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self.written.add(path)

    def delete(self, path: str) -> None:
        target = self._path(path)
        if target.exists():
            target.unlink()
            self.written.add(path)

    def directory(self, path: str) -> Path:
        return self._path(path)


# How many waiting writes one push takes at most (see `GitPythonRepo.change`).
_MAX_BATCH = 32


class _Write(Generic[T]):
    """One caller's write waiting in the queue, and what became of it."""

    __slots__ = ("actor", "operation", "result", "trailers")

    def __init__(
        self,
        operation: Callable[[_Workspace], Change[T]],
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


class GitPythonRepo:
    """The `GitRepo` port over a GitPython working clone of the GitOps remote."""

    def __init__(
        self,
        url: str,
        branch: str,
        clones_dir: Path,
        *,
        head_ttl: float = 0.1,
        push_attempts: int = 5,
        cache_size: int = 4096,
        blob_cache_bytes: int = 32 * 2**20,
        host_lock_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        min_free_bytes: int = 0,
        write_turn: Callable[[], contextlib.AbstractContextManager[bool]] | None = None,
    ) -> None:
        self.url = url
        # git's environment: the fixed part, and how to authenticate (``auth_env``).
        self._env = {**_GIT_ENV, **(env or {})}
        self.min_free_bytes = min_free_bytes
        self.branch = branch
        self.clones_dir = clones_dir
        self.head_ttl = head_ttl
        self.push_attempts = push_attempts
        self.host_lock_timeout = host_lock_timeout
        # The turn shared with other replicas (a database lock), taken inside the host lock;
        # it yields whether it had to wait. None: this host's writers only take turns.
        self._write_turn = write_turn or _no_turn
        self._cache_size = cache_size
        self._local = _is_local(url)
        # `_lock` guards the object database (GitPython's long-lived `cat-file` helpers serve one
        # request at a time); it is only ever held for one lookup, never across a subprocess.
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Write[Any]] = []  # writes waiting for the write lock, oldest first
        # Held by every command that moves refs/remotes/origin/<branch> (fetch, push): two of
        # them at once would fail on the ref's lock file.
        self._fetch_lock = threading.Lock()
        self._head_refresh = threading.Lock()  # one thread asks a network remote at a time
        self._head: str | None = None
        self._head_at = 0.0
        self._tracking_sha: str | None = None  # refs/remotes/origin/<branch>, kept in memory
        self._host_lock: IO[str] | None = None
        self._blobs: OrderedDict[str, bytes] = OrderedDict()  # blob id -> contents (immutable)
        self._blobs_size = 0
        self._blob_cache_bytes = blob_cache_bytes
        self._blobs_lock = threading.Lock()
        self._blob_ids: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._last_change: OrderedDict[tuple[str, tuple[str, ...]], str | None] = OrderedDict()
        self._slot: IO[str] | None = None
        self._repo: git.Repo | None = None
        self._clean_at: str | None = None
        self.workdir: Path | None = None
        self._contact_at: float | None = None  # time.time() the remote last answered
        self._down: Outage | None = None  # set while the remote does not answer
        self._open_failed: tuple[float, Unavailable] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def open(self) -> None:
        """Take a clone slot and make it an exact copy of the remote head.

        When the remote cannot be reached, a clone left by an earlier process is kept at the head
        it last had (reads answer from it, saying so); without one this raises ``Unavailable``,
        and a later use tries again (at most once a second).
        """
        global _CURRENT
        with self._lock:
            if self._repo is not None:
                return
            failed = self._open_failed
            # A network remote is asked again at most once a second; a local one whenever its
            # branch can be read again (a stat).
            if (
                failed is not None
                and time.monotonic() - failed[0] < 1.0
                and (
                    not self._local
                    or _read_ref(_local_path(self.url), f"refs/heads/{self.branch}") is None
                )
            ):
                raise failed[1]
            if self._slot is None:
                self._take_slot()
            try:
                reused = self._reuse_clone()
                if reused is None or not self._sync(reused, fresh=False):
                    self._sync(self._fresh_clone(), fresh=True)
            except git.GitCommandError as exc:
                self._abandon()
                error = Unavailable(
                    f"cannot clone {self.display_url} (branch {self.branch}): {_stderr(exc)}; "
                    "check STAGEFLOW_GIT_URL and STAGEFLOW_GIT_BRANCH (and the credentials: "
                    "STAGEFLOW_GIT_TOKEN, STAGEFLOW_GIT_SSH_KEY); there is no earlier clone "
                    f"in {self.clones_dir} to serve from meanwhile",
                    code="git_unavailable",
                    details={"part": "remote"},
                )
                if self._down is None:  # not _lost: there is no last head to answer from
                    self._down = Outage(since=time.time(), message=error.message)
                self._open_failed = (time.monotonic(), error)
                raise error from exc
            except Unavailable as exc:
                self._abandon()
                self._open_failed = (time.monotonic(), exc)
                raise
            except BaseException:
                self._abandon()
                raise
            self._open_failed = None
            _CURRENT = weakref.ref(self)

    def _sync(self, repo: git.Repo, *, fresh: bool) -> bool:
        """Make ``repo`` this instance's clone, at the remote head; False if a reused one fails."""
        self._repo, self._clean_at = repo, None
        try:
            self._fetch()
            self._reset(self._tracking())
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
                repo.git.rev_parse(
                    "--verify", "-q", f"refs/remotes/origin/{self.branch}^{{commit}}"
                )
            )
            self._reset(sha)  # fails when the clone lacks the objects (e.g. borrowed ones)
        except git.GitCommandError:
            return False
        self._tracking_sha = sha
        self._lost(exc)
        log.warning(
            "the Git remote %s is unreachable (%s): serving the head the clone in %s last had, "
            "%s, until it is back; writes answer 503 meanwhile",
            self.display_url,
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
            repo.git.update_environment(**self._env)
            repo.git.remote("set-url", "origin", self.url)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
            log.warning("the clone in %s is unusable; cloning afresh", self.workdir)
            return None
        return self._configure(repo)

    def _fresh_clone(self) -> git.Repo:
        assert self.workdir is not None
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        repo = git.Repo.clone_from(
            self.url,
            self.workdir,
            branch=self.branch,
            single_branch=True,
            no_checkout=True,
            env=self._env,
        )
        repo.git.update_environment(**self._env)
        return self._configure(repo)

    def _configure(self, repo: git.Repo) -> git.Repo:
        repo.git.config("core.quotepath", "off")
        repo.git.config("gc.auto", "0")
        repo.git.config("commit.gpgsign", "false")
        if self._local:
            self._borrow_objects(repo)
        return repo

    def _borrow_objects(self, repo: git.Repo) -> None:
        """Let the clone read a local remote's objects in place (``git clone --shared``).

        With the remote's object directory as an alternate, a commit another process pushed is
        readable here at once: catching up is a ref update in memory (``_fetch_unlocked``), not
        a `git fetch`. Git warns that a clone borrowing objects breaks when the source prunes
        objects it uses: this clone only ever points at the remote branch's history (reachable
        there) and at its own commits (stored here), and `gc.auto` is off in it.
        """
        objects = _local_path(self.url) / "objects"
        if not objects.is_dir():
            return
        info = Path(repo.git_dir) / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        alternates = info / "alternates"
        wanted = f"{objects.resolve()}\n"
        if not alternates.exists() or alternates.read_text() != wanted:
            alternates.write_text(wanted)

    def _abandon(self) -> None:
        """Give the slot back after a failed open, so that a retry takes the same slot."""
        self._tracking_sha = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def close(self) -> None:
        """Release the clone's processes and its slot (a later use opens it again)."""
        with self._lock:
            self._abandon()
            self._head = None
            if self._host_lock is not None:
                self._host_lock.close()
                self._host_lock = None

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self.open()
        assert self._repo is not None
        return self._repo

    # -- reads --------------------------------------------------------------------------------

    def head(self, *, fresh: bool = False) -> str:
        """Return the SHA at the head of the tracked branch on the remote."""
        now = time.monotonic()
        cached = self._head
        try:
            if self._local:
                # A local remote's ref is a file: reading it costs microseconds, so it is never
                # stale.
                sha = self._remote_head()
            else:
                # Asking a network remote costs a round trip: answer from the cache within the
                # TTL, and past it let one thread ask while the others keep answering from the
                # cache.
                if cached is not None and not fresh:
                    if now - self._head_at < self.head_ttl:
                        return cached
                    if not self._head_refresh.acquire(blocking=False):
                        return cached
                else:
                    self._head_refresh.acquire()
                try:
                    sha = self._remote_head()
                finally:
                    self._head_refresh.release()
            self._contact()
            if sha != cached and not self._has_commit(sha):
                with self._fetch_lock:
                    # Every reader of a new head gets here at once: only the first one fetches.
                    if not self._has_commit(sha):
                        self._fetch_unlocked()
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

    def _last_head(self, exc: Unavailable) -> str:
        """Return the last head this process knows, marking the remote as unreachable."""
        known = self._head or self._tracking_sha
        if known is None and self._repo is not None:
            known = self._rev_parse(f"refs/remotes/origin/{self.branch}")
        if known is None:
            raise exc
        self._lost(exc)
        return known

    def _contact(self) -> None:
        self._contact_at = time.time()
        if self._down is not None:
            log.warning("the Git remote %s answers again", self.display_url)
            self._down = None

    def _lost(self, exc: Unavailable) -> None:
        if self._down is None:
            log.warning("%s; reads answer from the last head seen, writes answer 503", exc.message)
            self._down = Outage(since=time.time(), message=exc.message)

    def outage(self) -> Outage | None:
        """Why and since when reads answer from the last head seen; None while all is well."""
        return self._down

    def contact_age(self) -> float | None:
        """Seconds since the remote last answered this process (None: it never did)."""
        return None if self._contact_at is None else max(0.0, time.time() - self._contact_at)

    def _remote_head(self) -> str:
        ref = f"refs/heads/{self.branch}"
        try:
            if self._local:
                path = _local_path(self.url)
                found = _read_ref(path, ref)
                if found is not None:
                    return found
                if not path.is_dir():  # one stat, not two processes, per read while it is gone
                    raise Unavailable(self._local_remote_problem(), code="git_unavailable")
                out = subprocess.run(
                    ["git", "--git-dir", str(path), "rev-parse", "--verify", "-q", ref],
                    capture_output=True,
                    text=True,
                    check=False,
                    env={**os.environ, **self._env},
                )
                sha = out.stdout.strip()
                if out.returncode != 0 or not sha:
                    raise Unavailable(self._local_remote_problem(), code="git_unavailable")
                return sha
            out_text = self.repo.git.ls_remote("origin", ref, kill_after_timeout=_NETWORK_TIMEOUT)
        except git.GitCommandError as exc:
            raise Unavailable(
                f"Git remote {self.display_url} is unreachable: {_stderr(exc)}; check that it "
                "is up and that STAGEFLOW_GIT_URL and the credentials are right",
                code="git_unavailable",
                details={"part": "remote"},
            ) from exc
        if not out_text.strip():
            raise Unavailable(
                f"branch {self.branch} not found in {self.display_url}", code="git_unavailable"
            )
        return out_text.split()[0]

    def _local_remote_problem(self) -> str:
        path = _local_path(self.url)
        if not path.exists():
            return (
                f"Git remote {self.display_url} is unreachable: {path} does not exist; "
                "check STAGEFLOW_GIT_URL"
            )
        probe = subprocess.run(
            ["git", "--git-dir", str(path), "rev-parse", "--git-dir"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **self._env},
        )
        if probe.returncode != 0:
            return (
                f"Git remote {self.display_url} is unreachable: {path} is not a Git repository; "
                "check STAGEFLOW_GIT_URL"
            )
        return f"branch {self.branch} not found in {self.display_url}; check STAGEFLOW_GIT_BRANCH"

    def _has_commit(self, sha: str) -> bool:
        try:
            with self._lock:
                self.repo.odb.info(bytes.fromhex(sha))
        except (ValueError, Exception):  # gitdb raises BadObject / ValueError
            return False
        return True

    def resolve(self, revision: str) -> str:
        """Return the full SHA of a commit of the tracked branch named by a full or short SHA."""
        if (
            not revision
            or not all(c in "0123456789abcdefABCDEF" for c in revision)
            or not 4 <= len(revision) <= 40
        ):
            raise NotFound(f"{revision!r} is not a commit SHA; send 4 to 40 hex digits")
        head = self.head()
        # `rev-parse` and `merge-base` are processes of their own: no lock needed (the object
        # database lock is for GitPython's shared `cat-file` helpers only).
        sha = self._rev_parse(revision)
        if sha is None:  # perhaps pushed since our last fetch
            self._fetch()
            sha = self._rev_parse(revision)
        # The clone also holds commits the remote never took (pushes that lost a race) and
        # whatever else was fetched; only history of the tracked branch counts.
        if sha is None or not self._is_ancestor(sha, head):
            raise NotFound(
                f"revision {revision} is not a commit of {self.display_url} (branch "
                f"{self.branch}); send a full or unique short SHA of the tracked branch"
            )
        return sha

    def _rev_parse(self, revision: str) -> str | None:
        try:
            return str(self.repo.git.rev_parse("--verify", "-q", f"{revision.lower()}^{{commit}}"))
        except git.GitCommandError:
            return None

    def _is_ancestor(self, sha: str, head: str) -> bool:
        status, _, _ = self.repo.git.merge_base(
            "--is-ancestor", sha, head, with_extended_output=True, with_exceptions=False
        )
        return bool(status == 0)

    def blob_id(self, revision: str, path: str) -> str | None:
        """Return the blob SHA of ``path`` at ``revision`` (None when it does not exist)."""
        key = (revision, path)
        cached = self._blob_ids.get(key, _MISSING)  # one lookup: another thread may evict
        if cached is not _MISSING:
            return cached
        with self._lock:
            commit = self._commit_at(revision)
            try:
                blob: Any = commit.tree / path
                found: str | None = blob.hexsha if blob.type == "blob" else None
            except KeyError:
                found = None
            self._remember(self._blob_ids, key, found)
        return found

    def _commit_at(self, revision: str) -> git.Commit:
        try:
            commit = self.repo.commit(revision)
            commit.tree  # noqa: B018 - a full SHA is resolved lazily; load it here, inside the try
        except (ValueError, ODBError):
            self._objects_gone()
            raise NotFound(
                f"revision {revision} is not in the clone of {self.display_url}",
                code="revision_not_found",
            ) from None
        return commit

    def _objects_gone(self) -> None:
        """Raise ``Unavailable`` when an object is missing because the remote is unreachable.

        A clone of a local remote borrows its objects (``_borrow_objects``): with the remote moved
        away, what was not read before is gone until it is back. That is the remote's outage,
        not a revision that does not exist.
        """
        down = self._down
        if down is not None:
            raise Unavailable(
                f"{down.message}; this part of the last head was not read before the remote "
                "went away and cannot be read until it is back",
                code="git_unavailable",
                details={"part": "remote"},
            )

    def read_blob(self, blob_id: str) -> bytes:
        # A blob id names its contents forever, so hot reads never touch `cat-file` at all.
        with self._blobs_lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
                return data
        try:
            with self._lock:
                data = bytes(self.repo.odb.stream(bytes.fromhex(blob_id)).read())
        except (ValueError, ODBError):
            self._objects_gone()
            raise
        if len(data) <= self._blob_cache_bytes // 4 and _is_object_id(blob_id):
            with self._blobs_lock:
                if blob_id not in self._blobs:
                    self._blobs[blob_id] = data
                    self._blobs_size += len(data)
                    while self._blobs_size > self._blob_cache_bytes:
                        _, dropped = self._blobs.popitem(last=False)
                        self._blobs_size -= len(dropped)
        return data

    def read(self, revision: str, path: str) -> str | None:
        """Return the text of ``path`` at ``revision``, or None when it does not exist."""
        blob = self.blob_id(revision, path)
        return None if blob is None else self.read_blob(blob).decode("utf-8")

    def last_change(self, revision: str, paths: Iterable[str]) -> str | None:
        """Return the newest commit at or before ``revision`` that touched any of ``paths``."""
        key = (revision, tuple(sorted(paths)))
        cached = self._last_change.get(key, _MISSING)
        if cached is not _MISSING:
            return cached
        with self._lock:
            sha = self._commit_at(revision).hexsha
        pathspecs = [f":(literal){path}" for path in key[1]]
        try:
            out = self.repo.git.log("-1", "--format=%H", sha, "--", *pathspecs).strip()
        except git.GitCommandError:
            self._objects_gone()
            raise
        found = out or None
        self._remember(self._last_change, key, found)
        return found

    def tree_entries(self, revision: str, path: str) -> dict[str, str]:
        """Return ``{name: object SHA}`` of the entries of directory ``path`` at ``revision``."""
        key = (revision, path + "/*")
        cached = self._blob_ids.get(key, _MISSING)
        if cached is not _MISSING:
            return dict(cached)
        with self._lock:
            commit = self._commit_at(revision)
            try:
                tree: Any = commit.tree / path
                found = {item.name: item.hexsha for item in tree} if tree.type == "tree" else {}
            except KeyError:
                found = {}
            self._remember(self._blob_ids, key, tuple(found.items()))
        return found

    def tree_id(self, revision: str, path: str) -> str | None:
        """Return the tree SHA of directory ``path`` at ``revision`` (None when absent)."""
        key = (revision, path + "/")
        cached = self._blob_ids.get(key, _MISSING)
        if cached is not _MISSING:
            return cached
        with self._lock:
            commit = self._commit_at(revision)
            try:
                tree: Any = commit.tree / path
                found: str | None = tree.hexsha if tree.type == "tree" else None
            except KeyError:
                found = None
            self._remember(self._blob_ids, key, found)
        return found

    def find_trailer(self, key: str, value: str, *, limit: int = 2000) -> str | None:
        """Return the newest commit on the remote branch carrying trailer ``key: value``."""
        self._fetch()
        out = self.repo.git.log(
            f"-{limit}",
            "--format=%H",
            "--fixed-strings",
            f"--grep={key}: {value}",
            self._tracking(),
        ).split()
        for sha in out:
            with self._lock:
                trailers = self.repo.commit(sha).trailers_dict
            if value in trailers.get(key, []):
                return sha
        return None

    def parent_of(self, revision: str) -> str | None:
        """Return the first parent of a commit (None for the root commit)."""
        with self._lock:
            parents = self._commit_at(revision).parents
            return parents[0].hexsha if parents else None

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        if not _is_full_sha(key[0]):  # a branch name or short SHA can come to mean another commit
            return
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    # -- writes -------------------------------------------------------------------------------

    def change(
        self,
        operation: Callable[[_Workspace], Change[T]],
        *,
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
        started = time.perf_counter()
        self._check_disk()
        if self._down is not None:
            # Known unreachable: ask again (it may be back) before rendering and committing
            # anything, so that a write during an outage fails at once, naming the remote.
            try:
                self._remote_head()
            except Unavailable as exc:
                raise Unavailable(
                    f"{exc.message}; writes need the remote — nothing was committed "
                    "(reads answer from the last head seen meanwhile)",
                    code="git_unavailable",
                    details={"part": "remote"},
                ) from exc
            self._contact()
        write = _Write(operation, actor, trailers)
        with self._queue_lock:
            self._queue.append(write)
        # Only the write locks are held for the whole write: reads (which take `_lock` for one
        # object lookup at a time) go on while the operations render and push.
        with self._write_lock:
            while not write.done:  # an earlier leader may have written it meanwhile
                batch: list[_Write[Any]] = []
                try:
                    with self._host_write_lock() as waited, self._write_turn() as queued:
                        # Taken once the turn is ours: the writes that queued while this
                        # process waited for it (behind other processes and replicas) go too.
                        batch = self._take_batch()
                        self._write_batch(batch, waited or queued)
                except BaseException as exc:
                    if not batch:  # no turn (e.g. no database): the waiting writes fail alike
                        batch = self._take_batch()
                    for other in batch:  # e.g. the push failed: each write of the batch did
                        if not other.done:
                            other.settle(exc)
                    if not isinstance(exc, Exception):
                        raise
        try:
            committed = write.outcome()
        except Exception as exc:
            translated = self._infrastructure(exc)
            if translated is exc:
                raise
            raise translated from exc
        WRITE_SECONDS.observe(time.perf_counter() - started)
        return committed

    def free_bytes(self) -> int:
        """Bytes free on the file system of the clones (the data dir)."""
        self.clones_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.clones_dir).free

    def _check_disk(self) -> None:
        if self.min_free_bytes <= 0:
            return
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise Unavailable(
                f"the disk holding {self.clones_dir} is nearly full ({free // 2**20} MiB free, "
                f"STAGEFLOW_MIN_FREE_DISK_MB asks for {self.min_free_bytes // 2**20}); free space "
                "there or grow the volume; nothing was committed",
                code="disk_full",
                details={"part": "disk", "free_bytes": free},
            )

    def _infrastructure(self, exc: Exception) -> Exception:
        """Turn a failure of the machine under a write (disk, clone) into a 503 naming it."""
        if isinstance(exc, StageflowError):
            return exc
        text = redact(
            f"{exc.stderr or ''} {exc.stdout or ''}"
            if isinstance(exc, git.GitCommandError)
            else str(exc)
        )
        number = exc.errno if isinstance(exc, OSError) else None
        if number in (errno.ENOSPC, errno.EDQUOT) or any(
            sign in text for sign in ("No space left on device", "Disk quota exceeded")
        ):
            return Unavailable(
                f"the disk holding {self.clones_dir} is full ({' '.join(text.split())[:200]}); "
                "free space there or grow the volume, then try again; nothing was committed",
                code="disk_full",
                details={"part": "disk"},
            )
        if number in (errno.EROFS, errno.EACCES, errno.EPERM) or "Read-only file system" in text:
            return Unavailable(
                f"cannot write the working clone under {self.clones_dir}: "
                f"{' '.join(text.split())[:200]}; make STAGEFLOW_DATA_DIR writable for the user "
                "Stageflow runs as; nothing was committed",
                code="disk_unwritable",
                details={"part": "disk"},
            )
        if isinstance(exc, git.GitCommandError | GitFailed):
            return Unavailable(
                f"git failed in the working clone {self.workdir}: {' '.join(text.split())[:300]}; "
                "nothing was committed — if it keeps failing, stop Stageflow and delete "
                f"{self.clones_dir} (it only caches the remote)",
                code="clone_unusable",
                details={"part": "disk"},
            )
        return exc

    def _take_batch(self) -> list[_Write[Any]]:
        with self._queue_lock:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
        return batch

    def _write_batch(self, batch: list[_Write[Any]], waited: bool) -> None:
        """Apply, commit and push ``batch`` (in order); settle every write of it."""
        base = self._fresh_base(self._tracking(), waited=waited)
        conflicts: list[str] = []
        for attempt in range(1, self.push_attempts + 1):
            applied = self._apply_batch(batch, base)
            if applied is None:  # a refusal decided on a stale base: again, on the new head
                base = self._tracking()
                continue
            head, settled = applied
            try:  # nothing to push when every write failed or changed nothing
                pushed, why = (True, "") if head == base else self._push(head, base)
            except BaseException:
                self._restore(base)
                raise
            if pushed:
                if head != base:
                    self._head, self._head_at = head, time.monotonic()
                    COMMITS_PER_PUSH.observe(
                        sum(isinstance(done, Committed) and done.committed for _, done in settled)
                    )
                for write, outcome in settled:
                    write.settle(outcome)
                return
            self._clean_at = None  # our unpushed commits are in the tree; go back on retry
            conflicts.append(why)
            log.info("push rejected (attempt %d), re-applying on the new head", attempt)
            try:
                self._fetch()
            except BaseException:
                self._restore(base)
                raise
            base = self._tracking()
        self._restore(base)
        raise WriteConflict(
            f"the remote kept changing: {self.push_attempts} pushes in a row were rejected "
            "because others pushed first; nothing was committed — try again",
            details={"attempts": self.push_attempts, "rejections": conflicts[-3:]},
        )

    def _apply_batch(
        self, batch: list[_Write[Any]], base: str
    ) -> tuple[str, list[tuple[_Write[Any], Any]]] | None:
        """Commit each write's operation on top of the last; return the head and the outcomes.

        A write whose operation fails leaves no trace (the tree goes back to the commit before
        it) and the next one goes on. None when a refusal may be due to a stale ``base``.
        """
        head = base
        settled: list[tuple[_Write[Any], Any]] = []
        for write in batch:
            self._reset(head)
            workspace = _Workspace(
                Path(self.repo.working_tree_dir or "."), head, blob_of=self.blob_id
            )
            try:
                change = write.operation(workspace)
                sha = self._commit(workspace, change, write.actor, write.trailers)
            except StageflowError as exc:
                self._restore(head)
                # Writes start optimistically from the last head this clone knows. A refusal
                # (unknown flag, nothing to change, policy) decided on a stale base would be
                # a wrong answer: decide again on the remote's head.
                if isinstance(exc, Unavailable) or not self._behind(base):
                    settled.append((write, exc))
                    continue
                return None
            except Exception as exc:
                self._restore(head)
                settled.append((write, exc))
                continue
            except BaseException:
                self._restore(base)
                raise
            if sha is None:
                # Nothing to change on this head; make sure the remote has not moved, or a
                # toggle another process made meanwhile would be silently undone ("lost").
                if head == base and self._behind(base):
                    return None
                settled.append(
                    (write, Committed(revision=head, result=change.result, committed=False))
                )
                continue
            head = sha
            settled.append((write, Committed(revision=sha, result=change.result, committed=True)))
        return head, settled

    @contextlib.contextmanager
    def _host_write_lock(self) -> Iterator[bool]:
        """Take turns with the other processes of this host that write through this data dir.

        Each gunicorn worker has its own clone; without this, two workers' writes race for the
        push and the loser renders and commits again (or answers 409 after too many losses).
        Replicas on other hosts queue on ``write_turn`` (taken inside this lock) when there is
        one, else on the push's compare-and-swap alone. Yields whether the
        lock was busy (someone else of this host was writing).
        """
        if self._host_lock is None:
            self.clones_dir.mkdir(parents=True, exist_ok=True)
            self._host_lock = open(self.clones_dir / "write.lock", "a")  # noqa: SIM115
        handle = self._host_lock
        waited = False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            # Polled, not blocking: a blocking flock cannot time out, and a writer stuck on an
            # unreachable remote must not hang every other worker's writes for good.
            deadline = time.monotonic() + self.host_lock_timeout
            delay = 0.0005
            while True:
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WriteConflict(
                            f"another process of this host has been writing to "
                            f"{self.display_url} for over {self.host_lock_timeout:g} s; "
                            "nothing was committed — try again",
                            details={"waited_seconds": self.host_lock_timeout},
                        ) from None
        try:
            yield waited
        finally:
            with contextlib.suppress(OSError, ValueError):  # closed by close() meanwhile
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _fresh_base(self, base: str, *, waited: bool) -> str:
        """Return the remote's head when it is cheap to know and has moved past ``base``.

        The workers of one host take turns (the host lock), so after a wait the remote has most
        likely moved: starting from its head beats losing the push race and rendering again. A
        local remote's head is a file read, so there it is always worth a look.
        """
        if self._local:
            remote = _read_ref(_local_path(self.url), f"refs/heads/{self.branch}")
        elif waited:
            remote = self._remote_head()
        else:
            remote = None
        if remote is None or remote == base:
            return base  # unknown or current: the push's compare-and-swap has the last word
        self._fetch()
        return self._tracking()

    def _behind(self, base: str) -> bool:
        """Fetch when the remote moved past ``base``; True when it had."""
        if self._remote_head() == base:
            return False
        self._fetch()
        return self._tracking() != base

    def _restore(self, base: str) -> None:
        """Put the clone back at ``base`` after a failed write, without hiding the failure."""
        self._clean_at = None
        try:
            self._reset(base)
        except Exception:  # the next write resets again; the original error matters more
            log.exception("cannot reset the clone %s to %s", self.workdir, base)

    def _changed(self, workspace: _Workspace) -> list[str]:
        """Return the written paths whose contents differ from the base commit's."""
        changed = []
        for path in sorted(workspace.written):
            before = self.blob_id(workspace.revision, path)
            if before is not None and self._other_size(workspace.root / path, before):
                changed.append(path)  # another size: changed, without reading and hashing it
                continue
            try:
                data: bytes | None = (workspace.root / path).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                data = None
            if data is None:
                if before is not None:
                    changed.append(path)
            elif before is None or _object_id(b"blob", data, before) != before:
                changed.append(path)
        return changed

    def _other_size(self, file: Path, blob_id: str) -> bool:
        """True when ``file`` is large and its size is not the blob's (so it differs from it).

        Asking the object database (a round trip to the `cat-file` helper) pays only for large
        files: hashing a 1 MB flags.json again costs ~1 ms, a small file's hash microseconds.
        """
        try:
            size = file.stat().st_size
        except OSError:
            return False
        if size < _SIZE_CHECK_FROM:
            return False
        try:
            with self._lock:
                return bool(self.repo.odb.info(bytes.fromhex(blob_id)).size != size)
        except (ValueError, ODBError):
            return False

    def _commit(
        self, workspace: _Workspace, change: Change[Any], actor: str, trailers: Mapping[str, str]
    ) -> str | None:
        """Commit what the operation wrote; None when that changed nothing."""
        if not workspace.written:
            return None
        # Decided here, from the base's blob ids, rather than by `update-index` + `diff --cached`:
        # two processes fewer on every write.
        paths = self._changed(workspace)
        if not paths:  # written back exactly as it was: not worth an empty commit
            self._clean_at = None
            return None
        base = workspace.revision
        added = [path for path in paths if self.blob_id(base, path) is None]
        lines = [change.message.rstrip(), ""]
        # One line per trailer: a newline in a value would forge further trailers.
        trailers = {**change.trailers, **trailers}  # the caller's win (its change id, actor)
        lines += [f"{key}: {_one_line(value)}" for key, value in trailers.items()]
        author = _one_line(actor.replace("<", "").replace(">", "")) or "unknown"
        self._clean_at = None  # from here on the index or HEAD may move
        if added:  # `git commit -- <paths>` takes only paths the index already knows
            self.repo.git.update_index("--add", "--", *added)
        sha = self._commit_with_message("\n".join(lines) + "\n", author, paths, base)
        if sha is None:  # a clean filter of .gitattributes made the bytes equal after all
            return None
        self._clean_at = sha  # HEAD moved; the tree is clean at the new commit
        return sha

    def _commit_with_message(
        self, message: str, author: str, paths: list[str], base: str
    ) -> str | None:
        """Commit ``paths`` as they are in the working tree; return the new commit's SHA."""
        assert self.workdir is not None
        done = subprocess.run(
            # `--include` stages these paths from the working tree (also deletions) and commits
            # the index: one process instead of `update-index` + `commit`. The index is the base
            # commit's (the clone is reset to it before every write, and `_changed` lists every
            # path the operation changed), so this commits exactly these paths, as `--only`
            # would; but `--only` builds a second, temporary index from HEAD and so hashes each
            # file twice (1 MB of flags.json: ~2 ms more).
            [
                "git",
                *_BIG_FILE_OPTIONS,
                "commit",
                "-q",
                "--no-verify",
                "--no-gpg-sign",
                "-F",
                "-",
                "--include",
                "--",
                *paths,
            ],
            input=message,
            text=True,
            cwd=self.workdir,
            check=False,
            capture_output=True,
            env={
                **os.environ,
                **self._env,
                "GIT_LITERAL_PATHSPECS": "1",  # a path is a path, never a glob
                "GIT_AUTHOR_NAME": author,
                "GIT_AUTHOR_EMAIL": "stageflow@localhost",
            },
        )
        head = self._clone_head()
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            said = done.stdout + done.stderr
            if head == base and ("nothing to commit" in said or "no changes added" in said):
                return None
            # Not the client's doing (a hook, a full disk): `change` names the part in a 503.
            raise GitFailed(f"git commit failed in {self.workdir}: {output}")
        return head

    def _clone_head(self) -> str:
        """Return the commit the clone's (detached) HEAD is at, without a `rev-parse`."""
        assert self.workdir is not None
        found = _read_ref(self.workdir / ".git", "HEAD")
        return found if found is not None else str(self.repo.git.rev_parse("HEAD"))

    def _push(self, sha: str, base: str) -> tuple[bool, str]:
        started = time.perf_counter()
        try:
            # The lease makes the push a compare-and-swap on the remote: it lands only while the
            # branch is still at our base. A plain push would also take a fast-forward over a
            # branch someone rewound (force-pushed back), bringing the removed commits back.
            with self._fetch_lock:
                self.repo.git.execute(
                    [
                        self.repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git",
                        *_BIG_FILE_OPTIONS,
                        *(_LOCAL_PUSH_OPTIONS if self._local else ()),
                        "push",
                        "--porcelain",
                        f"--force-with-lease=refs/heads/{self.branch}:{base}",
                        "origin",
                        f"{sha}:refs/heads/{self.branch}",
                    ]
                )
                # A successful push moves refs/remotes/origin/<branch> itself (the clone's fetch
                # refspec maps the branch); set it only if it did not, so that a read by branch
                # name and `find_trailer` see what we just pushed.
                tracking = f"refs/remotes/origin/{self.branch}"
                assert self.workdir is not None
                if _read_ref(self.workdir / ".git", tracking) != sha:
                    self.repo.git.update_ref(tracking, sha)
                self._tracking_sha = sha
        except git.GitCommandError as exc:
            text = f"{exc.stdout or ''} {exc.stderr or ''}"
            if _lost_race(text):
                PUSH_SECONDS.labels("rejected").observe(time.perf_counter() - started)
                return False, _stderr(exc) or redact(text.strip())[:500]
            PUSH_SECONDS.labels("failed").observe(time.perf_counter() - started)
            raise self._push_refused(_stderr(exc)) from exc
        self._contact()
        PUSH_SECONDS.labels("ok").observe(time.perf_counter() - started)
        return True, ""

    def _push_refused(self, why: str) -> Unavailable:
        """The error of a push the remote did not take for another reason than a lost race."""
        if any(sign in why.lower() for sign in _READ_ONLY_SIGNS):
            return Unavailable(
                f"the Git remote {self.display_url} refuses pushes to branch {self.branch}: "
                f"{why}; give the credentials Stageflow uses (STAGEFLOW_GIT_TOKEN, "
                "STAGEFLOW_GIT_SSH_KEY or the URL's) write access to it; nothing was committed",
                code="git_read_only",
                details={"part": "remote"},
            )
        error = Unavailable(
            f"cannot push to {self.display_url}: {why}; nothing was committed — check that the "
            "remote is up and try again",
            code="git_unavailable",
            details={"part": "remote"},
        )
        self._lost(error)
        return error

    def check_writable(self) -> str:
        """Say how the remote takes pushes; ``Unavailable`` naming why it would not.

        A local remote: its refs and objects directories are writable by this process. A network
        remote: a dry-run push of the branch onto itself, which authenticates and asks for
        write access (receive-pack) without sending or changing anything.
        """
        if self._local:
            path = _local_path(self.url)
            if not path.is_dir():
                raise Unavailable(self._local_remote_problem(), code="git_unavailable")
            for part in ("objects", "refs/heads"):
                if not os.access(path / part, os.W_OK | os.X_OK):
                    raise Unavailable(
                        f"the Git remote {self.display_url} is read-only for this process "
                        f"({path / part} is not writable); make it writable for the user "
                        "Stageflow runs as",
                        code="git_read_only",
                        details={"part": "remote"},
                    )
            return "writable (local)"
        head = self.head(fresh=True)
        if self._down is not None:
            raise Unavailable(self._down.message, code="git_unavailable")
        try:
            self.repo.git.push(
                "--dry-run",
                "--porcelain",
                "origin",
                f"{head}:refs/heads/{self.branch}",
                kill_after_timeout=_NETWORK_TIMEOUT,
            )
        except git.GitCommandError as exc:
            raise self._push_refused(_stderr(exc)) from exc
        return "writable (a dry-run push was accepted)"

    def _fetch(self) -> None:
        with self._fetch_lock:  # a reader's and a writer's fetch must not race for the ref lock
            self._fetch_unlocked()

    def _fetch_unlocked(self) -> None:
        tracking = f"refs/remotes/origin/{self.branch}"
        if self._local:
            # The remote's objects are ours too (_borrow_objects): knowing its head is enough.
            # The ref file on disk may lag; everything here reads the SHA kept in memory.
            remote = _read_ref(_local_path(self.url), f"refs/heads/{self.branch}")
            if remote is not None and self._has_commit(remote):
                self._tracking_sha = remote
                return
        try:
            self.repo.git.fetch(
                "-q", "--no-tags", "origin", f"+refs/heads/{self.branch}:{tracking}"
            )
        except git.GitCommandError as exc:
            error = Unavailable(
                f"cannot fetch from {self.display_url}: {_stderr(exc)}; check that the remote "
                "is up and that STAGEFLOW_GIT_URL and the credentials are right",
                code="git_unavailable",
                details={"part": "remote"},
            )
            self._lost(error)
            raise error from exc
        self._contact()
        assert self.workdir is not None
        self._tracking_sha = _read_ref(self.workdir / ".git", tracking) or str(
            self.repo.git.rev_parse(tracking)
        )

    def _tracking(self) -> str:
        """Return refs/remotes/origin/<branch>: the remote head as of our last fetch or push."""
        sha = self._tracking_sha
        if sha is None:
            sha = self._tracking_sha = str(
                self.repo.git.rev_parse(f"refs/remotes/origin/{self.branch}")
            )
        return sha

    def _reset(self, revision: str) -> None:
        # `_clean_at` is the commit the working tree is known to match exactly; skipping the
        # checkout then saves two subprocesses on every write. A tree known clean at another
        # commit has no stray files: the checkout alone moves it.
        if self._clean_at == revision:
            return
        clean = self._clean_at is not None
        self._clean_at = None
        self.repo.git.checkout("-q", "-f", "--detach", revision)
        if not clean:
            self.repo.git.clean("-q", "-f", "-d", "-x")
        self._clean_at = revision


# What git and Git hosts say when credentials may read but not push (compared in lower case).
_READ_ONLY_SIGNS = (
    "url returned 403",  # git over HTTP(S) ("... returned error: 403" in newer versions)
    "url returned error: 403",
    "url returned 401",
    "url returned error: 401",
    "permission denied",  # ssh, file systems
    "permission to",  # GitHub: "Permission to org/repo denied to user"
    "not allowed to push",  # GitLab
    "read-only",
    "read only",
    "service not enabled",  # git daemon without receive-pack
    "authentication failed",
    "insufficient permission",
)


class GitFailed(RuntimeError):
    """A git command in the working clone failed for a reason of the machine (hook, disk)."""


@contextlib.contextmanager
def _no_turn() -> Iterator[bool]:
    yield False


def _lost_race(text: str) -> bool:
    """True when a push failed only because someone else moved the branch first."""
    if "[rejected]" in text:  # "fetch first", "non-fast-forward", "stale info" (the lease)
        return True
    # Two pushes that pass the remote's checks at the same moment: the loser cannot take the ref
    # lock, or finds the ref moved under it ("cannot lock ref ... but expected ...").
    return "[remote rejected]" in text and any(
        why in text
        for why in ("failed to update ref", "failed to lock", "cannot lock ref", "but expected")
    )


def _is_full_sha(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _stderr(exc: git.GitCommandError) -> str:
    # str(exc) holds the command line, with the remote URL as given (credentials and all).
    text = (exc.stderr or "").strip() or str(exc)
    for prefix in ("stderr:", "error:", "fatal:"):
        text = text.replace(prefix, "")
    return redact(" ".join(text.split()))[:500]
