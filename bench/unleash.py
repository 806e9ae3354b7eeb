"""Unleash 8 as the peer: installed from npm into ``bench/.cache``, run against local PostgreSQL.

Unleash 8 needs Node.js 22; where the machine's node is older, the `node` package from npm (the
official binary, shipped inside the registry package) is installed next to it. The server gets
its own database, created here and dropped when it stops, and two API tokens through its
``INIT_ADMIN_API_TOKENS`` / ``INIT_BACKEND_API_TOKENS`` settings. Its per-minute rate limits on
the SDK API are raised out of the way (we measure its throughput, not its limiter); everything
else is its default configuration. Nothing in it calls outside 127.0.0.1: the version check and
telemetry are off.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.client import Client, expect
from bench.gitops import ROOT, flag_key
from bench.processes import MemorySampler, children, free_port, stop_group

CACHE = ROOT / "bench" / ".cache" / "unleash"
PACKAGE = "unleash-server@8"
NODE_PACKAGE = "node@22"
PROJECT = "default"
ENVIRONMENT = "development"
PG_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://stageflow:stageflow@127.0.0.1:5432/postgres"
)


class UnleashUnavailable(RuntimeError):
    """Unleash cannot be installed or started here; the message says exactly why."""


def _node_major(node: str) -> int:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return 0
    match = re.match(r"v(\d+)", out.stdout.strip())
    return int(match.group(1)) if match else 0


def install() -> dict[str, str]:
    """Install (once) Unleash 8 and a Node.js 22 into the cache; return their paths and versions."""
    server = CACHE / "node_modules" / "unleash-server"
    local_node = CACHE / "node_modules" / ".bin" / "node"
    system_node = shutil.which("node")
    packages = [PACKAGE]
    if not local_node.exists() and (system_node is None or _node_major(system_node) < 22):
        packages.append(NODE_PACKAGE)
    version = ""
    if (server / "package.json").exists():
        version = json.loads((server / "package.json").read_text()).get("version", "")
    if not version.startswith("8.") or (NODE_PACKAGE in packages):
        npm = shutil.which("npm")
        if npm is None:
            raise UnleashUnavailable("npm is not installed (apt-get install npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        manifest = CACHE / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "stageflow-bench-peers", "private": true}\n')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *packages],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise UnleashUnavailable(
                f"`npm install {' '.join(packages)}` failed: {done.stderr.strip()[-600:]}"
            )
        version = json.loads((server / "package.json").read_text()).get("version", "")
    node = str(local_node) if local_node.exists() else str(system_node)
    if _node_major(node) < 22:
        raise UnleashUnavailable(f"Unleash {version} needs Node.js 22 or later; {node} is older")
    return {
        "unleash": version,
        "node": node,
        "node_version": subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip(),
        "entry": str(server / "dist" / "server.js"),
    }


def _postgres(statement: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise UnleashUnavailable(f"PostgreSQL at {PG_URL.split('@')[-1]}: {exc}") from exc


def _backend_pids(database: str) -> list[int]:
    import psycopg

    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
    except psycopg.Error:
        return []
    return [int(row[0]) for row in rows]


class UnleashServer:
    """One Unleash on 127.0.0.1 with a database of its own; ``stop`` removes both."""

    def __init__(self, root: Path, installed: dict[str, str]) -> None:
        self.root = root
        self.installed = installed
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"bench_unleash_{os.getpid()}_{secrets.token_hex(3)}"
        self.admin_token = f"*:*.{secrets.token_hex(16)}"
        self.client_token = f"{PROJECT}:{ENVIRONMENT}.{secrets.token_hex(16)}"
        self.process: subprocess.Popen[bytes] | None = None
        self.memory: MemorySampler | None = None
        self.memory_with_db: MemorySampler | None = None
        self._created_db = False

    def start(self, timeout: float = 300.0) -> UnleashServer:
        _postgres(f'CREATE DATABASE "{self.database}"')
        self._created_db = True
        user_pass, _, host_db = PG_URL.split("://", 1)[1].rpartition("@")
        host_port = host_db.split("/", 1)[0]
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{user_pass}@{host_port}/{self.database}",
            "DATABASE_SSL": "false",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "INIT_ADMIN_API_TOKENS": self.admin_token,
            "INIT_BACKEND_API_TOKENS": self.client_token,
            "CHECK_VERSION": "false",
            "SEND_TELEMETRY": "false",
            "LOG_LEVEL": "warn",
            "SDK_API_RATE_LIMIT_PER_MINUTE": "1000000000",
            "TOKEN_AUTHENTICATION_RATE_LIMIT_PER_MINUTE": "1000000000",
            "NODE_ENV": "production",
        }
        log = (self.root / "unleash.log").open("wb")
        self.process = subprocess.Popen(
            [self.installed["node"], self.installed["entry"]],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        admin = self.admin()
        while True:
            if self.process.poll() is not None:
                raise UnleashUnavailable(f"unleash-server exited at start: {self.log_tail()}")
            try:
                if admin.get(f"/api/admin/projects/{PROJECT}/features").status == 200:
                    break
            except OSError:
                admin.close()
            if time.monotonic() > deadline:
                raise UnleashUnavailable(
                    f"unleash-server not ready in {timeout:.0f}s: {self.log_tail()}"
                )
            time.sleep(0.25)
        admin.close()
        self.memory = MemorySampler(self.node_pids).start()
        self.memory_with_db = MemorySampler(
            lambda: [*self.node_pids(), *_backend_pids(self.database)], interval=0.5
        ).start()
        return self

    def node_pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *children(self.process.pid, recursive=True)]

    def stop(self) -> dict[str, Any]:
        memory = self.memory.stop() if self.memory else {}
        with_db = self.memory_with_db.stop() if self.memory_with_db else {}
        if self.process is not None:
            stop_group(self.process)
            self.process = None
        if self._created_db:
            _postgres(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._created_db = False
        return {**memory, "with_postgres_backends": with_db}

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.root / "unleash.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    # -- API ------------------------------------------------------------------------------------

    def admin(self, *, keep_alive: bool = True) -> Client:
        return Client(self.url, {"Authorization": self.admin_token}, keep_alive=keep_alive)

    def client(self, *, keep_alive: bool = True) -> Client:
        return Client(self.url, {"Authorization": self.client_token}, keep_alive=keep_alive)

    def toggle_path(self, key: str, on: bool) -> str:
        return f"/api/admin/projects/{PROJECT}/features/{key}/environments/{ENVIRONMENT}/" + (
            "on" if on else "off"
        )

    def create_flags(self, count: int) -> None:
        """The same flags as ours: boolean, half of them ON in development."""
        admin = self.admin()
        for i in range(count):
            key = flag_key(i)
            expect(
                admin.post(
                    f"/api/admin/projects/{PROJECT}/features",
                    {"name": key, "type": "release", "description": f"Benchmark flag {i}"},
                ),
                200,
                201,
                what=f"create {key} in Unleash",
            )
            if i % 2 == 0:
                expect(admin.post(self.toggle_path(key, True)), 200, what=f"enable {key}")
        admin.close()

    def enabled(self, client: Client, key: str) -> bool | None:
        answer = client.get("/api/client/features")
        if answer.status != 200:
            return None
        for feature in answer.json().get("features", []):
            if feature.get("name") == key:
                return bool(feature.get("enabled"))
        return None
