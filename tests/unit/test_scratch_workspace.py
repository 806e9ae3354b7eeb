"""The read-only workspace of a dry run: reads through the GitRepo port, writes in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.domain.errors import StageflowError
from stageflow.services.scratch import ScratchWorkspace, outward_references
from stageflow.services.scratch_folders import ScratchFolder, ScratchShelf
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


# -- kept scratch folders (a shelf) -------------------------------------------------------------

STAGING = "apps/demo/overlays/staging"


def _files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def _fresh_copy(repo: FakeGitRepo, revision: str) -> dict[str, str]:
    """What a workspace without a shelf copies for the staging overlay at ``revision``."""
    with ScratchWorkspace(repo, revision) as ws:
        return _files_under(ws.directory(STAGING).parents[3])


def _play(repo: FakeGitRepo, revision: str, shelf: ScratchShelf) -> tuple[ScratchFolder, dict]:
    with ScratchWorkspace(repo, revision, shelf) as ws:
        root = ws.directory(STAGING).parents[3]
        assert ws.folder is not None
        return ws.folder, _files_under(root)


def test_a_kept_folder_copies_only_what_changed_and_holds_what_a_fresh_copy_does(
    repo: FakeGitRepo, monkeypatch: pytest.MonkeyPatch
):
    shelf = ScratchShelf()
    head = repo.head()
    folder, first = _play(repo, head, shelf)
    assert first == _fresh_copy(repo, head)
    copied = folder.puts
    listed: list[str] = []
    list_tree = repo.tree_entries
    monkeypatch.setattr(
        repo, "tree_entries", lambda rev, path: listed.append(path) or list_tree(rev, path)
    )

    again, second = _play(repo, head, shelf)  # the same revision: nothing is copied again
    assert again is folder and shelf.made == 1
    assert second == first and folder.puts == copied and folder.removals == 0
    assert listed == []  # each folder is known by its tree id: none is even listed

    newer = repo.commit(
        {
            "apps/demo/base/deployment.yaml": "kind: Deployment\nspec: {}\n",  # changed
            "apps/demo/base/extra/config.yaml": None,  # its folder goes
            f"{STAGING}/new.yaml": "kind: Secret\n",  # added
            "apps/demo/patches/replicas.yaml": None,  # still named by staging, now missing
        }
    )
    _, third = _play(repo, newer, shelf)
    assert "apps/demo/overlays/staging" in listed and "apps/demo/base" in listed
    assert not [path for path in listed if path.startswith("components")]  # unchanged: skipped
    assert third == _fresh_copy(repo, newer)
    assert folder.puts == copied + 2  # the changed file and the added one, nothing else
    assert folder.removals == 2  # the base's extra folder, the missing patch
    shelf.close()
    assert not folder.root.exists()


def test_a_kept_folder_puts_back_what_a_workspace_wrote(repo: FakeGitRepo):
    shelf = ScratchShelf()
    head = repo.head()
    with ScratchWorkspace(repo, head, shelf) as ws:
        ws.write(f"{STAGING}/flags.json", '{"flags": {}}')
        ws.write(f"{STAGING}/added.yaml", "kind: Secret\n")
        ws.delete("apps/demo/base/deployment.yaml")
        root = ws.directory(STAGING).parents[3]
        assert (root / STAGING / "flags.json").read_text() == '{"flags": {}}'
        assert not (root / "apps/demo/base/deployment.yaml").exists()

    _, after = _play(repo, head, shelf)
    assert after == _fresh_copy(repo, head)  # the committed files again, the added one gone
    shelf.close()


def test_a_shelf_lends_a_folder_to_one_workspace_at_a_time(repo: FakeGitRepo):
    shelf = ScratchShelf(keep=1)
    head = repo.head()
    one, two = ScratchWorkspace(repo, head, shelf), ScratchWorkspace(repo, head, shelf)
    first, second = one.directory(STAGING), two.directory(STAGING)
    assert first != second and shelf.made == 2
    one.close()
    two.close()  # one folder idle already: this one goes
    assert first.exists() and not second.exists()
    shelf.close()
    assert not first.exists()
