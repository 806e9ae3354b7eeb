"""Images through REST: only the first stage takes them directly; comments survive."""

from __future__ import annotations

from pathlib import Path

from tests.builders import changed_files, read_remote, remote_head, render_remote

DEV = "apps/demo/overlays/development"


def test_set_image_in_first_stage_keeps_hand_written_comments(client, gitops_remote: Path):
    before_text = read_remote(gitops_remote, "main", f"{DEV}/kustomization.yaml")
    comments = [line for line in before_text.splitlines() if line.strip().startswith("#")]
    assert comments, "the starter overlay should carry hand-written comments"

    response = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "tag": "1.5.0"},
    )

    assert response.status_code == 200, response.get_json()
    revision = response.get_json()["revision"]
    after_text = read_remote(gitops_remote, revision, f"{DEV}/kustomization.yaml")
    for comment in comments:
        assert comment in after_text
    removed = set(before_text.splitlines()) - set(after_text.splitlines())
    added = set(after_text.splitlines()) - set(before_text.splitlines())
    assert len(removed) == len(added) == 1 and "1.5.0" in next(iter(added))
    assert changed_files(gitops_remote, revision) == [f"{DEV}/kustomization.yaml"]
    assert "image: ghcr.io/acme/demo:1.5.0" in render_remote(gitops_remote, revision, DEV)
    state = client.get("/api/v1/apps/demo").get_json()
    assert state["stages"][0]["images"] == [
        {"name": "ghcr.io/acme/demo", "tag": "1.5.0", "digest": None}
    ]


def test_set_digest(client, gitops_remote: Path):
    digest = "sha256:" + "ab" * 32
    response = client.put(
        "/api/v1/apps/demo/stages/development/images",
        json={"name": "ghcr.io/acme/demo", "digest": digest},
    )

    assert response.status_code == 200, response.get_json()
    rendered = render_remote(gitops_remote, response.get_json()["revision"], DEV)
    assert f"ghcr.io/acme/demo@{digest}" in rendered


def test_later_stage_takes_images_only_by_promotion(client, gitops_remote: Path):
    before = remote_head(gitops_remote)

    response = client.put(
        "/api/v1/apps/demo/stages/staging/images",
        json={"name": "ghcr.io/acme/demo", "tag": "9.9.9"},
    )

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "stage_skipped"
    assert "development" in response.get_json()["error"]["message"]
    assert remote_head(gitops_remote) == before
