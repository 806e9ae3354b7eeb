"""Flags through REST: each change is one rendered commit on the real remote."""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import (
    changed_files,
    commit_message,
    read_remote,
    remote_head,
    remote_log,
    render_remote,
    rendered_config_map,
)

DEV = "apps/demo/overlays/development"


def test_toggle_is_one_commit_with_trailers_that_renders_the_new_value(client, gitops_remote: Path):
    before = remote_head(gitops_remote)

    response = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"enabled": False}
    )

    assert response.status_code == 200, response.get_json()
    revision = response.get_json()["revision"]
    assert remote_log(gitops_remote, 2) == [revision, before]
    message = commit_message(gitops_remote, revision)
    assert "demo/development: flag beta_api on -> off" in message
    assert "Stageflow-Actor: admin" in message
    assert "Stageflow-Change: " in message
    assert changed_files(gitops_remote, revision) == [f"{DEV}/flags.json"]
    rendered = render_remote(gitops_remote, revision, DEV)
    served = json.loads(rendered_config_map(rendered)["data"]["flags.json"])
    assert served["flags"]["beta_api"]["defaultVariant"] == "off"
    assert served["flags"]["new_ui"]["defaultVariant"] == "on"
    assert served == json.loads(read_remote(gitops_remote, revision, f"{DEV}/flags.json"))
    assert response.get_json()["flag"]["defaultVariant"] == "off"


def test_toggle_diff_is_small_and_readable(client, gitops_remote: Path):
    first = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"enabled": False}
    ).get_json()["revision"]
    second = client.patch(
        "/api/v1/apps/demo/stages/development/flags/beta_api", json={"enabled": True}
    ).get_json()["revision"]

    from tests.conftest import git

    diff = git("--git-dir", str(gitops_remote), "diff", "-U0", first, second)
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # the flag's defaultVariant and the document's version (the revision it was written at)
    assert len(changed) == 4, diff
    assert '-      "defaultVariant": "off",' in changed
    assert '+      "defaultVariant": "on",' in changed


def test_turning_on_a_flag_the_stage_does_not_allow_is_409_and_off_always_works(
    client, gitops_remote: Path
):
    before = remote_head(gitops_remote)

    refused = client.patch(
        "/api/v1/apps/demo/stages/production/flags/beta_api", json={"enabled": True}
    )

    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "flag_not_allowed"
    assert "production" in error["message"] and "beta" in error["message"]
    assert remote_head(gitops_remote) == before

    off = client.patch("/api/v1/apps/demo/stages/production/flags/new_ui", json={"enabled": False})
    assert off.status_code == 200
    assert remote_head(gitops_remote) == off.get_json()["revision"] != before


