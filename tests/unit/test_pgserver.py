"""Finding PostgreSQL's server binaries for the private test server, and saying what is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pgserver import PostgresUnavailable, PrivatePostgres, server_binaries, unavailable_reason


def fake_bin(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "initdb").write_text("#!/bin/sh\n")
    return bin_dir


def test_an_explicit_directory_with_initdb_comes_first(tmp_path: Path):
    assert server_binaries(str(fake_bin(tmp_path))) == tmp_path / "bin"


def test_a_directory_without_initdb_is_passed_over(tmp_path: Path):
    assert server_binaries(str(tmp_path)) != tmp_path


def test_without_binaries_the_reason_says_how_to_get_them():
    reason = unavailable_reason(None)
    assert reason is not None
    assert "apt-get install postgresql" in reason and "STAGEFLOW_TEST_POSTGRES_URL" in reason


def test_without_binaries_no_server_starts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("tests.pgserver.server_binaries", lambda explicit=None: None)
    with pytest.raises(PostgresUnavailable, match="initdb"):
        PrivatePostgres()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as `postgres`")
def test_as_root_the_postgres_user_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def missing(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr("tests.pgserver.pwd.getpwnam", missing)
    assert "postgres" in (unavailable_reason(fake_bin(tmp_path)) or "")
