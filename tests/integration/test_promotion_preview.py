"""The dry run's read-only preview against its oracle: the same steps run in the clone.

The preview reads the revision through the `GitRepo` port and renders from a scratch copy; the
write path renders in the clone under the write locks. Both must answer the same plan and diff.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stageflow import bootstrap
from stageflow.config import Settings
from stageflow.domain.errors import Conflict
from stageflow.domain.promotions import PromotionPlan, Selection
from stageflow.services.context import Stageflow
from stageflow.services.ports import Workspace
from stageflow.services.promotion_plans import PromotionWrite, preview
from stageflow.services.scratch import ScratchWorkspace
from stageflow.services.scratch_folders import ScratchFolder, shelf_of
from tests.builders import remote_head, third_party_commit

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class _Stop(Exception):
    def __init__(self, plan: PromotionPlan, diff: str) -> None:
        super().__init__("stop")
        self.plan, self.diff = plan, diff


def in_the_clone(sf: Stageflow, to: str, selection: Selection) -> tuple[PromotionPlan, str]:
    """The preview as it was made before: in the clone, thrown away by raising."""
    write = PromotionWrite(sf, "demo", to, selection)

    def operation(ws: Workspace):
        planned = write.write(ws)
        raise _Stop(planned.plan, planned.diff)

    with pytest.raises(_Stop) as stopped:
        sf.repo.change(operation, actor="preview", trailers={})
    return stopped.value.plan, stopped.value.diff


@pytest.fixture
def sf(settings: Settings):
    bootstrap.prepare(settings)
    built, _ = bootstrap.build(settings)
    yield built
    built.close()


@pytest.mark.parametrize(
    "selection",
    [Selection(), Selection(flags="none"), Selection(images=False)],
    ids=["everything", "images", "flags"],
)
def test_the_preview_answers_what_the_clone_answers(
    sf: Stageflow, gitops_remote: Path, selection: Selection
):
    path = "apps/demo/overlays/development/flags.json"
    text = sf.repo.read(sf.repo.head(fresh=True), path)
    assert text is not None and '"defaultVariant": "on"' in text
    third_party_commit(
        gitops_remote, path, text.replace('"defaultVariant": "on"', '"defaultVariant": "off"', 1)
    )
    head = sf.repo.head(fresh=True)

    plan, diff = preview(sf, head, "demo", "staging", selection)

    assert (plan, diff) == in_the_clone(sf, "staging", selection)
    assert bool(plan.images) == (selection.images is not False)
    assert bool(plan.flags) == (selection.flags != "none")
    assert diff.startswith("--- kustomize build apps/demo/overlays/staging (before)")


def test_the_preview_copies_what_an_overlay_reaches_outside_the_app(
    sf: Stageflow, gitops_remote: Path
):
    # a component shared by every app, reached with ../../../../: the render needs it too
    third_party_commit(
        gitops_remote,
        "components/team/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "commonAnnotations:\n  team: payments\n",
        "a shared component",
    )
    path = "apps/demo/overlays/staging/kustomization.yaml"
    text = sf.repo.read(sf.repo.head(fresh=True), path)
    assert text is not None
    third_party_commit(
        gitops_remote, path, text + "components:\n  - ../../../../components/team\n", "use it"
    )
    head = sf.repo.head(fresh=True)
    assert head == remote_head(gitops_remote)

    plan, diff = preview(sf, head, "demo", "staging", Selection())

    # without the component in the scratch copy, kustomize would refuse to render the overlay
    assert (plan, diff) == in_the_clone(sf, "staging", Selection())


def test_the_preview_takes_no_write_lock_and_leaves_the_clone_alone(sf: Stageflow):
    head = sf.repo.head(fresh=True)
    clone = Path(sf.repo.workdir)  # type: ignore[attr-defined]  # the adapter's own clone
    before = {p: p.read_bytes() for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts}

    lock = sf.repo.writes._write_lock  # type: ignore[attr-defined]  # the write queue's own lock
    lock.acquire()  # a write of this process is going on
    try:
        with ThreadPoolExecutor(1) as pool:
            plan, _ = pool.submit(preview, sf, head, "demo", "staging", Selection()).result(60)
    finally:
        lock.release()

    assert not plan.empty
    after = {p: p.read_bytes() for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before


def test_an_empty_plan_is_refused_by_the_preview_too(sf: Stageflow):
    head = sf.repo.head(fresh=True)
    with pytest.raises(Conflict) as refused:
        preview(sf, head, "demo", "staging", Selection(images=False, flags="none"))
    assert refused.value.code == "nothing_to_promote"


def test_the_scratch_workspace_keeps_writes_in_memory(sf: Stageflow):
    head = sf.repo.head(fresh=True)
    path = "apps/demo/overlays/staging/flags.json"
    with ScratchWorkspace(sf.repo, head) as ws:
        assert ws.unwritten_blob(path) == sf.repo.blob_id(head, path)
        ws.write(path, "{}")
        assert ws.read(path) == "{}" and ws.unwritten_blob(path) is None
        folder = ws.directory("apps/demo/overlays/staging")
        assert (folder / "flags.json").read_text() == "{}"
        assert (folder.parent.parent / "base" / "kustomization.yaml").exists()
        ws.delete(path)
        assert ws.read(path) is None
        ws.directory("apps/demo/overlays/staging")
        assert not (folder / "flags.json").exists()
    assert not folder.exists()  # the scratch folder goes with the workspace
    assert sf.repo.read(head, path) != "{}"


def test_previews_in_the_kept_folder_follow_new_revisions_and_go_with_the_stageflow(
    sf: Stageflow, gitops_remote: Path
):
    first = preview(sf, sf.repo.head(fresh=True), "demo", "staging", Selection())
    assert first == in_the_clone(sf, "staging", Selection())
    shelf = shelf_of(sf.repo)
    assert shelf.made == 1
    # the base changes under the kept copy: the next preview renders the new base
    path = "apps/demo/base/kustomization.yaml"
    text = sf.repo.read(sf.repo.head(fresh=True), path)
    assert text is not None
    third_party_commit(gitops_remote, path, text + "commonAnnotations:\n  team: payments\n")

    plan, diff = preview(sf, sf.repo.head(fresh=True), "demo", "staging", Selection())

    assert (plan, diff) == in_the_clone(sf, "staging", Selection())
    assert shelf.made == 1  # one folder, brought up to date:
    kept = [folder.root for folder in shelf._idle]
    assert [(root / path).read_text() for root in kept] == [
        sf.repo.read(remote_head(gitops_remote), path)
    ]
    assert all(root.parent == sf.scratch_dir for root in kept)  # the data dir's, not /tmp
    sf.close()
    assert not any(root.exists() for root in kept)


def test_a_killed_process_s_kept_folders_go_when_the_next_one_starts(
    settings: Settings, tmp_path: Path
):
    """A process that is killed removes nothing; the next shelf in the data dir does."""
    bootstrap.prepare(settings)
    scratch = settings.data_dir / "scratch"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from stageflow.services.scratch_folders import ScratchFolder\n"
        "folder = ScratchFolder.make(Path(sys.argv[1]))\n"
        "(folder.root / 'rendered.yaml').write_text('kind: Deployment')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    scratch.mkdir(parents=True, exist_ok=True)
    killed = subprocess.run([sys.executable, "-c", script, str(scratch)], check=False)
    assert killed.returncode == -9
    (left,) = scratch.iterdir()
    mine = ScratchFolder.make(scratch)  # a live process's folder stays
    other = scratch / "notes"  # and what is not a scratch folder
    other.mkdir()

    sf, _ = bootstrap.build(settings)
    try:
        preview(sf, sf.repo.head(fresh=True), "demo", "staging", Selection())
        assert not left.exists()
        assert mine.root.exists() and other.exists()
    finally:
        sf.close()
        mine.close()
