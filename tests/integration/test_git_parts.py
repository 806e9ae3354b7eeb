"""The read-side parts of the Git adapter, each built alone over a real bare remote: ref files,
git's environment, the remote's status, the clone, the remote head and the object store."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stageflow.adapters.git.clone import Clone
from stageflow.adapters.git.environment import GIT_ENV, Origin, auth_env, is_local, redact_url
from stageflow.adapters.git.objects import BlobCache, Memo, ObjectStore
from stageflow.adapters.git.refs import RefFiles, is_full_sha, object_id
from stageflow.adapters.git.remote import RemoteHead
from stageflow.adapters.git.status import RemoteStatus
from stageflow.domain.errors import NotFound, Unavailable
from tests.builders import remote_head, remote_log, third_party_commit
from tests.conftest import git

SHA = "0123456789abcdef0123456789abcdef01234567"
EXTRA = "apps/demo/overlays/staging/extra.yaml"  # a file a third party adds

MakeClone = Callable[..., Clone]


@pytest.fixture
def make_clone(tmp_path: Path, gitops_remote: Path) -> Iterator[MakeClone]:
    """Build clones of the remote under one clones dir (given back at the end of the test)."""
    made: list[Clone] = []

    def make(url: Path | str = gitops_remote, **hooks: Callable[[], None]) -> Clone:
        origin = Origin(str(url), "main", dict(GIT_ENV))
        status = RemoteStatus(origin.display_url)
        clone = Clone(origin, tmp_path / "clones", status, RefFiles(), **hooks)
        made.append(clone)
        return clone

    yield make
    for clone in made:
        clone.abandon()


# -- refs -------------------------------------------------------------------------------------


def test_ref_files_read_loose_then_packed_refs(gitops_remote: Path):
    refs = RefFiles()
    head = remote_head(gitops_remote)
    assert refs.read(gitops_remote, "refs/heads/main") == head
    assert refs.read(gitops_remote, "refs/heads/main") == head  # the remembered answer

    git("--git-dir", str(gitops_remote), "pack-refs", "--all", "--prune")
    assert refs.read(gitops_remote, "refs/heads/main") == head
    newer = third_party_commit(gitops_remote, "hand/edit.txt", "x\n")  # loose again, renamed in
    assert refs.read(gitops_remote, "refs/heads/main") == newer


def test_ref_files_leave_what_is_unusual_to_git(gitops_remote: Path):
    refs = RefFiles()
    assert refs.read(gitops_remote, "HEAD") is None  # a symbolic ref
    assert refs.read(gitops_remote, "refs/heads/nope") is None
    (gitops_remote / "reftable").mkdir()
    git("--git-dir", str(gitops_remote), "pack-refs", "--all", "--prune")
    assert refs.read(gitops_remote, "refs/heads/main") is None  # not read from packed-refs


def test_object_ids_are_gits(tmp_path: Path):
    file = tmp_path / "f"
    file.write_bytes(b"some bytes\n")
    assert object_id(b"blob", b"some bytes\n", SHA) == git("hash-object", str(file)).strip()
    assert len(object_id(b"blob", b"", "0" * 64)) == 64  # a SHA-256 repository's ids
    assert is_full_sha(SHA) and not is_full_sha(SHA[:12]) and not is_full_sha("main")


# -- environment ------------------------------------------------------------------------------


def test_an_origin_names_its_refs_and_says_where_it_is(tmp_path: Path):
    local = Origin(str(tmp_path / "r.git"), "prod")
    assert local.local and local.path == tmp_path / "r.git"
    assert (local.branch_ref, local.tracking_ref) == ("refs/heads/prod", "refs/remotes/origin/prod")
    assert Origin(f"file://{tmp_path}/r.git", "main").path == tmp_path / "r.git"
    network = Origin("https://user:secret@git.example.com/r.git", "main")
    assert not network.local and network.display_url == "https://git.example.com/r.git"
    assert network.process_env(EXTRA="1")["EXTRA"] == "1"
    assert network.env == GIT_ENV


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/srv/gitops.git", True),
        ("gitops.git", True),
        ("file:///srv/gitops.git", True),
        ("git@github.com:org/gitops.git", False),
        ("ssh://git@host/gitops.git", False),
        ("https://host/gitops.git", False),
    ],
)
def test_local_remotes_are_paths(url: str, local: bool):
    assert is_local(url) is local


def test_credentials_stay_out_of_urls_and_command_lines():
    assert redact_url("https://x:tok@host:8443/r.git") == "https://host:8443/r.git"
    assert redact_url("git@host:r.git") == "git@host:r.git"
    env = auth_env(ssh_key="/k ey", ssh_known_hosts="/known", token="tok")
    assert (
        "-i '/k ey'" in env["GIT_SSH_COMMAND"]
        and "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"]
    )
    assert env["STAGEFLOW_GIT_TOKEN"] == "tok" and "tok" not in env["GIT_CONFIG_VALUE_1"]
    assert auth_env() == {}


# -- the remote's status ----------------------------------------------------------------------


def test_the_status_starts_and_ends_an_outage():
    status = RemoteStatus("https://host/r.git")
    assert status.down is None and status.contact_age() is None
    status.objects_gone()  # nothing to blame while the remote answers

    status.lost(Unavailable("the remote is gone"))
    since = status.down
    status.lost(Unavailable("still gone"))
    assert status.down is since and since is not None and since.message == "the remote is gone"
    with pytest.raises(Unavailable, match="cannot be read until it is back"):
        status.objects_gone()

    status.contact()
    assert status.down is None and status.contact_age() is not None
    status.unreachable("cannot clone")
    assert status.down is not None and status.down.message == "cannot clone"


# -- the clone --------------------------------------------------------------------------------


def test_a_clone_takes_a_free_slot_and_tracks_the_remote_head(make_clone, gitops_remote: Path):
    opened: list[str] = []
    first = make_clone(on_open=lambda: opened.append("first"))
    second = make_clone()

    first.open()
    second.open()

    assert opened == ["first"]
    assert first.workdir is not None and second.workdir is not None
    assert (first.workdir.name, second.workdir.name) == ("slot-0", "slot-1")
    head = remote_head(gitops_remote)
    assert first.tracking() == first.head() == first.clean_at == head
    assert first.has_commit(head) and not first.has_commit(SHA)
    assert first.rev_parse(head[:10].upper()) == head and first.rev_parse(SHA) is None


def test_a_clone_of_a_local_remote_catches_up_in_memory(make_clone, gitops_remote: Path):
    clone = make_clone()
    clone.open()
    base = clone.tracking()
    third = third_party_commit(gitops_remote, "hand/edit.txt", "x\n")

    clone.fetch()  # the remote's objects are borrowed: a ref read, no `git fetch`

    assert clone.tracking() == third and clone.is_ancestor(base, third)
    assert not clone.is_ancestor(third, base)
    clone.reset(third)
    assert clone.head() == third == clone.clean_at
    stray = Path(clone.repo.working_tree_dir or "") / "stray.txt"
    stray.write_text("left behind")
    clone.restore(base)
    assert clone.head() == base and not stray.exists()


def test_a_reopened_slot_reuses_its_clone(make_clone):
    clone = make_clone()
    clone.open()
    workdir = clone.workdir
    assert workdir is not None
    marker = workdir / ".git" / "reused"
    marker.write_text("")
    (workdir / ".git" / "index.lock").write_text("")  # a crash mid-command left it

    clone.abandon()
    clone.open()

    assert clone.workdir == workdir and marker.exists()
    assert not (workdir / ".git" / "index.lock").exists()


def test_a_fetch_opens_a_clone_not_opened_yet(make_clone, gitops_remote: Path):
    clone = make_clone()  # opening fetches: a fetch that opened under its lock would hang
    fetching = threading.Thread(target=clone.fetch, daemon=True)
    fetching.start()
    fetching.join(timeout=60)

    assert not fetching.is_alive(), "the fetch waits for itself"
    assert clone.tracking() == remote_head(gitops_remote)


def test_a_clone_without_a_remote_fails_to_open_and_says_so(make_clone, tmp_path: Path):
    clone = make_clone(tmp_path / "nowhere.git")
    with pytest.raises(Unavailable, match="cannot clone"):
        clone.open()
    assert not clone.is_open and clone.status.down is not None
    with pytest.raises(Unavailable, match="cannot clone"):  # asked again at most once a second
        clone.open()


# -- the remote head --------------------------------------------------------------------------


def test_the_head_of_a_local_remote_is_read_and_followed(make_clone, gitops_remote: Path):
    clone = make_clone()
    remote = RemoteHead(clone, ttl=60.0)
    assert remote.head() == remote_head(gitops_remote)

    third = third_party_commit(gitops_remote, "hand/edit.txt", "x\n")

    assert remote.head() == third == remote.peek(waited=False)  # a file: never stale
    assert clone.has_commit(third)
    assert clone.status.contact_age() is not None


def test_an_unreachable_remote_answers_the_last_head_seen(make_clone, gitops_remote: Path):
    clone = make_clone()
    remote = RemoteHead(clone, ttl=0.0)
    seen = remote.head()
    moved = gitops_remote.with_name("moved.git")
    shutil.move(gitops_remote, moved)
    try:
        assert remote.head() == seen
        assert clone.status.down is not None and "does not exist" in clone.status.down.message
        with pytest.raises(Unavailable, match="does not exist"):
            remote.ask()
    finally:
        shutil.move(moved, gitops_remote)
    assert remote.head() == seen and clone.status.down is None


def test_a_pushed_head_is_not_overwritten_by_an_older_answer(
    make_clone, gitops_remote: Path, monkeypatch: pytest.MonkeyPatch
):
    clone = make_clone()
    remote = RemoteHead(clone, ttl=60.0)
    seed = remote.head()
    asked = remote.ask
    newer: list[str] = []

    def slow_ask() -> str:
        old = asked()
        newer.append(third_party_commit(gitops_remote, "hand/edit.txt", "x\n"))
        clone.fetch()
        remote.pushed(newer[0])  # as a write of this process would, meanwhile
        return old

    monkeypatch.setattr(remote, "ask", slow_ask)
    assert remote.head(fresh=True) == seed
    monkeypatch.setattr(remote, "ask", asked)
    assert remote.head() == newer[0]


# -- the object store -------------------------------------------------------------------------


def test_the_object_store_reads_blobs_trees_and_history(make_clone, gitops_remote: Path):
    clone = make_clone()
    objects = ObjectStore(clone, cache_size=64, blob_cache_bytes=2**20)
    seed = remote_head(gitops_remote)
    third = third_party_commit(gitops_remote, "hand/edit.txt", "by hand\n")
    clone.fetch()

    blob = objects.blob_id(third, "hand/edit.txt")
    assert (
        blob == git("--git-dir", str(gitops_remote), "rev-parse", f"{third}:hand/edit.txt").strip()
    )
    assert objects.read_blob(blob) == b"by hand\n" and objects.read(third, "hand/edit.txt")
    assert objects.blob_id(third, "hand") is None and objects.blob_id(third, "nope") is None
    assert objects.tree_id(third, "hand") is not None and objects.tree_id(third, "nope") is None
    assert objects.tree_entries(third, "hand") == {"edit.txt": blob}
    assert objects.tree_entries(third, "hand/edit.txt") == {}
    assert objects.last_change(third, ["hand", "nope"]) == third
    assert objects.last_change(third, ["stageflow.yaml"]) == seed
    assert objects.parent_of(third) == seed and objects.parent_of(seed) is None
    with pytest.raises(NotFound) as raised:
        objects.blob_id(SHA, "stageflow.yaml")
    assert raised.value.code == "revision_not_found"


def test_the_object_store_reads_each_tree_once_by_its_id(make_clone, gitops_remote: Path):
    clone = make_clone()
    objects = ObjectStore(clone, cache_size=64, blob_cache_bytes=2**20)
    seed = remote_head(gitops_remote)
    base = objects.tree_id(seed, "apps/demo/base")
    deployment = objects.blob_id(seed, "apps/demo/base/deployment.yaml")
    staging = objects.tree_entries(seed, "apps/demo/overlays/staging")
    assert "extra.yaml" not in staging
    third = third_party_commit(gitops_remote, EXTRA, "x: 1\n")
    clone.fetch()
    read = objects.trees.reads

    # the changed folder is read anew at the new revision...
    changed = objects.tree_entries(third, "apps/demo/overlays/staging")
    assert changed == {**staging, "extra.yaml": objects.blob_id(third, EXTRA)}
    # ...and the unchanged base is known by its id, without reading it again
    assert objects.tree_id(third, "apps/demo/base") == base
    assert objects.blob_id(third, "apps/demo/base/deployment.yaml") == deployment
    assert objects.tree_entries(third, "apps/demo/base") == objects.tree_entries(
        seed, "apps/demo/base"
    )
    # the root, apps, apps/demo, apps/demo/overlays and the staging overlay: the trees it changed
    assert objects.trees.reads - read == 5

    def rev_parse(path: str) -> str:
        return git("--git-dir", str(gitops_remote), "rev-parse", f"{third}:{path}").strip()

    assert objects.tree_id(third, "apps/demo/overlays/staging") == rev_parse(
        "apps/demo/overlays/staging"
    )
    assert objects.blob_id(third, EXTRA) == rev_parse(EXTRA)
    # the kinds are kept apart, and a path through a file or a missing name resolves to nothing
    assert objects.blob_id(third, "apps/demo") is None
    assert objects.tree_id(third, "stageflow.yaml") is None
    assert objects.tree_id(third, "stageflow.yaml/x") is None
    assert objects.tree_entries(third, "apps/demo/base/deployment.yaml") == {}
    assert objects.tree_id(third, "apps//demo") is None and objects.blob_id(third, "") is None


def test_the_object_store_finds_a_trailer_on_the_branch(make_clone, gitops_remote: Path):
    clone = make_clone()
    objects = ObjectStore(clone, cache_size=64, blob_cache_bytes=2**20)
    marked = third_party_commit(
        gitops_remote, "hand/edit.txt", "x\n", message="edit\n\nStageflow-Change: abc"
    )
    third_party_commit(gitops_remote, "hand/edit.txt", "y\n", message="Stageflow-Change: abcd")

    assert objects.find_trailer("Stageflow-Change", "abc") == marked  # the value, not a prefix
    assert objects.find_trailer("Stageflow-Change", "zzz") is None
    assert remote_log(gitops_remote, 1) != [marked]


def test_memos_keep_answers_at_full_shas_within_their_size():
    memo: Memo[str, str | None] = Memo(2)
    memo.remember(("main", "a"), "x")  # a branch name can come to mean another commit
    assert ("main", "a") not in memo
    for n in range(3):
        memo.remember((SHA, str(n)), None)
    assert list(memo) == [(SHA, "1"), (SHA, "2")]  # the oldest went


def test_the_blob_cache_keeps_blobs_within_its_budget():
    cache = BlobCache(budget=100)
    cache.keep(SHA, b"x" * 26)  # over a quarter of the budget: read again when needed
    assert cache.get(SHA) is None
    ids = [f"{n:040x}" for n in range(5)]
    for blob_id in ids:
        cache.keep(blob_id, b"y" * 25)
    assert cache.size <= 100 and cache.get(ids[0]) is None and cache.get(ids[-1]) == b"y" * 25
    cache.keep("not an id", b"z")
    assert cache.get("not an id") is None