def test_create_flag_enters_the_first_stage_only_and_twice_is_409(client, gitops_remote: Path):
    created = client.post(
        "/api/v1/apps/demo/flags",
        json={"key": "dark_mode", "description": "Dark theme", "lifecycle": "beta"},
    )

    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["flag"]["defaultVariant"] == "off"
    matrix = client.get("/api/v1/apps/demo/flags").get_json()
    assert matrix["dark_mode"]["stages"] == {
        "development": {"enabled": False, "variant": "off", "state": "ENABLED"},
        "staging": None,
        "production": None,
    }
    assert matrix["dark_mode"]["lifecycle"] == "beta"
    assert changed_files(gitops_remote, body["revision"]) == [f"{DEV}/flags.json"]

    again = client.post("/api/v1/apps/demo/flags", json={"key": "dark_mode"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "flag_exists"


def test_string_flag_with_variants_and_targeting(client, gitops_remote: Path):
    created = client.post(
        "/api/v1/apps/demo/flags",
        json={
            "key": "banner.color",
            "variants": {"red": "#f00", "blue": "#00f"},
            "defaultVariant": "red",
            "lifecycle": "experimental",
        },
    )
    assert created.status_code == 201, created.get_json()

    targeting = {"if": [{"ends_with": [{"var": "email"}, "@acme.com"]}, "blue", None]}
    changed = client.patch(
        "/api/v1/apps/demo/stages/development/flags/banner.color",
        json={"defaultVariant": "blue", "targeting": targeting},
    )

    assert changed.status_code == 200, changed.get_json()
    committed = json.loads(
        read_remote(gitops_remote, changed.get_json()["revision"], f"{DEV}/flags.json")
    )
    assert committed["flags"]["banner.color"]["defaultVariant"] == "blue"
    assert committed["flags"]["banner.color"]["targeting"] == targeting


def test_edit_lifecycle_everywhere_and_refuse_one_that_breaks_policy(client, gitops_remote: Path):
    # beta_api is ON in staging; making it experimental would put an experimental flag ON there
    refused = client.patch("/api/v1/apps/demo/flags/beta_api", json={"lifecycle": "experimental"})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "flag_not_allowed"

    promoted = client.patch("/api/v1/apps/demo/flags/beta_api", json={"lifecycle": "stable"})
    assert promoted.status_code == 200
    revision = promoted.get_json()["revision"]
    assert sorted(changed_files(gitops_remote, revision)) == sorted(
        f"apps/demo/overlays/{stage}/flags.json"
        for stage in ("development", "staging", "production")
    )
    matrix = client.get("/api/v1/apps/demo/flags").get_json()
    assert matrix["beta_api"]["lifecycle"] == "stable"


def test_delete_flag_from_a_stage(client, gitops_remote: Path):
    deleted = client.delete("/api/v1/apps/demo/stages/development/flags/experimental_cache")

    assert deleted.status_code == 200
    matrix = client.get("/api/v1/apps/demo/flags").get_json()
    assert matrix["experimental_cache"]["stages"]["development"] is None
    assert matrix["experimental_cache"]["stages"]["staging"] is not None
    missing = client.delete("/api/v1/apps/demo/stages/development/flags/experimental_cache")
    assert missing.status_code == 404


def test_stage_document_is_the_committed_bytes_with_revision_etag(client, gitops_remote: Path):
    response = client.get("/api/v1/apps/demo/stages/staging/flags")

    head = remote_head(gitops_remote)
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{head}"'
    assert response.get_data(as_text=True) == read_remote(
        gitops_remote, head, "apps/demo/overlays/staging/flags.json"
    )
    cached = client.get(
        "/api/v1/apps/demo/stages/staging/flags", headers={"If-None-Match": f'"{head}"'}
    )
    assert cached.status_code == 304


def test_same_idempotency_key_returns_the_first_answer_and_commits_once(
    client, gitops_remote: Path
):
    headers = {"Idempotency-Key": "toggle-42"}
    url = "/api/v1/apps/demo/stages/development/flags/new_ui"

    first = client.patch(url, json={"enabled": False}, headers=headers)
    second = client.patch(url, json={"enabled": False}, headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert remote_log(gitops_remote, 1) == [first.get_json()["revision"]]
    assert len(remote_log(gitops_remote)) == 2  # the seed and one toggle
    reused = client.patch(url, json={"enabled": True}, headers=headers)
    assert reused.status_code == 409
    assert reused.get_json()["error"]["code"] == "idempotency_key_reused"


def test_reads_follow_a_change_at_once(client):
    client.patch("/api/v1/apps/demo/stages/staging/flags/new_ui", json={"enabled": False})

    state = client.get("/api/v1/apps/demo").get_json()
    staging = next(s for s in state["stages"] if s["stage"] == "staging")
    assert staging["flags"]["new_ui"] == {"enabled": False, "variant": "off", "lifecycle": "stable"}
    assert staging["overlay_revision"] == state["revision"]


class CountingRenderer:
    """The real renderer, counted: which overlays did a write render?"""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rendered: list[str] = []

    def render(self, directory):
        self.rendered.append(directory.name)
        return self.inner.render(directory)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_flags_only_change_renders_once_then_only_when_other_inputs_change(
    client, stageflow, gitops_remote: Path
):
    from tests.builders import third_party_commit

    sf, _ = stageflow
    sf.renderer = counting = CountingRenderer(sf.renderer)
    url = "/api/v1/apps/demo/stages/development/flags/new_ui"

    for enabled in (False, True, False):
        assert client.patch(url, json={"enabled": enabled}).status_code == 200
    # proven once with these inputs; the next toggles cannot break the render
    assert counting.rendered == ["development"]

    # a hand edit to another file of the overlay is a new input: render again, and refuse
    third_party_commit(
        gitops_remote, f"{DEV}/namespace.yaml", "apiVersion: v1\nkind: Namespace\n", "break"
    )
    broken = client.patch(url, json={"enabled": True})
    assert broken.status_code == 422, broken.get_json()
    assert broken.get_json()["error"]["code"] == "render_failed"
    assert counting.rendered == ["development", "development"]


def test_an_overlay_that_reads_flags_json_elsewhere_is_always_rendered(
    client, stageflow, gitops_remote: Path
):
    from tests.builders import third_party_commit
    from tests.conftest import git

    sf, _ = stageflow
    sf.renderer = counting = CountingRenderer(sf.renderer)
    text = git("--git-dir", str(gitops_remote), "show", f"main:{DEV}/kustomization.yaml")
    third_party_commit(
        gitops_remote,
        f"{DEV}/kustomization.yaml",
        text + "secretGenerator:\n  - name: s\n    files: [flags.json]\n",
        "also a secret",
    )
    url = "/api/v1/apps/demo/stages/development/flags/new_ui"

    for enabled in (False, True, False):
        before = len(counting.rendered)
        assert client.patch(url, json={"enabled": enabled}).status_code == 200
        assert len(counting.rendered) > before  # every toggle rendered


def _large_flag_document(sf, gitops_remote: Path) -> None:
    """Commit 1,500 more flags to development (as someone else); leave the cache room for four
    parses of that document, so that each write's new one pushes older entries out."""
    from stageflow.domain.flags import new_flag, parse_flag_document, render_flag_document
    from stageflow.services.context import PARSED_BYTES_PER_SOURCE_BYTE
    from tests.builders import third_party_commit

    doc = parse_flag_document(read_remote(gitops_remote, "main", f"{DEV}/flags.json"))
    for index in range(1500):
        doc = doc.put(new_flag(f"bulk{index}", lifecycle="stable"))
    text = render_flag_document(doc)
    third_party_commit(gitops_remote, f"{DEV}/flags.json", text, "1,500 flags")
    sf.cache.max_weight = 4 * PARSED_BYTES_PER_SOURCE_BYTE * len(text.encode())


def test_writes_of_a_large_flag_document_reuse_its_parse_and_keep_the_cache_bounded(
    client, stageflow, gitops_remote: Path, monkeypatch
):
    from stageflow.services.state import reading as state

    sf, _ = stageflow
    _large_flag_document(sf, gitops_remote)
    large: list[int] = []
    parse = state.parse_flag_document

    def counting(source):
        if len(source) > 100_000:
            large.append(len(source))
        return parse(source)

    monkeypatch.setattr(state, "parse_flag_document", counting)

    url = "/api/v1/apps/demo/stages/development/flags/bulk7"
    for enabled in (True, False) * 6:
        assert client.patch(url, json={"enabled": enabled}).status_code == 200
        development = client.get("/api/v1/apps/demo").get_json()["stages"][0]
        assert development["flags"]["bulk7"]["enabled"] is enabled
        assert sf.cache.weight <= sf.cache.max_weight

    # Parsed once, the hand-written document; every later write and read starts from the
    # document the previous write rendered, which the cache holds under its blob id.
    assert len(large) == 1
    assert (
        json.loads(read_remote(gitops_remote, "main", f"{DEV}/flags.json"))["flags"]["bulk7"][
            "defaultVariant"
        ]
        == "off"
    )


def test_flag_matrix_is_served_per_revision_with_an_etag(client, gitops_remote: Path):
    first = client.get("/api/v1/apps/demo/flags")
    etag = first.headers["ETag"]
    assert etag == f'"{remote_head(gitops_remote)}"'
    assert client.get("/api/v1/apps/demo/flags", headers={"If-None-Match": etag}).status_code == 304

    client.patch("/api/v1/apps/demo/stages/staging/flags/beta_api", json={"enabled": False})

    changed = client.get("/api/v1/apps/demo/flags", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.get_json()["beta_api"]["stages"]["staging"]["enabled"] is False
    assert first.get_json()["beta_api"]["stages"]["staging"]["enabled"] is True


def test_writes_splice_the_previous_text_and_commit_what_a_full_render_writes(
    client, stageflow, gitops_remote: Path, monkeypatch
):
    from stageflow.domain.flags import layout, parse_flag_document, render_flag_document

    full: list[int] = []

    def counted(doc):
        full.append(len(doc.flags))
        return render_flag_document(doc)

    monkeypatch.setattr(layout, "render_flag_document", counted)
    base = "/api/v1/apps/demo/stages/development/flags"
    steps = [
        ("POST", "/api/v1/apps/demo/flags", {"key": "splice.a", "lifecycle": "beta"}),
        ("PATCH", f"{base}/splice.a", {"enabled": True}),
        ("PATCH", f"{base}/new_ui", {"enabled": False}),
        (
            "POST",
            "/api/v1/apps/demo/flags",
            {"key": "splice.b", "variants": {"x": "1", "y": "2"}, "defaultVariant": "x"},
        ),
        ("PATCH", f"{base}/splice.b", {"defaultVariant": "y", "state": "ENABLED"}),
        (
            "PATCH",
            f"{base}/splice.b",
            {"targeting": {"if": [{"ends_with": [{"var": "email"}, "@acme.com"]}, "x", "y"]}},
        ),
        ("PATCH", f"{base}/splice.b", {"targeting": None}),
        ("PATCH", "/api/v1/apps/demo/flags/splice.a", {"description": "Now described"}),
        ("DELETE", f"{base}/splice.a", None),
        ("PATCH", f"{base}/new_ui", {"enabled": True}),
    ]
    for method, url, body in steps:
        answer = client.open(url, method=method, json=body)
        assert answer.status_code in (200, 201, 204), (method, url, answer.get_json())
        committed = read_remote(gitops_remote, "main", f"{DEV}/flags.json")
        # byte for byte what rendering the whole committed document writes
        assert committed == render_flag_document(parse_flag_document(committed)), (method, url)
    # The first write of the stage rendered the document whole; every later one edited the text
    # this process had written before.
    assert len(full) == 1


def test_a_flags_only_render_stays_proven_while_large_documents_pass_through_the_cache(
    client, stageflow, gitops_remote: Path
):
    sf, _ = stageflow
    _large_flag_document(sf, gitops_remote)
    sf.renderer = counting = CountingRenderer(sf.renderer)

    url = "/api/v1/apps/demo/stages/development/flags/bulk7"
    for enabled in (True, False) * 6:
        assert client.patch(url, json={"enabled": enabled}).status_code == 200

    # proven by the first render; the proof is used on every write, so it is never the oldest
    assert counting.rendered == ["development"]
