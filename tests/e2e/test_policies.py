"""Manifest policies and parity (issue #17), over HTTP against real Git and kustomize.

Each test pushes, as a third party would, a pipeline with policies and an overlay change that
breaks one, then shows what Stageflow's next write and a promotion's gates make of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import read_remote, remote_head, third_party_commit

PIPELINE = "stageflow.yaml"
OVERLAY = "apps/demo/overlays/{}"
TOGGLE = "/api/v1/apps/demo/stages/{}/flags/new_ui"


def with_policies(bare: Path, policies: str, *, parity: str | None = None) -> str:
    """Push the pipeline with ``policies`` (YAML under the top-level key) as its policies."""
    text = read_remote(bare, remote_head(bare), PIPELINE)
    text = text.split("\npolicies:")[0].rstrip("\n") + "\n"
    text = "\n".join(line for line in text.splitlines() if "parity:" not in line) + "\n"
    if parity is not None:
        text = text.replace(
            "  - name: production\n", f"  - name: production\n    parity: {parity}\n"
        )
    return third_party_commit(bare, PIPELINE, f"{text}policies:\n{policies}", "policies")


def push(bare: Path, stage: str, name: str, text: str) -> str:
    return third_party_commit(bare, f"{OVERLAY.format(stage)}/{name}", text, f"edit {name}")


def add_resource(bare: Path, stage: str, name: str, text: str) -> str:
    """Push a manifest into a stage's overlay and list it under resources:."""
    push(bare, stage, name, text)
    path = f"{OVERLAY.format(stage)}/kustomization.yaml"
    kustomization = read_remote(bare, remote_head(bare), path)
    kustomization = kustomization.replace("  - ../../base\n", f"  - ../../base\n  - {name}\n", 1)
    return third_party_commit(bare, path, kustomization, f"list {name}")


def patch_deployment(bare: Path, stage: str, patch: str) -> str:
    """Push a strategic-merge patch of the demo Deployment into a stage's overlay."""
    push(bare, stage, "patch.yaml", patch)
    path = f"{OVERLAY.format(stage)}/kustomization.yaml"
    kustomization = read_remote(bare, remote_head(bare), path)
    if "patches:" not in kustomization:
        kustomization += "patches:\n  - path: patch.yaml\n"
    return third_party_commit(bare, path, kustomization, "patch the deployment")


def deployment_patch(body: str) -> str:
    return f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n{body}"


def toggle(client, stage: str, enabled: bool):
    return client.patch(TOGGLE.format(stage), json={"enabled": enabled})


def gate(promotion: dict, name: str) -> dict:
    return next(g for g in promotion["gates"] if g["name"] == name)


def dry_run(client, to: str) -> dict:
    answer = client.post("/api/v1/apps/demo/promotions", json={"to": to, "dry_run": True})
    assert answer.status_code in (200, 201), answer.get_json()
    return answer.get_json()


def set_image(client, tag: str):
    return client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": tag},
    )


def drop(bare: Path, path: str, text: str) -> str:
    """Push ``path`` without ``text`` (which it must contain)."""
    before = read_remote(bare, remote_head(bare), path)
    assert text in before
    return third_party_commit(bare, path, before.replace(text, "", 1), f"edit {path}")


def leak_namespace(bare: Path) -> None:
    path = f"{OVERLAY.format('staging')}/kustomization.yaml"
    text = read_remote(bare, remote_head(bare), path)
    third_party_commit(bare, path, text.replace("namespace: staging", "namespace: production"))


def break_network(bare: Path) -> None:
    drop(bare, "apps/demo/base/kustomization.yaml", "  - networkpolicy.yaml\n")


def pin_latest(bare: Path) -> None:
    patch_deployment(bare, "staging", LATEST)


def drop_limit(bare: Path) -> None:
    drop(
        bare, "apps/demo/base/deployment.yaml", "            limits:\n              memory: 256Mi\n"
    )


def typo_replicas(bare: Path) -> None:
    patch_deployment(bare, "staging", deployment_patch("  replica: 3\n"))


def too_many_replicas(bare: Path) -> None:
    patch_deployment(bare, "staging", deployment_patch("  replicas: 5\n"))


