"""schemathesis over every operation of /openapi.json, against the app behind a real HTTP server.

Every answer must be no 5xx and match the document: a status it lists for the operation, the
content type and the schema it gives for that status. The run is schemathesis's own command
(`st run`): its examples, coverage, fuzzing and stateful phases, in deterministic mode (the
same cases every run) with a bounded number of examples per operation. The README gives the
command to run it by hand, the number of cases and the time it takes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow import bootstrap
from stageflow.adapters.git import seed_bare_remote
from stageflow.api import create_app
from stageflow.config import Settings
from tests.conftest import SEED
from tests.e2e.conftest import ADMIN, LiveServer

ST = Path(sys.executable).parent / "st"
CONFIG = Path(__file__).parent / "data" / "schemathesis.toml"
EXAMPLES_PER_OPERATION = 50
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
# Revoking tokens runs on its own, last: in the main run schemathesis would revoke the admin
# token it found in GET /api/v1/tokens, and every later case would only see 401s.
TOKEN_BY_ID = "^/api/v1/tokens/"
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One app over real Git, kustomize and SQLite for the whole run: the cases share its
    state, as clients would."""
    root: Path = tmp_path_factory.mktemp("schemathesis")
    bare = root / "remote" / "gitops.git"
    seed_bare_remote(SEED, bare, "main")
    settings = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'stageflow.db'}",
        git_url=str(bare),
        git_branch="main",
        git_head_ttl=0.0,
        admin_token=ADMIN,
    )
    bootstrap.prepare(settings)
    sf, readiness = bootstrap.build(settings)
    server = LiveServer(create_app(settings, sf, readiness))
    yield server
    server.stop()
    sf.close()


def st_run(server: LiveServer, cwd: Path, *selection: str) -> tuple[str, int]:
    """Run `st run` over the selected operations; return its output and its number of cases."""
    done = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.base}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--generation-deterministic",
            "--workers",
            "1",
            "--max-failures",
            "100",
            "--no-color",
            "--warnings",
            "off",
            *selection,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    cases = re.search(r"(\d+) generated, \1 passed", output)
    assert cases is not None, output[-5000:]
    return output, int(cases.group(1))


def test_every_operation_answers_as_documented(served: LiveServer, tmp_path: Path):
    main, main_cases = st_run(served, tmp_path, "--exclude-path-regex", TOKEN_BY_ID)
    revoke, revoke_cases = st_run(
        served,
        tmp_path,
        *("--include-path-regex", TOKEN_BY_ID),
        *("--phases", "examples,coverage,fuzzing"),  # one operation: no links to follow
    )

    operations = re.search(r"Tested: (\d+)", main)
    assert operations is not None and int(operations.group(1)) >= 30, main[-3000:]
    assert re.search(r"API Links:\s+[1-9]\d* covered", main), main[-3000:]  # stateful ran
    assert "Tested: 1" in revoke
    assert main_cases + revoke_cases > 2000  # the README states the count
