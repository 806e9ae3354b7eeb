"""`stageflow init` (a new or adopted GitOps repo) and `stageflow doctor`, run as a user would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from stageflow.adapters.kustomize import KubectlKustomize
from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.domain.flags import parse_flag_document
from tests.cli.conftest import ADMIN, Cli, Server
from tests.conftest import SEED


def test_init_in_an_empty_directory_then_serve_it(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    local = Cli(home, url=None, token="")
    done = local("init", str(tmp_path / "gitops"))
    assert done.status == 0, done.err
    assert "wrote the starter GitOps repo" in done.out and "STAGEFLOW_SEED_DIR=" in done.out
    repo = tmp_path / "gitops"
    assert (repo / "apps/demo/overlays/production/flags.json").is_file()
    # the user's own edit before the first start shows that the server serves this directory
    pipeline = repo / "stageflow.yaml"
    pipeline.write_text(pipeline.read_text().replace("soak: 1m", "soak: 2m", 1))

    again = local("init", str(repo))
    assert again.status == 1 and "already_initialised" in again.err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("milk")
    busy = local("init", str(tmp_path / "notes"))
    assert busy.status == 1 and "not_empty" in busy.err

    # what `make run` does (`stageflow serve`), pointed at the new directory
    server = Server(tmp_path / "var", tmp_path / "serve.log", STAGEFLOW_SEED_DIR=str(repo))
    try:
        cli = Cli(home, server.url)
        state = cli("status", "demo", "-o", "json")
        assert state.status == 0, state.err
        assert [s["stage"] for s in state.json()["apps"][0]["stages"]] == [
            "development",
            "staging",
            "production",
        ]
        answer = httpx.get(
            server.url + "/api/v1/pipeline", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert answer.json()["stages"][1]["gates"]["soak"] == "2m"

        # doctor on this working setup: every line ok
        healthy = Cli(home, url=None, token="")("doctor", "-o", "json", env=_settings(server))
        assert healthy.status == 0, healthy.out + healthy.err
        checks = {c["check"]: c for c in healthy.json()["checks"]}
        assert {"settings", "git remote", "git branch", "git writable", "kustomize"} <= set(checks)
        assert checks["database"]["ok"] and "latest migration" in checks["database"]["detail"]
    finally:
        server.stop()


def _settings(server: Server) -> dict[str, str]:
    return {k: v for k, v in server.env.items() if k.startswith("STAGEFLOW_")}


def test_init_adopts_a_repo_with_overlays(tmp_path: Path):
    repo = tmp_path / "existing"
    shutil.copytree(SEED / "apps", repo / "apps")
    (repo / "apps/demo/overlays/production/flags.json").unlink()
    home = tmp_path / "home"
    home.mkdir()
    done = Cli(home, url=None, token="")("init", str(repo))
    assert done.status == 0, done.err
    assert (
        "wrote stageflow.yaml: apps demo; stages development -> staging -> production" in done.out
    )
    assert "created empty apps/demo/overlays/production/flags.json" in done.out
    pipeline = load_pipeline((repo / "stageflow.yaml").read_text())
    assert list(pipeline.stage_names) == ["development", "staging", "production"]
    assert pipeline.stage("production").namespace == "production"
    flags = json.loads((repo / "apps/demo/overlays/production/flags.json").read_text())
    assert flags["flags"] == {}

    # what Stageflow needs of it: documents it reads, and overlays kustomize renders
    for stage in pipeline.stage_names:
        overlay = repo / "apps/demo/overlays" / stage
        assert parse_flag_document((overlay / "flags.json").read_text()).flags is not None
        assert "kind: Deployment" in KubectlKustomize.from_setting().render(overlay)


def test_doctor_names_each_problem_of_a_broken_setup(tmp_path: Path):
    garbage = tmp_path / "stageflow.db"
    garbage.write_bytes(b"this is not a database\n" * 100)
    env = {
        "STAGEFLOW_DATA_DIR": str(tmp_path / "var"),
        "STAGEFLOW_GIT_URL": str(tmp_path / "nowhere.git"),
        "STAGEFLOW_KUSTOMIZE": str(tmp_path / "no-such-kustomize"),
        "STAGEFLOW_DATABASE_URL": f"sqlite:///{garbage}",
    }
    home = tmp_path / "home"
    home.mkdir()
    doctor = Cli(home, url=None, token="")
    broken = doctor("doctor", env=env)
    assert broken.status == 1
    failing = [line for line in broken.out.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 3, broken.out
    assert "git remote" in failing[0] and "nowhere.git" in failing[0]
    assert "kustomize" in failing[1] and "STAGEFLOW_KUSTOMIZE" in failing[1]
    assert "database" in failing[2] and "not a database" in failing[2]
    assert all("—" in line for line in failing)  # each says what to fix

    as_json = doctor("doctor", "-o", "json", env=env).json()
    assert as_json["ok"] is False
    assert {c["check"] for c in as_json["checks"] if not c["ok"]} == {
        "git remote",
        "kustomize",
        "database",
    }

    bad_setting = doctor("doctor", env={"STAGEFLOW_PORT": "eighty"})
    assert bad_setting.status == 1 and "STAGEFLOW_PORT" in bad_setting.out