LATEST = deployment_patch(
    "  template:\n    spec:\n      containers:\n        - name: sidecar\n"
    "          image: ghcr.io/acme/sidecar:latest\n"
)
BREAKS = {
    "namespace-isolation": (leak_namespace, "Deployment/production/demo", "stage production"),
    "network-isolation": (break_network, "Namespace/staging", "default-deny"),
    "pinned-images": (pin_latest, "Deployment/staging/demo", "uses latest"),
    "resources": (drop_limit, "Deployment/staging/demo", "resources.limits.memory"),
    "kubernetes-schema": (typo_replicas, "Deployment/staging/demo", "'replica' was unexpected"),
    "validatingAdmissionPolicies": (
        too_many_replicas,
        "Deployment/staging/demo",
        "replicas 5 is more than 3",
    ),
}


def entry(name: str, action: str = "enforce", extra: str = "") -> str:
    if name == "validatingAdmissionPolicies":
        return f"  - validatingAdmissionPolicies: policies/\n    action: {action}\n{extra}"
    return f"  - builtin: {name}\n    action: {action}\n{extra}"


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_pushed_violation_does_not_lock_writes_out(client, gitops_remote: Path, name):
    breaks, obj, reason = BREAKS[name]
    third_party_commit(gitops_remote, "policies/replicas.yaml", VAP)
    with_policies(gitops_remote, entry(name))
    assert toggle(client, "staging", False).status_code == 200  # clean: no warnings
    breaks(gitops_remote)
    head = remote_head(gitops_remote)
    # the next write leaves the violation as it was: allowed, and it says so
    allowed = toggle(client, "staging", True)
    assert allowed.status_code == 200, allowed.get_json()
    assert remote_head(gitops_remote) != head
    warnings = allowed.get_json()["warnings"]
    assert any(
        w["object"] == obj and reason in w["message"] and w["allowed"] == "not_worse"
        for w in warnings
    ), warnings
    # a promotion that leaves it as it was is not held back by it either, and names it
    policy_gate = gate(dry_run(client, "staging"), "policy")
    assert policy_gate["status"] == "passed", policy_gate
    assert "not worse" in policy_gate["message"]
    assert any(w["object"] == obj for w in policy_gate["evidence"]["warnings"])


def test_a_write_that_adds_a_violation_is_422_policy_violation(client, gitops_remote: Path):
    with_policies(gitops_remote, entry("pinned-images"))
    head = remote_head(gitops_remote)
    refused = set_image(client, "latest")
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "policy_violation"
    assert error["details"]["violations"] == [
        {
            "policy": "pinned-images",
            "object": "Deployment/development/demo",
            "message": "container demo image ghcr.io/acme/demo:latest uses latest; pin a version",
            "action": "enforce",
            "stage": "development",
        }
    ]
    assert "pinned-images" in error["message"]
    assert remote_head(gitops_remote) == head


def test_a_promotion_gate_fails_on_what_the_promotion_would_add(client, gitops_remote: Path):
    rc = (
        VAP.replace("replica-limit", "no-release-candidates")
        .replace(
            "variables.replicas <= 3",
            "object.spec.template.spec.containers.all(c, !c.image.contains('-rc'))",
        )
        .replace(
            "messageExpression: \"'replicas ' + string(variables.replicas) + ' is more than 3'\"",
            "message: release candidates stay out of staging",
        )
    )
    third_party_commit(gitops_remote, "policies/rc.yaml", rc)
    with_policies(
        gitops_remote,
        entry("validatingAdmissionPolicies", extra="    stages: [staging, production]\n"),
    )
    assert gate(dry_run(client, "staging"), "policy")["status"] == "passed"
    assert set_image(client, "1.5.0-rc1").status_code == 200  # development is not checked
    body = dry_run(client, "staging")
    policy_gate = gate(body, "policy")
    assert policy_gate["kind"] == "policy"
    assert policy_gate["status"] == "failed", policy_gate
    assert (
        "Deployment/staging/demo: release candidates stay out of staging" in policy_gate["message"]
    )
    assert policy_gate["evidence"]["violations"][0]["policy"].endswith("/no-release-candidates")
    promoted = client.post("/api/v1/apps/demo/promotions", json={"to": "staging"}).get_json()
    assert promoted["status"] == "blocked"
    assert gate(promoted, "policy")["status"] == "failed"


