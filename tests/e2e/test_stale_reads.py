"""Flag reads keep answering when the Git remote is unreachable or a pushed file is broken.

Reads answer from the last head seen (or the last valid version of a broken file) with a
``Warning`` header saying so; writes answer 503 (remote) or 422 (broken file) naming it; the
next read after the remote returns, or after a corrected push, is current again, without a
restart.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.builders import remote_head, third_party_commit
from tests.conftest import git
from tests.e2e.fast_probe import FastProbe
from tests.e2e.test_operate import metric

DEV = "apps/demo/overlays/development"
STAGING = "apps/demo/overlays/staging"
BULK = "/ofrep/v1/evaluate/flags"
TOGGLE = "/api/v1/apps/demo/stages/{stage}/flags/beta_api"


def _token(client: FlaskClient, stage: str) -> dict[str, str]:
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": f"demo in {stage}",
            "owner": "svc-demo",
            "roles": ["client"],
            "scope": {"apps": ["demo"], "stages": [stage]},
        },
    )
    assert created.status_code == 201, created.get_json()
    return {"Authorization": f"Bearer {created.get_json()['token']}"}


def _reads(client: FlaskClient, token: dict[str, str], stage: str) -> dict[str, TestResponse]:
    """The flag reads applications and people make, for one stage."""
    context = {"context": {"targetingKey": "user-1"}}
    return {
        "bulk": client.post(BULK, json=context, headers=token),
        "single": client.post(f"{BULK}/new_ui", json=context, headers=token),
        "document": client.get(f"/api/v1/apps/demo/stages/{stage}/flags"),
        "matrix": client.get("/api/v1/apps/demo/flags"),
        "app": client.get("/api/v1/apps/demo"),
    }


def _assert_same(now: dict[str, TestResponse], before: dict[str, TestResponse]) -> None:
    for name, answer in now.items():
        assert answer.status_code == 200, (name, answer.get_data(as_text=True))
        assert answer.get_data() == before[name].get_data() or name == "app", name
        assert answer.headers.get("ETag") == before[name].headers.get("ETag"), name


def _warning(answers: dict[str, TestResponse]) -> list[str]:
    return [answer.headers.get("Warning", "") for answer in answers.values()]


def test_reads_answer_from_the_last_head_while_the_remote_is_away(
    app: Flask, client: FlaskClient, gitops_remote: Path, tmp_path: Path
):
    token = _token(client, "development")
    # someone else pushes: the clone reads that commit's objects from the remote (borrowed)
    third_party_commit(gitops_remote, "notes/readme.txt", "hello\n")
    before = _reads(client, token, "development")
    assert all(answer.status_code == 200 for answer in before.values())
    assert _warning(before) == [""] * len(before)

    # clients keep reading in the background while the remote goes away and comes back
    stop, failures = threading.Event(), []

    def keep_reading() -> None:
        reader = app.test_client()
        while not stop.is_set():
            answer = reader.post(BULK, json={"context": {"targetingKey": "u"}}, headers=token)
            if answer.status_code != 200:
                failures.append(answer.status_code)

    background = threading.Thread(target=keep_reading)
    background.start()
    try:
        moved = tmp_path / "moved-away.git"
        gitops_remote.rename(moved)

        probe = FastProbe(app)
        during = _reads(client, token, "development")
        assert any(probe.answered_fast(answer) for answer in during.values())
        _assert_same(during, before)
        for warning in _warning(during):
            assert warning.startswith('110 stageflow "Response is Stale:'), warning
            assert "unreachable since" in warning and str(gitops_remote) in warning
        with probe.flask():  # Flask answers the same, stale too
            by_flask = _reads(client, token, "development")
        probe.close()
        for name, answer in by_flask.items():
            assert answer.get_data() == during[name].get_data(), name
            for header in ("ETag", "Warning"):
                assert answer.headers.get(header) == during[name].headers.get(header), name

        write = client.patch(TOGGLE.format(stage="development"), json={"enabled": False})
        assert write.status_code == 503, write.get_json()
        assert write.get_json()["error"]["code"] == "git_unavailable"
        assert str(gitops_remote) in write.get_json()["error"]["message"]

        pipeline = client.get("/api/v1/pipeline").get_json()
        assert pipeline["stale_since"] is not None
        assert client.get("/readyz").status_code == 200
        writes = client.get("/readyz/writes")
        assert writes.status_code == 503
        assert writes.get_json()["error"]["details"]["remote"]["ok"] is False
        assert metric(client, "stageflow_git_remote_up") == 0
        assert metric(client, "stageflow_git_remote_contact_age_seconds") >= 0

        moved.rename(gitops_remote)  # the remote is back: no restart

        write = client.patch(TOGGLE.format(stage="development"), json={"enabled": False})
        assert write.status_code == 200, write.get_json()
        assert remote_head(gitops_remote) == write.get_json()["revision"]
    finally:
        stop.set()
        background.join()
    assert failures == []

    after = _reads(client, token, "development")
    assert _warning(after) == [""] * len(after)
    assert after["document"].headers["ETag"] == f'"{write.get_json()["revision"]}"'
    assert after["bulk"].get_data() != before["bulk"].get_data()  # beta_api is off now
    assert client.get("/api/v1/pipeline").get_json()["stale_since"] is None
    assert metric(client, "stageflow_git_remote_up") == 1
    assert client.get("/readyz/writes").status_code == 200


BROKEN_FLAGS = '{\n  "flags": {\n    "x": \n'


def _break_pipeline(bare: Path) -> str:
    text = git("--git-dir", str(bare), "show", "main:stageflow.yaml")
    return third_party_commit(bare, "stageflow.yaml", text + "surprise: true\n", "unknown key")


def test_a_broken_push_is_read_as_the_last_valid_version_and_named(
    client: FlaskClient, gitops_remote: Path
):
    dev, staging = _token(client, "development"), _token(client, "staging")
    dev_before = _reads(client, dev, "development")
    staging_before = _reads(client, staging, "staging")
    good_flags = git("--git-dir", str(gitops_remote), "show", f"main:{STAGING}/flags.json")

    # a third party breaks staging's flags.json: development does not notice
    broken = third_party_commit(gitops_remote, f"{STAGING}/flags.json", BROKEN_FLAGS, "oops")

    dev_now = _reads(client, dev, "development")
    assert dev_now["bulk"].get_data() == dev_before["bulk"].get_data()
    assert dev_now["document"].get_data() == dev_before["document"].get_data()
    assert dev_now["bulk"].headers.get("Warning") is None
    assert dev_now["document"].headers.get("Warning") is None
    staging_now = _reads(client, staging, "staging")
    for name in ("bulk", "single", "document"):
        assert staging_now[name].status_code == 200, name
        assert staging_now[name].get_data() == staging_before[name].get_data(), name
        assert f"{STAGING}/flags.json" in staging_now[name].headers["Warning"], name
    assert f"{STAGING}/flags.json" in staging_now["matrix"].headers["Warning"]

    (problem,) = client.get("/api/v1/pipeline").get_json()["problems"]
    assert problem["file"] == f"{STAGING}/flags.json" and problem["revision"] == broken
    assert problem["line"] == 4 and "not valid JSON" in problem["problem"]
    assert problem["stage"] == "staging"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["degraded"] == ["files"]
    writes = client.get("/readyz/writes")
    assert writes.status_code == 503
    assert f"{STAGING}/flags.json" in writes.get_json()["error"]["details"]["files"]["detail"]
    refused = client.patch(TOGGLE.format(stage="staging"), json={"enabled": False})
    assert refused.status_code == 422, refused.get_json()
    assert f"{STAGING}/flags.json" in refused.get_json()["error"]["message"]
    elsewhere = client.patch(TOGGLE.format(stage="development"), json={"enabled": False})
    assert elsewhere.status_code == 200

    # then stageflow.yaml: an unknown key
    _break_pipeline(gitops_remote)
    for answer in _reads(client, dev, "development").values():
        assert answer.status_code == 200
        assert "stageflow.yaml" in answer.headers["Warning"]
    problems = client.get("/api/v1/pipeline").get_json()["problems"]
    assert {p["file"] for p in problems} == {"stageflow.yaml", f"{STAGING}/flags.json"}
    (yaml_problem,) = [p for p in problems if p["file"] == "stageflow.yaml"]
    assert "surprise" in yaml_problem["problem"] and yaml_problem["line"]
    assert "stageflow.yaml" in client.get("/readyz/writes").get_json()["error"]["message"]
    refused = client.patch(TOGGLE.format(stage="development"), json={"enabled": True})
    assert refused.status_code == 422 and "stageflow.yaml" in refused.get_json()["error"]["message"]

    # corrected pushes bring everything back, without a restart
    text = git("--git-dir", str(gitops_remote), "show", "main:stageflow.yaml")
    third_party_commit(gitops_remote, "stageflow.yaml", text.replace("surprise: true\n", ""))
    fixed = third_party_commit(gitops_remote, f"{STAGING}/flags.json", good_flags, "fixed")
    current = [*_reads(client, dev, "development").values()]
    for answer in [*current, *_reads(client, staging, "staging").values()]:
        assert answer.status_code == 200 and answer.headers.get("Warning") is None
    pipeline = client.get("/api/v1/pipeline").get_json()
    assert pipeline["revision"] == fixed and pipeline["problems"] == []
    assert client.get("/readyz/writes").status_code == 200
    assert client.patch(TOGGLE.format(stage="staging"), json={"enabled": False}).status_code == 200
