"""A promotion whose process dies mid-apply ends `applied` or `failed` after restart: never
stuck, never twice."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stageflow import bootstrap
from stageflow.config import Settings
from stageflow.services import promotions, reports
from tests.builders import commit_message, remote_head, remote_log

CRASHING_PROCESS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from stageflow import bootstrap
    from stageflow.config import Settings
    from stageflow.services import promotions
    from stageflow.services.changes import Actor

    options = json.loads(sys.argv[1])
    settings = Settings(
        data_dir=Path(options["data_dir"]), database_url=options["database_url"],
        git_url=options["git_url"], admin_token="test-admin-token-0123456789",
    )
    sf, _ = bootstrap.build(settings)

    def die(*args, **kwargs):
        os._exit(9)  # no cleanup, no database update: a kill -9 at this point

    if options["when"] == "after_push":
        promotions.finish = die       # the commit is on the remote; the row still says applying
    else:
        sf.repo.writes.push = die     # the commit exists locally; the push never happens
    promotions.promote(sf, "demo", to="staging", actor=Actor("alice"))
    """
)


@pytest.fixture
def ready(settings: Settings, gitops_remote: Path):
    """Development has passed its gates, so a promotion to staging applies at once."""
    bootstrap.prepare(settings)
    sf, _ = bootstrap.build(settings)
    head = remote_head(gitops_remote)
    reports.record_deployment(
        sf, "demo", "development", revision=head, health="healthy", actor="ci"
    )
    reports.record_check(
        sf, "demo", "development", kind="smoke", revision=head, status="passed", actor="ci"
    )
    yield sf
    sf.close()


def _crash(settings: Settings, when: str) -> None:
    options = {
        "data_dir": str(settings.data_dir / "other-process"),
        "database_url": settings.database_url,
        "git_url": settings.git_url,
        "when": when,
    }
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_PROCESS, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 9, done.stderr[-3000:]


@pytest.mark.parametrize("when", ["after_push", "before_push"])
def test_a_crash_mid_apply_settles_after_restart(ready, settings, gitops_remote: Path, when):
    before = remote_head(gitops_remote)

    _crash(settings, when)

    stuck = promotions.list_promotions(ready, app="demo")
    assert [p.status for p in stuck] == ["applying"]
    settled = promotions.settle_all(ready)  # what start-up does
    assert len(settled) == 1
    promotion = promotions.get_promotion(ready, settled[0].id)
    if when == "after_push":
        assert promotion.status == "applied"
        assert remote_log(gitops_remote, 2) == [promotion.revision, before]
        assert f"Stageflow-Promotion: {promotion.id}" in commit_message(
            gitops_remote, promotion.revision
        )
    else:
        assert promotion.status == "failed"
        assert "interrupted" in promotion.message
        assert remote_head(gitops_remote) == before
    # never twice: settling and reading again changes nothing
    promotions.settle_all(ready)
    assert promotions.get_promotion(ready, promotion.id).status == promotion.status
    assert len(remote_log(gitops_remote)) == (2 if when == "after_push" else 1)  # seed (+ 1)