def test_warn_never_refuses_and_is_reported(client, gitops_remote: Path):
    with_policies(gitops_remote, entry("pinned-images", "warn"))
    answer = set_image(client, "latest")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["warnings"] == [
        {
            "policy": "pinned-images",
            "object": "Deployment/development/demo",
            "message": "container demo image ghcr.io/acme/demo:latest uses latest; pin a version",
            "action": "warn",
            "stage": "development",
            "allowed": "warn",
        }
    ]
    entries = client.get("/api/v1/audit?app=demo&limit=1").get_json()["items"]
    assert entries[0]["after"]["policy_warnings"][0]["policy"] == "pinned-images"
    body = dry_run(client, "staging")
    policy_gate = gate(body, "policy")
    assert policy_gate["status"] == "passed"
    assert "uses latest" in policy_gate["message"]


VAP = """apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["deployments"]
  variables:
    - name: replicas
      expression: "has(object.spec.replicas) ? object.spec.replicas : 1"
  validations:
    - expression: "variables.replicas <= 3"
      messageExpression: "'replicas ' + string(variables.replicas) + ' is more than 3'"
"""


def test_a_policy_that_does_not_compile_is_refused_and_reported(client, gitops_remote: Path):
    third_party_commit(
        gitops_remote, "policies/broken.yaml", VAP.replace("variables.replicas <= 3", "variables.(")
    )
    with_policies(gitops_remote, "  - validatingAdmissionPolicies: policies/\n    action: warn\n")
    refused = toggle(client, "development", False)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "invalid_policy"
    assert "policies/broken.yaml" in refused.get_json()["error"]["message"]
    problems = client.get("/api/v1/pipeline").get_json()["problems"]
    assert [p["file"] for p in problems] == ["policies/broken.yaml"]
    assert "does not compile" in problems[0]["problem"]


def test_param_kind_is_refused_with_a_clear_message(client, gitops_remote: Path):
    third_party_commit(
        gitops_remote,
        "policies/params.yaml",
        VAP.replace("spec:\n", "spec:\n  paramKind:\n    apiVersion: v1\n    kind: ConfigMap\n", 1),
    )
    with_policies(gitops_remote, "  - validatingAdmissionPolicies: policies/\n")
    problems = client.get("/api/v1/pipeline").get_json()["problems"]
    assert "paramKind" in problems[0]["problem"]


@pytest.mark.parametrize(("staging", "status"), [(1, "failed"), (2, "passed")])
def test_parity_blocks_a_staging_too_small_to_prove_anything(
    client, gitops_remote: Path, staging, status
):
    with_policies(
        gitops_remote,
        "  - builtin: namespace-isolation\n    action: warn\n",
        parity="{with: staging, min_replica_ratio: 0.5, action: enforce}",
    )
    patch_deployment(gitops_remote, "production", deployment_patch("  replicas: 4\n"))
    patch_deployment(gitops_remote, "staging", deployment_patch(f"  replicas: {staging}\n"))
    body = dry_run(client, "production")
    parity = gate(body, "parity")
    assert parity["kind"] == "parity"
    assert parity["status"] == status, parity
    difference = f"Deployment/demo: spec.replicas: {staging} → 4"
    listed = [d["difference"] for d in parity["evidence"]["differences"]]
    assert difference in listed
    if status == "failed":
        assert difference in parity["message"]
        opened = client.post("/api/v1/apps/demo/promotions", json={"to": "production"}).get_json()
        assert opened["status"] == "blocked"
        assert gate(opened, "parity")["status"] == "failed"


def test_pipeline_errors_name_the_policy_key(client, gitops_remote: Path):
    head = remote_head(gitops_remote)
    with_policies(gitops_remote, "  - builtin: pinned-imags\n")
    problems = client.get("/api/v1/pipeline").get_json()["problems"]
    assert problems[0]["file"] == PIPELINE
    assert "policies[0].builtin" in problems[0]["problem"]
    assert "did you mean 'pinned-images'" in problems[0]["problem"]
    assert head != remote_head(gitops_remote)
