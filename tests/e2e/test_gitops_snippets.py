"""The Argo CD and Flux snippets of docs/gitops-controllers.md, checked against what runs.

Argo CD's notifications controller renders the webhook body with Go ``text/template``. The
Stageflow template uses one action only, ``{{toJson <field path>}}``, and this module renders it
the way Go does: a path through the Application object as a JSON map, where a missing key
anywhere along it is an invalid value that ``toJson`` writes as ``null`` (text/template's
default ``missingkey``; notifications-engine sets no other). The bodies are made from real
Application objects (``data/argocd-app.json`` and variants of it) and posted to Stageflow.

The triggers' ``oncePer`` is an expr expression; ``_once_per`` evaluates the two operators it
uses, ``?.`` (nil-safe member access) and ``??`` (the first non-nil operand), and formats the
result as notifications-engine does (``fmt.Sprintf("%v")``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.builders import remote_head

DOC = Path(__file__).parents[2] / "docs" / "gitops-controllers.md"
DATA = Path(__file__).parent / "data"
# The triggers of the Argo CD notifications catalog (notifications_catalog/triggers at
# argoproj/argo-cd 37ee009): a snippet that defines one of these replaces the catalog's.
CATALOG_TRIGGERS = {
    "on-created",
    "on-deleted",
    "on-deployed",
    "on-health-degraded",
    "on-sync-failed",
    "on-sync-running",
    "on-sync-status-unknown",
    "on-sync-succeeded",
}
_ACTION = re.compile(r"\{\{\s*toJson\s+((?:\.[A-Za-z]+)+)\s*\}\}")


def _config_map() -> dict[str, Any]:
    text = DOC.read_text()
    block = re.search(r"```yaml\n(apiVersion: v1\nkind: ConfigMap\n.*?)```", text, re.S)
    assert block is not None, "the argocd-notifications-cm block is gone from the doc"
    return dict(YAML(typ="safe").load(block.group(1))["data"])


def _field(obj: Any, path: str) -> Any:
    for name in path.strip(".").split("."):
        if not isinstance(obj, dict) or name not in obj:
            return None
        obj = obj[name]
    return obj


def render(template: str, app: dict[str, Any]) -> str:
    """Render a template made of ``{{toJson .path}}`` actions as Go's text/template does."""
    assert "{{" not in _ACTION.sub("", template), "the template has actions render() cannot do"
    return _ACTION.sub(
        lambda found: json.dumps(_field({"app": app}, found.group(1)), separators=(",", ":")),
        template,
    )


def _body(app: dict[str, Any]) -> dict[str, Any]:
    template = YAML(typ="safe").load(_config_map()["template.stageflow-report"])
    webhook = template["webhook"]["stageflow"]
    assert webhook["method"] == "POST"
    return dict(json.loads(render(webhook["body"], app)))


def _go_value(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(item) for item in value) + "]"
    return str(value)


def _once_per(expression: str, app: dict[str, Any]) -> str:
    for operand in expression.split("??"):
        path = operand.strip()
        assert re.fullmatch(r"app(\??\.[A-Za-z]+)+", path), path
        value = _field({"app": app}, path.replace("?.", "."))
        if value is not None:
            return _go_value(value)
    return "<nil>"


# -- the Application objects ---------------------------------------------------------------------


def single_source(sha: str, *, health: str = "Healthy", phase: str = "Succeeded") -> dict:
    app = copy.deepcopy(json.loads((DATA / "argocd-app.json").read_text()))
    app["metadata"]["name"] = "demo-staging"
    app["status"]["operationState"]["syncResult"]["revision"] = sha
    app["status"]["operationState"]["operation"]["sync"]["revision"] = sha
    app["status"]["operationState"]["phase"] = phase
    app["status"]["sync"]["revision"] = sha
    app["status"]["health"]["status"] = health
    return app


def multi_source(sha: str, *, health: str = "Healthy") -> dict:
    """The Application as Argo CD writes a multi-source one: sources, revisions, revision ""."""
    app = single_source(sha, health=health)
    chart = {
        "repoURL": "oci://europe-west1-docker.pkg.dev/foo/charts",
        "chart": "velero",
        "targetRevision": "25.3.1",
    }
    gitops = {
        "repoURL": "https://git.example.com/acme/gitops.git",
        "path": "apps/demo/overlays/staging",
        "targetRevision": "main",
    }
    app["spec"].pop("source")
    app["spec"]["sources"] = [chart, gitops]
    result = app["status"]["operationState"]["syncResult"]
    result.pop("source", None)
    result.update(revision="", sources=[chart, gitops], revisions=["25.3.1", sha])
    sync = app["status"]["sync"]
    del sync["revision"]
    sync["revisions"] = ["25.3.1", sha]
    return app


def never_synced(sha: str, *, health: str = "Degraded") -> dict:
    """An Application that never ran a sync operation (created in sync): no operationState."""
    app = single_source(sha, health=health)
    del app["status"]["operationState"]
    return app


# -- the snippet ---------------------------------------------------------------------------------


