"""Infrastructure faults answer 503 naming the part and what to do, never 500.

A remote that is missing when the process starts, a disk below the free-space floor, a disk
that fills up under a write, a remote moved away before part of its last head was read.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from stageflow import bootstrap
from stageflow.adapters.git import seed_bare_remote
from stageflow.api import create_app
from stageflow.config import Settings
from tests.builders import remote_head, third_party_commit
from tests.conftest import SEED
from tests.e2e.conftest import ADMIN

TOGGLE = "/api/v1/apps/demo/stages/development/flags/beta_api"
DOCUMENT = "/api/v1/apps/demo/stages/{stage}/flags"


def _client(settings: Settings) -> tuple[FlaskClient, object]:
    bootstrap.prepare(settings)
    sf, readiness = bootstrap.build(settings)
    app = create_app(settings, sf, readiness)
    app.config["TESTING"] = True
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
    return client, sf


def test_a_process_started_without_remote_or_clone_says_so_and_recovers(
    settings: Settings, gitops_remote: Path, tmp_path: Path
):
    away = tmp_path / "away.git"
    gitops_remote.rename(away)
    client, sf = _client(settings)  # starts: nothing to serve yet, but no crash
    try:
        read = client.get(DOCUMENT.format(stage="development"))
        ready = client.get("/readyz")
        writes = client.get("/readyz/writes")

        assert read.status_code == 503, read.get_json()
        assert str(gitops_remote) in read.get_json()["error"]["message"]
        assert ready.status_code == 503 and "state" in ready.get_json()["error"]["message"]
        assert writes.status_code == 503
        assert writes.get_json()["error"]["details"]["remote"]["ok"] is False

        away.rename(gitops_remote)

        assert client.get(DOCUMENT.format(stage="development")).status_code == 200
        assert client.get("/readyz/writes").status_code == 200
    finally:
        sf.close()  # type: ignore[attr-defined]


def test_a_disk_below_the_floor_stops_writes_not_reads(settings: Settings, gitops_remote: Path):
    free_mib = shutil.disk_usage(settings.data_dir.parent).free // 2**20
    client, sf = _client(settings.with_overrides(min_free_disk_mb=free_mib + 1024))
    try:
        before = remote_head(gitops_remote)
        assert client.get(DOCUMENT.format(stage="development")).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.get_json()["degraded"] == ["disk"]
        writes = client.get("/readyz/writes")
        assert writes.status_code == 503
        assert (
            "STAGEFLOW_MIN_FREE_DISK_MB" in writes.get_json()["error"]["details"]["disk"]["detail"]
        )

        write = client.patch(TOGGLE, json={"enabled": False})

        assert write.status_code == 503
        error = write.get_json()["error"]
        assert error["code"] == "disk_full" and "free space" in error["message"]
        assert remote_head(gitops_remote) == before
    finally:
        sf.close()  # type: ignore[attr-defined]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own (tmpfs), for a data dir that can really fill up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


def test_a_disk_that_fills_up_under_a_write_is_503_naming_it(
    settings: Settings, gitops_remote: Path, small_disk: Path
):
    client, sf = _client(settings.with_overrides(data_dir=small_disk, min_free_disk_mb=0))
    try:
        before = remote_head(gitops_remote)
        filler = small_disk / "filler"
        with filler.open("wb") as out:  # take every free block
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass

        write = client.patch(TOGGLE, json={"enabled": False})

        assert write.status_code == 503, write.get_json()
        error = write.get_json()["error"]
        assert error["code"] == "disk_full", error
        assert str(small_disk) in error["message"] and "nothing was committed" in error["message"]
        assert remote_head(gitops_remote) == before
        assert client.get(DOCUMENT.format(stage="development")).status_code == 200

        filler.unlink()

        assert client.patch(TOGGLE, json={"enabled": False}).status_code == 200
    finally:
        sf.close()  # type: ignore[attr-defined]


def test_a_part_never_read_before_a_local_remote_moved_away_is_503(
    client: FlaskClient, gitops_remote: Path, tmp_path: Path
):
    # pushed by someone else: this process reads that commit's objects from the remote
    third_party_commit(gitops_remote, "apps/demo/overlays/staging/notes.txt", "x\n")
    assert client.get(DOCUMENT.format(stage="development")).status_code == 200
    gitops_remote.rename(tmp_path / "moved.git")

    known = client.get(DOCUMENT.format(stage="development"))
    unknown = client.get(DOCUMENT.format(stage="staging"))

    assert known.status_code == 200 and "Warning" in known.headers
    assert unknown.status_code == 503, unknown.get_json()
    assert unknown.get_json()["error"]["code"] == "git_unavailable"
    assert str(gitops_remote) in unknown.get_json()["error"]["message"]


def test_a_pipeline_broken_with_no_valid_version_is_503_naming_it_never_500(
    tmp_path: Path, database_url: str
):
    seed = tmp_path / "seed"
    shutil.copytree(SEED, seed)
    with (seed / "stageflow.yaml").open("a") as out:
        out.write("surprise: true\n")
    bare = tmp_path / "broken.git"
    seed_bare_remote(seed, bare, "main")
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, git_url=str(bare), admin_token=ADMIN
    )
    client, sf = _client(settings)
    try:
        headers = {"X-Stageflow-App": "demo", "X-Stageflow-Stage": "development"}
        answers = [
            client.post("/ofrep/v1/evaluate/flags", json={"context": {}}, headers=headers),
            client.post("/ofrep/v1/evaluate/flags/new_ui", json={"context": {}}, headers=headers),
            client.get(DOCUMENT.format(stage="development")),
            client.get("/api/v1/pipeline"),
        ]
        for answer in answers:
            assert answer.status_code in (422, 503), answer.get_data(as_text=True)
            assert "surprise" in answer.get_data(as_text=True)
        assert client.get("/readyz").status_code == 503
    finally:
        sf.close()  # type: ignore[attr-defined]
