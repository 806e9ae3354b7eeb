"""The README's tour as written (curl, then the stageflow command) against `stageflow serve`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from stageflow.adapters.git import seed_bare_remote
from tests.cli.conftest import ADMIN, Server, clean_env
from tests.conftest import ROOT, SEED

README = (ROOT / "README.md").read_text()


def tour(name: str) -> str:
    found = re.search(rf"<!-- tour: {name} -->\n```sh\n(.*?)\n```", README, re.DOTALL)
    assert found, f"the README has no `{name}` tour block"
    return found.group(1)


def test_the_readme_links_nothing_outside_the_repository():
    for target in re.findall(r"\]\(([^)]+)\)", README):
        if target.startswith(("http://", "https://", "#")):
            continue
        assert not target.startswith(".."), target
        assert (ROOT / target.split("#")[0]).exists(), target
    assert "../" not in README


def test_the_tour_runs_to_a_rollback_with_curl_and_with_the_cli(tmp_path: Path):
    # the starter repo as `make run` seeds it, but with staging's soak at 1s instead of 1m
    work = tmp_path / "seed"
    shutil.copytree(SEED, work)
    pipeline = work / "stageflow.yaml"
    pipeline.write_text(pipeline.read_text().replace("soak: 1m", "soak: 1s", 1))
    seed_bare_remote(work, tmp_path / "var" / "gitops.git", "main")
    server = Server(tmp_path / "var", tmp_path / "serve.log", STAGEFLOW_REEVALUATE_INTERVAL="1")
    address = server.url.removeprefix("http://")
    env = clean_env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(tmp_path),
        STAGEFLOW_CONFIG=str(tmp_path / "config.toml"),
        STAGEFLOW_URL=server.url,  # what the CLI's default (127.0.0.1:8080) is for a reader
        STAGEFLOW_TOKEN=ADMIN,  # the cli tour goes on in the shell the curl tour exported it in
    )
    outputs = {}
    try:
        for name in ("curl", "cli"):
            script = (
                tour(name)
                .replace("localhost:8080", address)
                .replace("export STAGEFLOW_TOKEN=sf_...", f"export STAGEFLOW_TOKEN={ADMIN}")
                .replace("sleep 5", "sleep 0.3")
            )
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{name} tour:\n{done.stdout}\n{done.stderr}"
            outputs[name] = done.stdout
        answer = httpx.get(
            server.url + "/api/v1/promotions",
            params={"app": "demo", "to": "production"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()
    finally:
        server.stop()
    assert re.search(r"^applied$", outputs["curl"], re.MULTILINE), outputs["curl"]
    assert re.search(r"^rolled_back$", outputs["curl"], re.MULTILINE), outputs["curl"]
    assert "Stageflow-Actor: admin" in outputs["curl"]
    assert "applied" in outputs["cli"] and "rolled_back" in outputs["cli"], outputs["cli"]
    production = answer["items"]
    assert [p["status"] for p in production] == ["rolled_back", "rolled_back"]
    assert [[a["approver"] for a in p["approvals"]] for p in production] == [["bob"], ["bob"]]
    assert [p["plan"]["images"][0]["to"] for p in production] == ["1.6.0", "1.5.0"]
