"""Pushing to the remote: a compare-and-swap of the branch, and whether pushes are allowed."""

from __future__ import annotations

import os
import time

import git

from stageflow.adapters.git.environment import (
    BIG_FILE_OPTIONS,
    LOCAL_PUSH_OPTIONS,
    NETWORK_TIMEOUT,
    stderr_of,
)
from stageflow.adapters.git.metrics import PUSH_SECONDS
from stageflow.adapters.git.remote import RemoteHead
from stageflow.domain.errors import Unavailable
from stageflow.logs import redact

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


def lost_race(text: str) -> bool:
    """True when a push failed only because someone else moved the branch first."""
    if "[rejected]" in text:  # "fetch first", "non-fast-forward", "stale info" (the lease)
        return True
    # Two pushes that pass the remote's checks at the same moment: the loser cannot take the ref
    # lock, or finds the ref moved under it ("cannot lock ref ... but expected ...").
    return "[remote rejected]" in text and any(
        why in text
        for why in ("failed to update ref", "failed to lock", "cannot lock ref", "but expected")
    )


class GitPush:
    """Pushes the clone's commits to the remote branch, and says whether it may."""

    def __init__(self, remote: RemoteHead) -> None:
        self.remote = remote
        self.clone = remote.clone
        self.origin = remote.origin

    def push(self, sha: str, base: str) -> tuple[bool, str]:
        """Make ``sha`` the remote branch if it is still at ``base``.

        Returns (True, "") when it landed, (False, what the remote said) when someone else pushed
        first; raises ``Unavailable`` when the remote refused for another reason.
        """
        started = time.perf_counter()
        try:
            # The lease makes the push a compare-and-swap on the remote: it lands only while the
            # branch is still at our base. A plain push would also take a fast-forward over a
            # branch someone rewound (force-pushed back), bringing the removed commits back.
            with self.clone.fetch_lock:
                self._push_and_track(sha, base)
        except git.GitCommandError as exc:
            text = f"{exc.stdout or ''} {exc.stderr or ''}"
            if lost_race(text):
                PUSH_SECONDS.labels("rejected").observe(time.perf_counter() - started)
                return False, stderr_of(exc) or redact(text.strip())[:500]
            PUSH_SECONDS.labels("failed").observe(time.perf_counter() - started)
            raise self.refused(stderr_of(exc)) from exc
        self.clone.status.contact()
        PUSH_SECONDS.labels("ok").observe(time.perf_counter() - started)
        return True, ""

    def _push_and_track(self, sha: str, base: str) -> None:
        clone, origin = self.clone, self.origin
        repo = clone.repo
        repo.git.execute(
            [
                repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git",
                *BIG_FILE_OPTIONS,
                *(LOCAL_PUSH_OPTIONS if origin.local else ()),
                "push",
                "--porcelain",
                f"--force-with-lease={origin.branch_ref}:{base}",
                "origin",
                f"{sha}:{origin.branch_ref}",
            ]
        )
        # A successful push moves the tracking ref itself (the clone's fetch refspec maps the
        # branch); set it only if it did not, so that a read by branch name and `find_trailer`
        # see what we just pushed.
        assert clone.workdir is not None
        if clone.refs.read(clone.workdir / ".git", origin.tracking_ref) != sha:
            repo.git.update_ref(origin.tracking_ref, sha)
        clone.tracking_sha = sha

    def refused(self, why: str) -> Unavailable:
        """The error of a push the remote did not take for another reason than a lost race."""
        origin = self.origin
        if any(sign in why.lower() for sign in _READ_ONLY_SIGNS):
            return Unavailable(
                f"the Git remote {origin.display_url} refuses pushes to branch {origin.branch}: "
                f"{why}; give the credentials Stageflow uses (STAGEFLOW_GIT_TOKEN, "
                "STAGEFLOW_GIT_SSH_KEY or the URL's) write access to it; nothing was committed",
                code="git_read_only",
                details={"part": "remote"},
            )
        error = Unavailable(
            f"cannot push to {origin.display_url}: {why}; nothing was committed — check that the "
            "remote is up and try again",
            code="git_unavailable",
            details={"part": "remote"},
        )
        self.clone.status.lost(error)
        return error

    def check_writable(self) -> str:
        """Say how the remote takes pushes; ``Unavailable`` naming why it would not.

        A local remote: its refs and objects directories are writable by this process. A network
        remote: a dry-run push of the branch onto itself, which authenticates and asks for
        write access (receive-pack) without sending or changing anything.
        """
        if self.origin.local:
            return self._check_local()
        head = self.remote.head(fresh=True)
        down = self.clone.status.down
        if down is not None:
            raise Unavailable(down.message, code="git_unavailable")
        try:
            self.clone.repo.git.push(
                "--dry-run",
                "--porcelain",
                "origin",
                f"{head}:{self.origin.branch_ref}",
                kill_after_timeout=NETWORK_TIMEOUT,
            )
        except git.GitCommandError as exc:
            raise self.refused(stderr_of(exc)) from exc
        return "writable (a dry-run push was accepted)"

    def _check_local(self) -> str:
        path = self.origin.path
        if not path.is_dir():
            raise Unavailable(self.remote.local_remote_problem(), code="git_unavailable")
        for part in ("objects", "refs/heads"):
            if not os.access(path / part, os.W_OK | os.X_OK):
                raise Unavailable(
                    f"the Git remote {self.origin.display_url} is read-only for this process "
                    f"({path / part} is not writable); make it writable for the user "
                    "Stageflow runs as",
                    code="git_read_only",
                    details={"part": "remote"},
                )
        return "writable (local)"
