"""Shared fixtures: a real bare Git remote, a real database, the app and a client."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stageflow.adapters.git import seed_bare_remote
from stageflow.config import Settings
from stageflow.services.scratch_folders import close_shelves
from tests.pgserver import PostgresUnavailable, PrivatePostgres

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "overlays"
# A PostgreSQL to use instead of a private one (the `postgres_url` fixture starts that).
POSTGRES_URL = os.environ.get("STAGEFLOW_TEST_POSTGRES_URL")


def git(*args: str, cwd: Path | str | None = None) -> str:
    """Run the git CLI like a person would (used to inspect and race the remote)."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Third Party",
        "GIT_AUTHOR_EMAIL": "third@example.com",
        "GIT_COMMITTER_NAME": "Third Party",
        "GIT_COMMITTER_EMAIL": "third@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture(scope="session", autouse=True)
def _kept_scratch_folders() -> Iterator[None]:
    """Remove the scratch folders kept between plays (xdist's workers end without ``atexit``)."""
    yield
    close_shelves()


@pytest.fixture
def gitops_remote(tmp_path: Path) -> Path:
    """A bare Git repository seeded from the starter overlays, as `make run` seeds it."""
    bare = tmp_path / "remote" / "gitops.git"
    seed_bare_remote(SEED, bare, "main")
    return bare


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The PostgreSQL server of the PostgreSQL variants: STAGEFLOW_TEST_POSTGRES_URL when set,
    else a private throw-away server started once for the session (about a second)."""
    if POSTGRES_URL:
        yield POSTGRES_URL
        return
    try:
        server = PrivatePostgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL variants: {exc}")
    with server:
        yield server.url()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite in a temp dir, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stageflow.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")  # started only if a test needs it
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, gitops_remote: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        git_url=str(gitops_remote),
        git_branch="main",
        git_head_ttl=0.0,
        admin_token="test-admin-token-0123456789",
    )
