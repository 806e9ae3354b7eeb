"""How git runs for Stageflow: its fixed environment, authentication, URLs, and the seed remote.

Everything here is a pure function of settings (no clone, no lock), so that the composition root
and the tests can use it without opening a repository.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

from stageflow.domain.errors import StageflowError
from stageflow.logs import redact

# Network operations give up instead of hanging a read or a write on a dead connection.
NETWORK_TIMEOUT = 15

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",  # bytes/s below which an HTTP transfer ...
    "GIT_HTTP_LOW_SPEED_TIME": str(NETWORK_TIMEOUT),  # ... for this long is given up
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
LOCAL_PUSH_OPTIONS = ("-c", "pack.window=0", "-c", "pack.compression=1")
# A commit stores a file from this size on (a 5,000-flag flags.json) straight into a pack of its
# own, deflated once at level 1, instead of as a loose object: the push then sends that packed
# data as it is instead of inflating and deflating it again (~2.5 ms less on 1 MB). Given to the
# commit and the push only: in the clone's config it would make `git diff` call such files binary.
BIG_FILE_OPTIONS = ("-c", "core.bigFileThreshold=256k", "-c", "pack.compression=1")


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
        env["GIT_SSH_COMMAND"] = _ssh_command(ssh_key, ssh_known_hosts)
    if token:
        env.update(_token_env(token, username))
    return env


def _ssh_command(ssh_key: str, ssh_known_hosts: str | None) -> str:
    command = [
        "ssh",
        "-i",
        shlex.quote(ssh_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={NETWORK_TIMEOUT}",
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
    return " ".join(command)


def _token_env(token: str, username: str) -> dict[str, str]:
    return {
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


def is_local(url: str) -> bool:
    """True when the remote is a path on this host (read as files, not asked over a network)."""
    return ("://" not in url and ":" not in url.split("/", 1)[0]) or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url)


def stderr_of(exc: git.GitCommandError) -> str:
    """Return what a failed git command said, fit to show (no URL credentials, one line)."""
    # str(exc) holds the command line, with the remote URL as given (credentials and all).
    text = (exc.stderr or "").strip() or str(exc)
    for prefix in ("stderr:", "error:", "fatal:"):
        text = text.replace(prefix, "")
    return redact(" ".join(text.split()))[:500]


def one_line(value: object) -> str:
    return " ".join(str(value).split())


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
    with tempfile.TemporaryDirectory(prefix="stageflow-seed-") as tmp:
        staging = _seeded(seed_dir, Path(tmp), branch)
        # Move into place only when complete, so a crash never leaves a half-seeded remote. An
        # empty directory in the way would make `move` put the repository *inside* it.
        if bare.is_dir():
            bare.rmdir()
        shutil.move(str(staging), str(bare))
    return True


def _seeded(seed_dir: Path, tmp: Path, branch: str) -> Path:
    """Build the seeded bare repository under ``tmp``; return its path."""
    env = {
        **os.environ,
        **GIT_ENV,
        "GIT_AUTHOR_NAME": "Stageflow",
        "GIT_AUTHOR_EMAIL": "stageflow@localhost",
    }
    work = tmp / "work"
    shutil.copytree(seed_dir, work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    staging = tmp / "gitops.git"
    message = "Seed the GitOps repo from the starter overlays"
    for args, cwd in (
        (["git", "init", "-q", "--bare", "-b", branch, str(staging)], tmp),
        (["git", "init", "-q", "-b", branch], work),
        (["git", "add", "-A"], work),
        (["git", "commit", "-q", "--no-gpg-sign", "-m", message], work),
        (["git", "push", "-q", str(staging), f"HEAD:refs/heads/{branch}"], work),
    ):
        subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    return staging


@dataclass(frozen=True)
class Origin:
    """The remote a clone tracks: where it is, which branch, and git's environment for it.

    Its derived names are worked out once (the read path asks ``local`` on every call).
    """

    url: str
    branch: str
    # git's environment: the fixed part, and how to authenticate (``auth_env``).
    env: Mapping[str, str] = field(default_factory=lambda: dict(GIT_ENV))

    @cached_property
    def display_url(self) -> str:
        return redact_url(self.url)

    @cached_property
    def local(self) -> bool:
        return is_local(self.url)

    @cached_property
    def path(self) -> Path:
        """The remote's directory, for a local remote."""
        return local_path(self.url)

    @cached_property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @cached_property
    def tracking_ref(self) -> str:
        """The clone's ref of the remote branch (moved by every fetch and push)."""
        return f"refs/remotes/origin/{self.branch}"

    def process_env(self, **extra: str) -> dict[str, str]:
        """The environment of a git process started without GitPython."""
        return {**os.environ, **self.env, **extra}
