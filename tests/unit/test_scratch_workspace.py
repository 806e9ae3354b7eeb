"""The read-only workspace of a dry run: reads through the GitRepo port, writes in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.domain.errors import StageflowError
from stageflow.services.scratch import ScratchWorkspace, outward_references
from tests.fakes import FakeGitRepo

FILES = {
    "apps/demo/base/kustomization.yaml": "resources: [deployment.yaml]\n",
    "apps/demo/base/deployment.yaml": "kind: Deployment\r\n",
    "apps/demo/base/extra/config.yaml": "kind: ConfigMap\n",
    "apps/demo/overlays/staging/kustomization.yaml": (
        "resources:\n  - ../../base\n  - https://example.com/x/../y.yaml\n"
        "components:\n  - ../../../../components/team\n"
        "patches:\n  - path: ../../patches/replicas.yaml\n"
    ),
    "apps/demo/overlays/staging/flags.json": "{}",
    "apps/demo/overlays/production/kustomization.yaml": "resources: [../../base]\n",
    "apps/demo/patches/replicas.yaml": "replicas: 2\n",
    "components/team/kustomization.yaml": "kind: Component\n",
    "components/other/kustomization.yaml": "kind: Component\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> FakeGitRepo:
    return FakeGitRepo(FILES, tmp_path)


def test_outward_references_are_the_paths_named_with_dot_dot():
    text = FILES["apps/demo/overlays/staging/kustomization.yaml"]
    assert outward_references("apps/demo/overlays/staging", text) == [
        "apps/demo/base",
        "components/team",
        "apps/demo/patches/replicas.yaml",
    ]
    assert outward_references("apps", "resources: [../../../etc/passwd, ..]") == []


def test_a_render_folder_holds_what_the_kustomization_reaches_and_nothing_else(repo: FakeGitRepo):
    with ScratchWorkspace(repo, repo.head()) as ws:
        folder = ws.directory("apps/demo/overlays/staging")
        ws.directory("apps/demo/overlays/production")  # the base is copied once
        root = folder.parents[3]
        copied = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    assert copied == sorted(
        [
            "apps/demo/base/deployment.yaml",
            "apps/demo/base/extra/config.yaml",
            "apps/demo/base/kustomization.yaml",
            "apps/demo/overlays/production/kustomization.yaml",
            "apps/demo/overlays/staging/flags.json",
            "apps/demo/overlays/staging/kustomization.yaml",
            "apps/demo/patches/replicas.yaml",
            "components/team/kustomization.yaml",
        ]
    )
    assert not root.exists()


def test_reads_see_the_writes_and_translate_newlines_as_the_clone_does(repo: FakeGitRepo):
    head = repo.head()
    ws = ScratchWorkspace(repo, head)
    assert ws.read("apps/demo/base/deployment.yaml") == "kind: Deployment\n"
    assert (
        ws.read("apps/demo/./base/kustomization.yaml") == FILES["apps/demo/base/kustomization.yaml"]
    )

    ws.write("apps/demo/overlays/staging/flags.json", '{"flags": {}}')
    ws.delete("apps/demo/overlays/production/kustomization.yaml")
    ws.delete("apps/demo/overlays/production/absent.yaml")  # nothing to delete

    assert ws.read("apps/demo/overlays/staging/flags.json") == '{"flags": {}}'
    assert ws.unwritten_blob("apps/demo/overlays/staging/flags.json") is None
    assert ws.read("apps/demo/overlays/production/kustomization.yaml") is None
    assert ws.read("apps/demo/overlays/production/absent.yaml") is None
    assert repo.read(head, "apps/demo/overlays/production/kustomization.yaml") is not None
    folder = ws.directory("apps/demo/overlays/production")
    assert not (folder / "kustomization.yaml").exists()
    ws.close()
    ws.close()  # closing twice is harmless
    assert repo.changes == 0


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "apps/../..", "."])
def test_a_path_that_leaves_the_repository_is_refused(repo: FakeGitRepo, path: str):
    ws = ScratchWorkspace(repo, repo.head())
    with pytest.raises(StageflowError, match="leaves the repository"):
        ws.read(path)
    with pytest.raises(StageflowError, match="leaves the repository"):
        ws.write(path, "x")
