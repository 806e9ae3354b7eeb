"""KubectlKustomize with the real `kubectl kustomize`: renders, refusals and a missing binary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stageflow.adapters.kustomize import KubectlKustomize, find_kustomize
from stageflow.api.errors import status_of
from stageflow.domain.errors import RenderFailed, Unavailable
from tests.builders import rendered_config_map, rendered_objects
from tests.conftest import SEED


@pytest.fixture
def starter(tmp_path: Path) -> Path:
    """A writable copy of the starter GitOps repo."""
    root = tmp_path / "gitops"
    shutil.copytree(SEED, root)
    return root


@pytest.fixture
def renderer() -> KubectlKustomize:
    return KubectlKustomize.from_setting()


@pytest.mark.parametrize("stage", ["development", "staging", "production"])
def test_every_starter_overlay_renders(renderer, starter: Path, stage: str):
    stream = renderer.render(starter / "apps/demo/overlays" / stage)

    objects = rendered_objects(stream)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "ConfigMap", "Namespace"} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == stage
    config_map = rendered_config_map(stream)
    assert config_map["metadata"]["name"].startswith("demo-flags-")  # content hash: pods roll
    flags = json.loads(config_map["data"]["flags.json"])
    assert flags == json.loads((starter / "apps/demo/overlays" / stage / "flags.json").read_text())


def test_a_changed_flag_file_changes_the_config_map_name(renderer, starter: Path):
    overlay = starter / "apps/demo/overlays/development"
    before = rendered_config_map(renderer.render(overlay))["metadata"]["name"]
    doc = json.loads((overlay / "flags.json").read_text())
    doc["flags"]["new_ui"]["defaultVariant"] = "off"
    (overlay / "flags.json").write_text(json.dumps(doc))

    after = rendered_config_map(renderer.render(overlay))["metadata"]["name"]

    assert after != before


def test_a_broken_overlay_is_refused_with_kustomizes_words(renderer, starter: Path):
    overlay = starter / "apps/demo/overlays/staging"
    with (overlay / "kustomization.yaml").open("a") as handle:
        handle.write("patches:\n  - path: missing-patch.yaml\n")

    with pytest.raises(RenderFailed) as raised:
        renderer.render(overlay)

    assert status_of(raised.value) == 422
    assert raised.value.code == "render_failed"
    assert "missing-patch.yaml" in raised.value.message
    assert "Nothing was committed" in raised.value.message
    assert "missing-patch.yaml" in raised.value.details["kustomize"]
    # the private clone's absolute path means nothing to a client
    assert str(overlay.parent) not in raised.value.message


def test_invalid_yaml_is_refused(renderer, starter: Path):
    overlay = starter / "apps/demo/overlays/development"
    (overlay / "kustomization.yaml").write_text("resources: [\n")

    with pytest.raises(RenderFailed):
        renderer.render(overlay)


def test_the_version_names_kustomize(renderer):
    assert "v" in renderer.version()


def test_a_missing_binary_is_unavailable_for_render_and_version(starter: Path):
    renderer = KubectlKustomize.from_setting("/nonexistent/kustomize build")

    with pytest.raises(Unavailable) as rendering:
        renderer.render(starter / "apps/demo/overlays/development")
    assert status_of(rendering.value) == 503
    assert rendering.value.code == "kustomize_unavailable"
    assert "STAGEFLOW_KUSTOMIZE" in rendering.value.message

    with pytest.raises(Unavailable) as probing:
        renderer.version()
    assert probing.value.code == "kustomize_unavailable"
    assert "/nonexistent/kustomize" in probing.value.message


def test_a_file_that_is_not_executable_is_unavailable(tmp_path: Path, starter: Path):
    plain = tmp_path / "kustomize"
    plain.write_text("not a program")
    renderer = KubectlKustomize([str(plain), "build"])

    with pytest.raises(Unavailable):
        renderer.render(starter / "apps/demo/overlays/development")
    with pytest.raises(Unavailable):
        renderer.version()


def test_no_renderer_at_all_is_unavailable(starter: Path):
    renderer = KubectlKustomize([])

    assert renderer.describe() == "(no kustomize found)"
    with pytest.raises(Unavailable):
        renderer.render(starter / "apps/demo/overlays/development")
    with pytest.raises(Unavailable):
        renderer.version()


def test_a_render_that_hangs_is_refused(starter: Path):
    # `exec` so that the timeout's kill reaches the sleeping process itself
    renderer = KubectlKustomize(["sh", "-c", "exec sleep 30", "render"], timeout=0.2)

    with pytest.raises(RenderFailed) as raised:
        renderer.render(starter / "apps/demo/overlays/development")
    assert "STAGEFLOW_RENDER_TIMEOUT" in raised.value.message


def test_the_configured_command_is_split_like_a_shell_would():
    assert find_kustomize("kubectl kustomize") == ["kubectl", "kustomize"]
    assert find_kustomize("'/opt/my tools/kustomize' build") == ["/opt/my tools/kustomize", "build"]
    assert find_kustomize("")[-1] in {"build", "kustomize"}
