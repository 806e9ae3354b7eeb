"""A private, throw-away PostgreSQL server: initdb in a temp dir, a free loopback port.

One module for the test suite (the PostgreSQL variants, the fault suite that stops and freezes
its own server) and the benchmark's replica rows (`bench` imports it from the checkout). Its own
server, so stopping or freezing it touches nothing else. initdb refuses to run as root, so as
root every server command runs as the `postgres` user. Nothing here needs pytest.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

HOW_TO_GET = (
    "install the PostgreSQL server (Debian: apt-get install postgresql; it brings initdb and "
    "pg_ctl under /usr/lib/postgresql/<version>/bin), or set STAGEFLOW_TEST_PG_BIN to their "
    "directory, or STAGEFLOW_TEST_POSTGRES_URL to a server's URL"
)


class PostgresUnavailable(RuntimeError):
    """No private PostgreSQL can run here; the message says why and how to get one."""


def server_binaries(explicit: str | None = None) -> Path | None:
    """The directory holding initdb and pg_ctl: ``explicit`` (an env variable's value), else
    `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
        candidates.append(Path(done.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    return next((c for c in candidates if (c / "initdb").is_file()), None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def unavailable_reason(bin_dir: Path | None) -> str | None:
    """Why a private server cannot start here (None when it can)."""
    if bin_dir is None:
        return f"no PostgreSQL server binaries (initdb, pg_ctl) found: {HOW_TO_GET}"
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "as root, initdb runs as the `postgres` user, and there is none"
    if shutil.which("runuser") is None:
        return "as root, initdb runs as the `postgres` user through runuser, which is missing"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throw-away PostgreSQL server that its owner may stop, start, freeze and thaw.

    ``fast`` turns off fsync and full-page writes: right for tests (the data dies with the
    server), not for a benchmark that measures what production would see.
    """

    def __init__(
        self, bin_dir: Path | None = None, *, max_connections: int = 200, fast: bool = True
    ) -> None:
        found = bin_dir or server_binaries(os.environ.get("STAGEFLOW_TEST_PG_BIN"))
        if (reason := unavailable_reason(found)) is not None or found is None:
            raise PostgresUnavailable(reason or HOW_TO_GET)
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="stageflow-pg-", dir="/tmp"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 " + (
            f"-c max_connections={max_connections}"
        )
        if fast:
            self.options += " -c fsync=off -c full_page_writes=off"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        try:
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", "stageflow", "-N")
            self.start()
        except BaseException:
            self.close()
            raise

    def _run(self, program: str, *args: Any) -> None:
        command = [str(self.bin / program), *(str(a) for a in args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", self.data, "-l", log, "-o", self.options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                    pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """Stop every process of the server: connections stay open and nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://stageflow@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new, empty database on this server: its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
