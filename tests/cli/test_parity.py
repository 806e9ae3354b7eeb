"""The parity gate's differences as the `stageflow` executable prints them (issue #17).

The gate's message names the first few differences only; `promote` and `promotions get` print
every one of them in a Parity table, from the promotion's evidence, against a real server whose
production runs 4 replicas and staging 1 (the starter's parity: staging mirrors production with
``min_replica_ratio: 0.5``, action ``warn``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.adapters.git import seed_bare_remote
from tests.cli.conftest import Cli, Server
from tests.conftest import SEED

REPLICAS = {"production": 4, "staging": 1}
DIFFERENCE = "Deployment/demo: spec.replicas: 1 → 4"


def replicas_remote(root: Path) -> Path:
    """The starter repo with a replicas patch in staging's and production's overlays."""
    work = root / "seed"
    shutil.copytree(SEED, work)
    for stage, replicas in REPLICAS.items():
        folder = work / "apps" / "demo" / "overlays" / stage
        (folder / "replicas.yaml").write_text(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\n"
            f"spec:\n  replicas: {replicas}\n"
        )
        kustomization = folder / "kustomization.yaml"
        kustomization.write_text(kustomization.read_text() + "patches:\n  - path: replicas.yaml\n")
    bare = root / "gitops.git"
    seed_bare_remote(work, bare, "main")
    return bare


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-parity")
    running = Server(root / "var", root / "serve.log", STAGEFLOW_GIT_URL=str(replicas_remote(root)))
    yield running
    running.stop()


def parity_table(out: str) -> list[str]:
    """The rows of the printed Parity table (the lines after its title, up to a blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Parity")
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_promote_and_promotions_get_print_every_parity_difference(
    server: Server, tmp_path: Path
) -> None:
    cli = Cli(tmp_path, server.url)
    dry = cli("promote", "demo", "--to", "production", "--dry-run")
    assert "Parity" in dry.out, dry.out + dry.err
    row = next(line for line in parity_table(dry.out) if DIFFERENCE in line)
    assert "replicas" in row and "fails" in row  # the rule it breaks; warn lets it through

    opened = cli("promote", "demo", "--to", "production", "-o", "json").json()
    parity = next(g for g in opened["gates"] if g["kind"] == "parity")
    assert parity["status"] == "passed"  # action: warn — listed, never blocking
    differences = [d["difference"] for d in parity["evidence"]["differences"]]
    assert DIFFERENCE in differences

    shown = cli("promotions", "get", str(opened["id"]))
    assert shown.status == 0, shown.err
    table = "\n".join(parity_table(shown.out))
    for difference in differences:
        assert difference in table
