"""The image-setting rules and the render-skip rule of a kustomization, on their own."""

from __future__ import annotations

from textwrap import dedent

import pytest

from stageflow.adapters.kustomization import KustomizationFile
from stageflow.adapters.kustomization.images import IMAGE_KEYS, ImageEdit
from stageflow.domain.images import ImageRef

DIGEST = "sha256:" + "0123456789abcdef" * 4
NAME = "ghcr.io/acme/demo"


def test_an_edit_writes_only_what_the_ref_gives_in_kustomize_order() -> None:
    edit = ImageEdit.of(ImageRef(name=NAME, tag="1.5.0", digest=DIGEST, new_name="mirror/demo"))

    assert list(edit.wanted) == ["newName", "newTag", "digest"]
    assert edit.unwanted == ()


@pytest.mark.parametrize(
    ("ref", "unwanted"),
    [
        (ImageRef(name=NAME, tag="1.5.0"), ("digest",)),
        (ImageRef(name=NAME, digest=DIGEST), ("newTag",)),
        (ImageRef(name=NAME, tag="1.5.0", digest=DIGEST), ()),
    ],
)
def test_clearing_the_other_removes_the_value_the_ref_leaves_out(
    ref: ImageRef, unwanted: tuple[str, ...]
) -> None:
    assert ImageEdit.of(ref, clear_other=True).unwanted == unwanted
    assert ImageEdit.of(ref).unwanted == ()


def test_an_entry_that_already_reads_as_wanted_is_left_alone() -> None:
    edit = ImageEdit.of(ImageRef(name=NAME, tag="1.5.0"), clear_other=True)

    assert not edit.changes({"name": NAME, "newTag": "1.5.0"})
    assert edit.to_set({"name": NAME, "newTag": "1.4.0"}) == ["newTag"]
    # a tag YAML read as a number is not the wanted text: it is written again, quoted
    assert edit.to_set({"name": NAME, "newTag": 1.5}) == ["newTag"]
    assert edit.to_remove({"name": NAME, "newTag": "1.5.0", "digest": DIGEST}) == ["digest"]


def test_a_new_entry_has_the_name_first_and_quotes_what_yaml_would_misread() -> None:
    entry = ImageEdit.of(ImageRef(name=NAME, tag="1.10", digest=DIGEST)).new_entry()

    assert list(entry) == ["name", "newTag", "digest"]
    assert list(entry) == [key for key in IMAGE_KEYS if key in entry]
    file = KustomizationFile.parse("resources: [../../base]\n")
    file.set_image(ImageRef(name=NAME, tag="1.10"))
    assert 'newTag: "1.10"' in file.render()


def test_setting_an_image_edits_every_entry_with_its_name() -> None:
    text = dedent(
        f"""\
        images:
          - name: {NAME}
            newTag: "1.4.0"
          - name: {NAME}
            newTag: "1.5.0"
        """
    )
    file = KustomizationFile.parse(text)

    assert file.set_image(ImageRef(name=NAME, tag="1.5.0"))
    assert file.render() == text.replace("1.4.0", "1.5.0")
    assert not file.set_image(ImageRef(name=NAME, tag="1.5.0"))


def generated_only(text: str) -> frozenset[str] | None:
    return KustomizationFile.parse(dedent(text)).generated_only(
        "flags.json", "apps/demo/overlays/dev", "apps/demo/base"
    )


def test_the_generator_may_read_other_overlay_files_too() -> None:
    found = generated_only(
        """\
        resources: [../../base, extra.yaml]
        configMapGenerator:
          - name: flags
            files: [flags.json, other=settings.json]
        """
    )

    assert found == {"extra.yaml", "settings.json"}


@pytest.mark.parametrize(
    "text",
    [
        # flags.json is not read by a generator
        "resources: [../../base]\n",
        # a generator with a key whose effect is not followed
        "configMapGenerator:\n  - {name: flags, files: [flags.json], envs: [x.env]}\n",
        # a generator file outside the overlay
        "configMapGenerator:\n  - {name: flags, files: [flags.json, ../x.json]}\n",
        # a remote resource
        "resources: [https://example.com/x.yaml]\n"
        "configMapGenerator:\n  - {name: flags, files: [flags.json]}\n",
        # flags.json also used as a resource
        "resources: [flags.json]\nconfigMapGenerator:\n  - {name: flags, files: [flags.json]}\n",
        # a key outside the simple set
        "patches: []\nconfigMapGenerator:\n  - {name: flags, files: [flags.json]}\n",
    ],
)
def test_generated_only_is_none_when_it_cannot_be_shown(text: str) -> None:
    assert generated_only(text) is None