def test_triggers_are_stageflows_own_with_once_per_on_the_synced_revision():
    data = _config_map()
    triggers = {
        key.removeprefix("trigger."): value
        for key, value in data.items()
        if key.startswith("trigger.")
    }
    subscribed = YAML(typ="safe").load(data["subscriptions"])[0]["triggers"]

    assert set(triggers) == set(subscribed)
    assert not set(triggers) & CATALOG_TRIGGERS
    for name, text in triggers.items():
        assert name.startswith("stageflow-")
        for condition in YAML(typ="safe").load(text):
            assert condition["send"] == ["stageflow-report"]
            assert "syncResult?.revisions" in condition["oncePer"], name


@pytest.mark.parametrize(
    ("make", "once_per"),
    [
        (single_source, "{sha}"),
        (multi_source, "[25.3.1 {sha}]"),
        (never_synced, "{sha}"),
    ],
)
def test_once_per_is_the_revision_so_a_second_bad_revision_is_reported(make, once_per):
    expression = YAML(typ="safe").load(_config_map()["trigger.stageflow-on-health-degraded"])[0][
        "oncePer"
    ]
    first, second = "a" * 40, "b" * 40
    assert _once_per(expression, make(first)) == once_per.format(sha=first)
    assert _once_per(expression, make(first)) != _once_per(expression, make(second))


def test_the_bodies_have_no_no_value_and_null_for_what_an_app_lacks():
    sha = "c" * 40
    assert _body(single_source(sha))["revision"] == sha
    assert _body(single_source(sha))["revisions"] is None
    multi = _body(multi_source(sha))
    assert (multi["revision"], multi["revisions"], multi["sync_revision"]) == (
        "",
        ["25.3.1", sha],
        None,
    )
    bare = _body(never_synced(sha))
    assert (bare["revision"], bare["operation_phase"], bare["sync_revision"]) == (None, None, sha)
    for app in (single_source(sha), multi_source(sha), never_synced(sha)):
        assert "<no value>" not in json.dumps(_body(app))


# -- Stageflow takes them ------------------------------------------------------------------------


def _reporter(client) -> dict[str, str]:
    created = client.post(
        "/api/v1/tokens", json={"name": "argocd", "owner": "argocd", "roles": ["reporter"]}
    )
    return {"Authorization": f"Bearer {created.get_json()['token']}"}


def _deployments(client) -> list[dict]:
    return client.get("/api/v1/apps/demo/stages/staging/deployments").get_json()


@pytest.mark.parametrize(
    ("make", "health"),
    [
        (single_source, "healthy"),
        (lambda sha: single_source(sha, health="Degraded"), "degraded"),
        (lambda sha: single_source(sha, phase="Failed"), "degraded"),
        (multi_source, "healthy"),
        (never_synced, "degraded"),
    ],
)
def test_stageflow_records_the_rendered_bodies(
    client, anonymous, gitops_remote: Path, make, health
):
    head = remote_head(gitops_remote)
    body = _body(make(head))

    answer = anonymous.post("/api/v1/webhooks/argocd", json=body, headers=_reporter(client))

    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["recorded"] is True, answer.get_json()
    assert [(d["revision"], d["health"]) for d in _deployments(client)] == [(head, health)]


def test_a_multi_source_app_is_recorded_at_the_gitops_repos_revision_whatever_its_place(
    client, anonymous, gitops_remote: Path
):
    head = remote_head(gitops_remote)
    app = multi_source(head)
    app["status"]["operationState"]["syncResult"]["revisions"] = [
        "0123456789abcdef0123456789abcdef01234567",  # another Git repo's commit
        head,
    ]

    answer = anonymous.post("/api/v1/webhooks/argocd", json=_body(app), headers=_reporter(client))

    assert answer.get_json()["recorded"] is True, answer.get_json()
    assert _deployments(client)[0]["revision"] == head


def test_an_app_out_of_sync_without_an_operation_is_not_recorded(client, anonymous, gitops_remote):
    app = never_synced(remote_head(gitops_remote))
    app["status"]["sync"]["status"] = "OutOfSync"  # what Git wants is not what runs

    answer = anonymous.post("/api/v1/webhooks/argocd", json=_body(app), headers=_reporter(client))

    assert answer.status_code == 202
    assert answer.get_json()["recorded"] is False
    assert _deployments(client) == []


def test_bodies_of_the_older_template_with_no_value_are_understood(
    client, anonymous, gitops_remote
):
    head = remote_head(gitops_remote)
    reporter = _reporter(client)
    old = {
        "app": "demo-staging",
        "revision": "<no value>",
        "sync_status": "Synced",
        "health_status": "Degraded",
        "operation_phase": "<no value>",
    }

    unused = anonymous.post("/api/v1/webhooks/argocd", json=old, headers=reporter)
    used = anonymous.post(
        "/api/v1/webhooks/argocd", json={**old, "revision": head}, headers=reporter
    )

    assert unused.status_code == 202 and unused.get_json()["recorded"] is False
    assert used.get_json()["recorded"] is True
    assert [(d["revision"], d["health"]) for d in _deployments(client)] == [(head, "degraded")]
