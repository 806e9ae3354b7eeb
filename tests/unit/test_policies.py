"""The pure parts of manifest policies (issue #17): parsing, built-ins, admission, parity."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.adapters.policy_engine import (
    KubernetesPolicyTools,
    compile_cel,
    parse_manifests,
    split_documents,
)
from stageflow.domain.errors import Invalid, PipelineError
from stageflow.domain.policies import PolicyError, PolicySpec, Violation
from stageflow.domain.policies.admission import check_admission, read_policy, resource_of
from stageflow.domain.policies.builtin import StageFacts, check_builtin, image_pin
from stageflow.domain.policies.model import ParitySpec, object_id
from stageflow.domain.policies.parity import Side, compare, quantity

PIPELINE = """\
apiVersion: stageflow/v1
apps:
  demo:
    path: apps/demo
stages:
  - name: development
  - name: staging
  - name: production
    parity: {with: staging, min_replica_ratio: 0.5, action: enforce}
"""
FACTS = StageFacts("staging", "staging", {"development": "development", "production": "production"})


def deployment(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": "staging", "labels": {"team": "a"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "demo",
                            "image": "ghcr.io/acme/demo:1.4.0",
                            "env": [{"name": "FLAGD_HOST", "value": "localhost"}],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                        }
                    ]
                }
            },
        },
    }
    for path, value in changes.items():
        target = obj
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return obj


def deny_all(namespace: str = "staging") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": namespace},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
        },
    }


def run(builtin: str, objects: list[dict[str, Any]], **options: Any) -> list[tuple[str, str]]:
    spec = PolicySpec(action="enforce", builtin=builtin, options=options)
    return [(v.object, v.message) for v in check_builtin(spec, objects, FACTS)]


# -- stageflow.yaml ------------------------------------------------------------------------------


def test_policies_and_parity_parse_in_the_issue_shape():
    pipeline = load_pipeline(
        PIPELINE + "policies:\n"
        "  - builtin: namespace-isolation\n    action: enforce\n    stages: [staging, production]\n"
        "  - validatingAdmissionPolicies: policies/\n    action: warn\n"
        "  - builtin: kubernetes-schema\n"
    )
    first, second, third = pipeline.policies.policies
    assert (first.builtin, first.action, first.stages) == (
        "namespace-isolation",
        "enforce",
        frozenset({"staging", "production"}),
    )
    assert (second.folder, second.action, second.stages) == ("policies", "warn", None)
    assert third.options["version"] == "1.33"
    assert pipeline.policies.parity["production"] == ParitySpec("staging", "enforce", 0.5)
    assert [p.name for p in pipeline.policies.for_stage("development")] == [
        "validatingAdmissionPolicies:policies",
        "kubernetes-schema",
    ]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        (
            "  - builtin: pinned-imags\n",
            "policies[0].builtin: \"pinned-imags\" is not known; did you mean 'pinned-images'?",
        ),
        ("  - builtin: resources\n    action: block\n", 'policies[0].action: "block" is not known'),
        (
            "  - builtin: resources\n    stages: [stagin]\n",
            "policies[0].stages[0]: there is no stage \"stagin\"; did you mean 'staging'?",
        ),
        (
            "  - builtin: resources\n    digest: required\n",
            'policies[0].digest: unknown key "digest"',
        ),
        (
            "  - builtin: pinned-images\n    digest: always\n",
            'policies[0].digest: "always" is not known',
        ),
        (
            "  - validatingAdmissionPolicies: ../elsewhere\n",
            "is not a folder inside the repository",
        ),
        ("  - action: warn\n", "policies[0]: names no policy"),
        ("  - builtin: kubernetes-schema\n    version: 1.3x\n", "is not a Kubernetes version"),
        ("  builtin: resources\n", "policies: must be a list"),
    ],
)
def test_policy_mistakes_name_the_key_and_the_fix(policies, message):
    with pytest.raises(PipelineError) as caught:
        load_pipeline(PIPELINE + "policies:\n" + policies)
    assert message in caught.value.message
    assert caught.value.message.startswith("stageflow.yaml line ")


@pytest.mark.parametrize(
    ("parity", "message"),
    [
        ("{with: stagin}", 'stages[2].parity.with: there is no stage "stagin"'),
        ("{with: production}", "names the stage itself"),
        ("{min_replica_ratio: 0.5}", "stages[2].parity.with: is missing"),
        ("{with: staging, min_replica_ratio: -1}", "is not a number of 0 or more"),
        ("{with: staging, tolerance: 1}", 'unknown key "tolerance"'),
    ],
)
def test_parity_mistakes_name_the_key(parity, message):
    text = PIPELINE.replace("{with: staging, min_replica_ratio: 0.5, action: enforce}", parity)
    with pytest.raises(PipelineError) as caught:
        load_pipeline(text)
    assert message in caught.value.message


# -- the built-ins -------------------------------------------------------------------------------


def test_namespace_isolation():
    own = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}}
    other = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "production"}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
    }
    loose = deployment(metadata={"name": "loose"})
    assert run("namespace-isolation", [own, deployment()]) == []
    found = run(
        "namespace-isolation", [other, role, deployment(metadata__namespace="production"), loose]
    )
    assert [obj for obj, _ in found] == [
        "Namespace/production",
        "ClusterRole/r",
        "Deployment/production/demo",
        "Deployment/loose",
    ]
    assert "the namespace of stage production" in found[2][1]
    assert "has no namespace" in found[3][1]
    assert run("namespace-isolation", [role], cluster_wide=["ClusterRole/r"]) == []


def test_network_isolation():
    assert run("network-isolation", [deny_all()]) == []
    assert run("network-isolation", [])[0][0] == "Namespace/staging"
    assert run("network-isolation", [deny_all("production")])[0][0] == "Namespace/staging"
    admits = deny_all()
    admits["spec"]["ingress"].append(
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "production"}
                    }
                }
            ]
        }
    )
    everyone = deny_all()
    everyone["spec"]["ingress"] = [{"from": [{"namespaceSelector": {}}]}, {}]
    assert run("network-isolation", [admits]) == [
        ("NetworkPolicy/staging/deny", "ingress[1] admits namespace production of stage production")
    ]
    assert [m for _, m in run("network-isolation", [everyone])] == [
        "ingress[0] admits every namespace (namespaceSelector: {}), other stages' too",
        "ingress[1] admits traffic from everywhere (no from:); name the pods it admits",
    ]


@pytest.mark.parametrize(
    ("image", "tag", "digest"),
    [
        ("nginx", None, None),
        ("nginx:1.27", "1.27", None),
        ("localhost:5000/nginx", None, None),
        ("localhost:5000/nginx:1", "1", None),
        ("nginx@sha256:abc", None, "sha256:abc"),
        ("nginx:1@sha256:abc", "1", "sha256:abc"),
    ],
)
def test_image_pin(image, tag, digest):
    assert image_pin(image) == (tag, digest)


def test_pinned_images():
    def with_image(image: str) -> dict[str, Any]:
        return deployment(spec__template__spec__containers__0__image=image)

    assert run("pinned-images", [deployment()]) == []
    assert "uses latest" in run("pinned-images", [with_image("nginx:latest")])[0][1]
    assert "has no tag" in run("pinned-images", [with_image("localhost:5000/nginx")])[0][1]
    assert "requires @sha256" in run("pinned-images", [deployment()], digest="required")[0][1]
    assert run("pinned-images", [with_image("nginx@sha256:abc")], digest="required") == []


def test_resources_every_container_of_every_pod_kind():
    bare = deployment()
    del bare["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "staging"},
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "run", "image": "x:1"}]}}}
            }
        },
    }
    assert run("resources", [deployment()]) == []
    assert run("resources", [bare, job]) == [
        ("Deployment/staging/demo", "container demo has no resources.limits.memory; set them"),
        (
            "CronJob/staging/nightly",
            "container run has no resources.requests.cpu, resources.requests.memory, "
            "resources.limits.memory; set them",
        ),
    ]


def test_kubernetes_schema_catches_typos_and_types_and_lists_unknown_kinds():
    tools = KubernetesPolicyTools()
    typo = deployment()
    typo["spec"]["replica"] = 3
    typo["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    typed = copy.deepcopy(typo)
    del typed["spec"]["replica"]
    typed["spec"]["replicas"] = "3"
    crd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    found, unknown = tools.schema_findings([typo, typed, crd], "1.33", True)
    assert found == [
        (0, "spec: Additional properties are not allowed ('replica' was unexpected)"),
        (1, "spec.replicas: '3' is not of type 'integer', 'null'"),
    ]
    assert unknown == ["Widget (example.com/v1)"]


def test_kubernetes_schema_findings_are_held_by_each_objects_contents():
    tools = KubernetesPolicyTools()
    good, service = deployment(), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    good["spec"]["selector"] = {"matchLabels": {"app": "demo"}}
    assert tools.schema_findings([good, service], "1.33", True) == ([], [])
    assert tools.validated == 2

    # the same contents (another dict) are not validated again, whatever their place
    assert tools.schema_findings([copy.deepcopy(service), good], "1.33", True) == ([], [])
    assert tools.validated == 2

    # a changed object is validated again, and its findings are its own
    changed = copy.deepcopy(good)
    changed["spec"]["replicas"] = "3"  # the text of the number: not the same contents
    found, _ = tools.schema_findings([service, changed], "1.33", True)
    assert found == [(1, "spec.replicas: '3' is not of type 'integer', 'null'")]
    assert tools.validated == 3
    # another version or strictness is another check
    tools.schema_findings([service], "1.32", True)
    tools.schema_findings([service], "1.33", False)
    assert tools.validated == 5


STREAM = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  kept: |+\n    on\n\n"
    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n"
    "  template:\n    spec:\n      containers:\n      - image: ghcr.io/acme/demo:1.0.0\n"
    "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: demo\n"
)


def test_rendered_documents_are_parsed_once_each_as_the_whole_stream_reads_them():
    tools = KubernetesPolicyTools()
    assert tools.parse_manifests(STREAM) == parse_manifests(STREAM)
    assert tools.parse_manifests(STREAM)[0]["data"] == {"kept": "on\n\n"}  # "|+" keeps both
    assert tools.parsed == 3

    # a promotion's next render: only the changed document is parsed
    promoted = STREAM.replace("demo:1.0.0", "demo:1.1.0")
    objects = tools.parse_manifests(promoted)
    assert objects == parse_manifests(promoted) and tools.parsed == 4
    assert objects[1]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.1.0")


@pytest.mark.parametrize(
    "stream",
    [
        "--- !!map\nkind: A\n---\nkind: B\n",  # content on a marker's line
        "kind: A\n...\n---\nkind: B\n",  # a document end
        "%YAML 1.1\n---\nkind: A\n",  # a directive
        "kind: A\n---",  # a last marker without a line break
    ],
)
def test_a_stream_that_does_not_split_plainly_is_parsed_whole(stream: str):
    tools = KubernetesPolicyTools()
    assert split_documents(stream) is None
    assert tools.parse_manifests(stream) == parse_manifests(stream)


def test_a_broken_document_is_reported_as_in_the_whole_stream():
    broken = STREAM.replace("name: demo\nspec:", "name: [demo\nspec:")
    with pytest.raises(Invalid) as whole:
        parse_manifests(broken)
    with pytest.raises(Invalid) as split:
        KubernetesPolicyTools().parse_manifests(broken)
    assert split.value.message == whole.value.message


# -- ValidatingAdmissionPolicy ------------------------------------------------------------------

VAP: dict[str, Any] = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "limits"},
    "spec": {
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "variables": [{"name": "team", "expression": "object.metadata.labels['team']"}],
        "validations": [
            {"expression": "object.spec.replicas <= 3", "message": "at most 3 replicas"},
            {
                "expression": "variables.team.startsWith('platform')",
                "messageExpression": "'team ' + variables.team + ' may not deploy here'",
            },
            {"expression": "has(object.spec.paused)"},
        ],
    },
}


def test_a_validating_admission_policy_runs_its_cel_on_matching_objects():
    policy = read_policy(VAP, "policies/limits.yaml", compile_cel)
    spec = PolicySpec(action="warn", folder="policies")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo"}}
    found = check_admission(spec, [policy], [deployment(spec__replicas=5), service], "staging")
    assert found == [
        Violation(
            "validatingAdmissionPolicies:policies/limits",
            "Deployment/staging/demo",
            message,
            "warn",
            "staging",
        )
        for message in (
            "at most 3 replicas",
            "team a may not deploy here",
            "failed expression: has(object.spec.paused)",
        )
    ]


def test_an_evaluation_error_fails_closed_and_says_why():
    policy = read_policy(VAP, "policies/limits.yaml", compile_cel)
    unlabelled = deployment(metadata={"name": "demo", "namespace": "staging"})
    assert policy.check(unlabelled) == ["variable team could not be evaluated: no such key: labels"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"paramKind": {"kind": "ConfigMap"}}, "uses paramKind, which Stageflow does not support"),
        ({"validations": [{"expression": "object.spec.("}]}, "validations[0] does not compile"),
        ({"validations": []}, "has no validations"),
        ({"matchConstraints": {}}, "has no matchConstraints.resourceRules"),
    ],
)
def test_a_policy_that_cannot_be_used_is_refused(change, problem):
    document = copy.deepcopy(VAP)
    document["spec"].update(change)
    with pytest.raises(PolicyError) as caught:
        read_policy(document, "policies/limits.yaml", compile_cel)
    assert caught.value.message.startswith("policies/limits.yaml: ValidatingAdmissionPolicy limits")
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        ("Deployment", "deployments"),
        ("Ingress", "ingresses"),
        ("NetworkPolicy", "networkpolicies"),
        ("Endpoints", "endpoints"),
        ("Gateway", "gateways"),
        ("Policy", "policies"),
    ],
)
def test_resource_of(kind, resource):
    assert resource_of(kind) == resource


# -- parity --------------------------------------------------------------------------------------

PARITY = ParitySpec("staging", min_replica_ratio=0.5)


def side(stage: str, *objects: dict[str, Any]) -> Side:
    return Side(stage, stage, list(objects))


def production(**changes: Any) -> dict[str, Any]:
    return deployment(metadata__namespace="production", **changes)


@pytest.mark.parametrize(("staging", "fails"), [(1, True), (2, False), (3, False)])
def test_replicas_below_the_ratio_fail(staging, fails):
    found = compare(
        PARITY,
        side("staging", deployment(spec__replicas=staging)),
        side("production", production(spec__replicas=4)),
    )
    assert [d.describe() for d in found] == [f"Deployment/demo: spec.replicas: {staging} → 4"]
    assert found[0].fails is fails


def test_what_is_meant_to_differ_is_normalised_away():
    ours = deployment(
        metadata={
            "name": "demo-staging",
            "namespace": "staging",
            "labels": {"team": "a", "stage": "staging"},
        }
    )
    theirs = production(
        metadata={
            "name": "demo-production",
            "namespace": "production",
            "labels": {"team": "a", "stage": "production"},
        }
    )
    theirs["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/demo:1.3.2"
    flags = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "demo-flags-abc123def4"},
        "data": {"flags.json": "{}"},
    }
    other_flags = {
        **flags,
        "metadata": {"name": "demo-flags-zzz999yyy8"},
        "data": {"flags.json": '{"x": 1}'},
    }
    found = compare(
        PARITY,
        side("staging", ours, flags),
        side("production", theirs, other_flags),
        ["ghcr.io/acme/demo"],
    )
    assert found == []


def test_missing_objects_env_names_and_requests_fail_other_differences_are_listed():
    ours = deployment()
    ours["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "DEBUG", "value": "1"}]
    ours["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "16Mi"
    ours["metadata"]["labels"]["tier"] = "x"
    theirs = production()
    extra = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "demo", "namespace": "production"},
    }
    found = {
        d.describe(): d.rule
        for d in compare(PARITY, side("staging", ours), side("production", theirs, extra))
    }
    containers = "spec.template.spec.containers[demo]"
    assert found == {
        "Service/demo: (object): missing in staging → present": "missing",
        f'Deployment/demo: {containers}.env[DEBUG].name: "DEBUG" → (absent)': "env",
        f'Deployment/demo: {containers}.env[DEBUG].value: "1" → (absent)': None,
        f'Deployment/demo: {containers}.env[FLAGD_HOST].name: (absent) → "FLAGD_HOST"': "env",
        f'Deployment/demo: {containers}.env[FLAGD_HOST].value: (absent) → "localhost"': None,
        f'Deployment/demo: {containers}.resources.requests.memory: "16Mi" → "64Mi"': "requests",
        'Deployment/demo: metadata.labels.tier: "x" → (absent)': None,
    }
    ignoring = ParitySpec("staging", ignore=("metadata.labels",))
    assert not any(
        "labels" in d.path
        for d in compare(ignoring, side("staging", ours), side("production", theirs))
    )


def test_requests_within_the_tolerance_pass():
    ours = deployment(
        spec__template__spec__containers__0__resources={
            "requests": {"cpu": "40m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
    )
    found = compare(PARITY, side("staging", ours), side("production", production()))
    assert [(d.path, d.fails) for d in found] == [
        ("spec.template.spec.containers[demo].resources.requests.cpu", False)
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("50m", 0.05), ("64Mi", 64 * 2**20), ("2", 2.0), ("1e3", 1000.0), ("x", None)],
)
def test_quantity(text, value):
    assert quantity(text) == value


def test_violations_see_through_generated_hashes():
    a = Violation("p", "ConfigMap/staging/demo-flags-abc123def4", "m", stage="staging")
    b = Violation("p", "ConfigMap/staging/demo-flags-zzz999yyy8", "m", stage="staging")
    assert a.identity == b.identity
    assert object_id({"kind": "Namespace", "metadata": {"name": "x"}}) == "Namespace/x"


def test_the_cli_lists_every_parity_difference():
    from stageflow.cli.promotions import parity_rows

    promotion = {
        "gates": [
            {"kind": "hold", "evidence": {}},
            {
                "kind": "parity",
                "evidence": {
                    "differences": [
                        {
                            "difference": "Deployment/demo: spec.replicas: 1 → 4",
                            "rule": "replicas",
                            "fails": True,
                        },
                        {
                            "difference": 'Service/demo: metadata.labels.x: (absent) → "y"',
                            "rule": None,
                            "fails": False,
                        },
                    ]
                },
            },
        ]
    }
    assert parity_rows(promotion) == [
        ("Deployment/demo: spec.replicas: 1 → 4", "replicas", "fails"),
        ('Service/demo: metadata.labels.x: (absent) → "y"', "", "listed"),
    ]


def test_the_cli_prints_the_warnings_of_a_write(capsys):
    from stageflow.cli.output import emit_done as _flag_done

    answer = {
        "revision": "0123456789abcdef",
        "warnings": [
            {
                "policy": "pinned-images",
                "object": "Deployment/development/demo",
                "message": "container demo image ghcr.io/acme/demo:latest uses latest",
                "allowed": "warn",
            }
        ],
    }
    _flag_done("table", answer, "demo/development runs ghcr.io/acme/demo:latest")
    out = capsys.readouterr().out
    assert "policy pinned-images: Deployment/development/demo: container demo image" in out
    assert "[warn]" in out


def test_the_policy_memo_is_bounded_by_weight_least_recently_used_first():
    from stageflow.services.policy_memos import PolicyMemo

    held = PolicyMemo(max_weight=10)
    held.put("a", "A", 4)
    held.put("b", "B", 4)
    assert held.peek("a") == "A"  # a use: b is now the oldest
    held.put("c", "C", 4)
    assert (held.peek("a"), held.peek("b"), held.peek("c")) == ("A", None, "C")
    assert held.weight == 8
    assert held.get("d", lambda: "D" * 20, len) == "D" * 20  # alone over the bound, it stays
    assert len(held) == 1
