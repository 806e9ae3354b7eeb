from __future__ import annotations

import difflib
import threading

import pytest
from ruamel.yaml import YAML

from stageflow.adapters.kustomization import KustomizationFile, roundtrip
from stageflow.domain.errors import Invalid
from stageflow.domain.images import ImageRef

DIGEST = "sha256:" + "0123456789abcdef" * 4
OTHER_DIGEST = "sha256:" + "fedcba9876543210" * 4

# Hand-written: list items indented under their key, a document start, comments everywhere.
STAGING = f"""\
---
# Overlay for the demo app in staging.
# Images arrive here by promotion only.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: staging   # Argo CD app demo-staging

resources:
  - ../../base
  - ingress.yaml

labels:
  - pairs:
      app.kubernetes.io/part-of: demo
    includeSelectors: false

images:
  # the web app; CI writes the tag on development only
  - name: ghcr.io/acme/demo
    newTag: "1.4.1"   # promoted 2024-05-02
  - name: ghcr.io/acme/worker
    newTag: v2.0.0
    digest: {DIGEST}

# flags reach the pods as a ConfigMap that flagd reads
configMapGenerator:
  - name: demo-flags
    files:
      - flags.json
    options:
      disableNameSuffixHash: true
"""

# As `kustomize edit set image` writes it: list items flush with their key.
DEVELOPMENT = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: development
resources:
- ../../base
images:
- name: ghcr.io/acme/demo
  newName: registry.internal:5000/acme/demo  # mirror
  newTag: 1.5.0-rc.2
- name: redis
  newTag: '7.2'
configMapGenerator:
- name: demo-flags
  files:
  - flags.json
"""

# Edited by several hands: two list styles, odd spacing, `~`, no final newline, a comment above
# the document start. ruamel would normalise all of it; none of it may change.
MIXED = """\
# managed by stageflow; edit by hand with care
---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace:   production
resources: [ ../../base ]
patches:
- path: replicas.yaml
  target: {kind: Deployment, name: demo}
images:
  - name: ghcr.io/acme/demo
    newTag: 1.3.9
    newName: ~
commonAnnotations:
  team: web   # owner
..."""

ALL = {"staging": STAGING, "development": DEVELOPMENT, "mixed": MIXED}


def changes(old: str, new: str) -> tuple[list[str], list[str]]:
    """Return the removed and the added lines of a unified diff from ``old`` to ``new``."""
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm=""))[2:]
    removed = [line[1:] for line in diff if line.startswith("-")]
    added = [line[1:] for line in diff if line.startswith("+")]
    return removed, added


def load(text: str) -> object:
    return YAML(typ="safe").load(text)


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "#" in line]


# -- reading --------------------------------------------------------------------------------


def test_images_are_read_in_file_order() -> None:
    assert KustomizationFile.parse(STAGING).images() == [
        ImageRef("ghcr.io/acme/demo", tag="1.4.1"),
        ImageRef("ghcr.io/acme/worker", tag="v2.0.0", digest=DIGEST),
    ]
    assert KustomizationFile.parse(DEVELOPMENT).images() == [
        ImageRef(
            "ghcr.io/acme/demo", tag="1.5.0-rc.2", new_name="registry.internal:5000/acme/demo"
        ),
        ImageRef("redis", tag="7.2"),
    ]


def test_namespace_is_read() -> None:
    assert KustomizationFile.parse(STAGING).namespace == "staging"
    assert KustomizationFile.parse(MIXED).namespace == "production"
    assert KustomizationFile.parse("resources: [../../base]\n").namespace is None


def test_an_overlay_without_images_has_none() -> None:
    assert KustomizationFile.parse("resources:\n  - ../../base\n").images() == []
    assert KustomizationFile.parse("resources: [../../base]\nimages:\n").images() == []


def test_an_unquoted_numeric_tag_reads_as_written() -> None:
    text = (
        "images:\n  - name: demo\n    newTag: 1.10  # YAML says 1.1\n  - name: b\n    newTag: 2\n"
    )

    images = KustomizationFile.parse(text).images()

    assert [ref.tag for ref in images] == ["1.10", "2"]


# -- the one-line diff ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "name", "old_line", "new_line"),
    [
        ("staging", "ghcr.io/acme/demo", '    newTag: "1.4.1"   # promoted 2024-05-02',
         '    newTag: "1.4.2"   # promoted 2024-05-02'),
        ("staging", "ghcr.io/acme/worker", "    newTag: v2.0.0", "    newTag: 1.4.2"),
        ("development", "ghcr.io/acme/demo", "  newTag: 1.5.0-rc.2", "  newTag: 1.4.2"),
        ("development", "redis", "  newTag: '7.2'", "  newTag: '1.4.2'"),
        ("mixed", "ghcr.io/acme/demo", "    newTag: 1.3.9", "    newTag: 1.4.2"),
    ],
)  # fmt: skip
def test_a_new_tag_changes_exactly_one_line(
    fixture: str, name: str, old_line: str, new_line: str
) -> None:
    old = ALL[fixture]
    file = KustomizationFile.parse(old)

    assert file.set_image(ImageRef(name, tag="1.4.2")) is True
    new = file.render()

    assert changes(old, new) == ([old_line], [new_line])
    assert KustomizationFile.parse(new).images()[
        [i.name for i in file.images()].index(name)
    ].tag == ("1.4.2")


@pytest.mark.parametrize("fixture", ALL)
def test_an_unchanged_file_renders_byte_for_byte(fixture: str) -> None:
    assert KustomizationFile.parse(ALL[fixture]).render() == ALL[fixture]


def test_setting_the_tag_it_already_has_changes_nothing() -> None:
    file = KustomizationFile.parse(STAGING)

    assert file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.1")) is False
    assert file.set_image(ImageRef("ghcr.io/acme/worker", digest=DIGEST)) is False
    assert file.render() == STAGING


def test_document_start_and_the_comment_above_it_survive() -> None:
    file = KustomizationFile.parse(MIXED)
    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))

    new = file.render()

    assert new.startswith("# managed by stageflow; edit by hand with care\n---\napiVersion:")
    assert STAGING.startswith("---\n")
    staging = KustomizationFile.parse(STAGING)
    staging.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))
    assert staging.render().startswith("---\n# Overlay for the demo app in staging.\n")


def test_the_final_newline_is_kept_as_the_input_had_it() -> None:
    with_newline = KustomizationFile.parse(STAGING)
    with_newline.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))
    without = KustomizationFile.parse(STAGING.rstrip("\n"))
    without.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))

    assert with_newline.render().endswith("disableNameSuffixHash: true\n")
    assert without.render().endswith("disableNameSuffixHash: true")
    assert MIXED.endswith("...")
    mixed = KustomizationFile.parse(MIXED)
    mixed.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))
    assert mixed.render().endswith("  team: web   # owner\n...")


def test_a_file_that_cannot_be_edited_line_by_line_is_rewritten_whole_but_correct() -> None:
    # Each list item indents its own way, which YAML allows; one style cannot reproduce both, so
    # a line-for-line edit of the second entry would misalign it.
    old = (
        "# pinned by hand\n---\nimages:\n- name: a\n  newTag: x   # first\n"
        "-   name: b\n    newTag: y\n"
    )
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("b", tag="z"))
    new = file.render()

    assert new == (
        "# pinned by hand\n---\nimages:\n- name: a\n  newTag: x   # first\n- name: b\n  newTag: z\n"
    )


def test_windows_line_endings_are_kept() -> None:
    old = STAGING.replace("\n", "\r\n")
    file = KustomizationFile.parse(old)
    file.set_image(ImageRef("ghcr.io/acme/worker", tag="v2.1.0"))

    new = file.render()

    assert new.count("\r\n") == new.count("\n") == old.count("\n")
    assert changes(old, new) == (["    newTag: v2.0.0"], ["    newTag: v2.1.0"])


# -- comments and order ---------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ALL)
def test_comments_and_key_order_survive_every_kind_of_edit(fixture: str) -> None:
    old = ALL[fixture]
    file = KustomizationFile.parse(old)
    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2", digest=OTHER_DIGEST))
    file.set_image(ImageRef("ghcr.io/acme/cache", tag="3"))

    new = file.render()

    old_data, new_data = load(old), load(new)
    assert isinstance(old_data, dict)
    assert isinstance(new_data, dict)
    assert [k for k in new_data if k != "images"] == [k for k in old_data if k != "images"]
    assert list(new_data)[: len(old_data)] == list(old_data)
    removed, _ = changes(old, new)
    kept_comments = [line for line in comment_lines(old) if line not in removed]
    assert [line for line in comment_lines(new) if line in kept_comments] == kept_comments
    # ...and the changed tag line kept its end-of-line comment.
    if fixture == "staging":
        assert '    newTag: "1.4.2"   # promoted 2024-05-02' in new.splitlines()


# -- appending ------------------------------------------------------------------------------


def test_a_new_image_is_appended_after_the_last_entry_and_above_the_next_comment() -> None:
    file = KustomizationFile.parse(STAGING)

    assert file.set_image(ImageRef("ghcr.io/acme/cache", tag="1.4")) is True
    new = file.render()

    assert changes(STAGING, new) == ([], ["  - name: ghcr.io/acme/cache", '    newTag: "1.4"'])
    assert (
        f"""\
    digest: {DIGEST}
  - name: ghcr.io/acme/cache
    newTag: "1.4"

# flags reach the pods as a ConfigMap that flagd reads
configMapGenerator:
"""
        in new
    )
    assert KustomizationFile.parse(new).images()[-1] == ImageRef("ghcr.io/acme/cache", tag="1.4")


def test_a_new_image_follows_the_list_style_of_the_file() -> None:
    file = KustomizationFile.parse(DEVELOPMENT)
    file.set_image(ImageRef("ghcr.io/acme/worker", digest=DIGEST))

    new = file.render()

    assert changes(DEVELOPMENT, new) == (
        [],
        ["- name: ghcr.io/acme/worker", f"  digest: {DIGEST}"],
    )
    assert "  newTag: '7.2'\n- name: ghcr.io/acme/worker\n" in new


def test_images_is_created_when_the_overlay_has_none() -> None:
    old = STAGING[: STAGING.index("images:")] + STAGING[STAGING.index("# flags reach") :]
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))
    new = file.render()

    assert new == old + "\nimages:\n  - name: ghcr.io/acme/demo\n    newTag: 1.4.2\n"


def test_a_closing_comment_stays_below_a_new_images_key() -> None:
    old = "resources:\n  - ../../base\n# end of overlay: keep this last\n"
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))

    assert file.render() == (
        "resources:\n  - ../../base\nimages:\n  - name: ghcr.io/acme/demo\n    newTag: 1.4.2\n"
        "# end of overlay: keep this last\n"
    )


def test_a_key_added_to_the_last_entry_goes_above_the_comment_that_follows() -> None:
    old = (
        "images:\n  - name: ghcr.io/acme/demo\n    newTag: 1.4.1   # promoted\n\n"
        "# flags\nconfigMapGenerator:\n  - name: demo-flags\n"
    )
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("ghcr.io/acme/demo", digest=DIGEST))

    assert file.render() == (
        "images:\n  - name: ghcr.io/acme/demo\n    newTag: 1.4.1   # promoted\n"
        f"    digest: {DIGEST}\n\n# flags\nconfigMapGenerator:\n  - name: demo-flags\n"
    )


def test_an_empty_images_key_gets_its_first_entry_under_it() -> None:
    old = "resources:\n- ../../base\nimages:   # CI fills this in\n\n# generated\nnamespace: dev\n"
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.2"))

    assert file.render() == (
        "resources:\n- ../../base\nimages:   # CI fills this in\n"
        "- name: ghcr.io/acme/demo\n  newTag: 1.4.2\n\n# generated\nnamespace: dev\n"
    )


# -- quoting --------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["1.4", "2", "true", "yes", "on", "null", "1e3", "2024-05-02"])
def test_a_tag_yaml_would_read_as_something_else_is_double_quoted(tag: str) -> None:
    file = KustomizationFile.parse(DEVELOPMENT)
    file.set_image(ImageRef("ghcr.io/acme/demo", tag=tag))

    new = file.render()

    assert changes(DEVELOPMENT, new) == (["  newTag: 1.5.0-rc.2"], [f'  newTag: "{tag}"'])
    assert load(new)["images"][0]["newTag"] == tag  # type: ignore[index]


def test_the_quote_style_of_the_existing_value_is_kept() -> None:
    file = KustomizationFile.parse(DEVELOPMENT)
    file.set_image(ImageRef("redis", tag="7.4.1"))
    staging = KustomizationFile.parse(STAGING)
    staging.set_image(ImageRef("ghcr.io/acme/demo", tag="v1.5.0"))

    assert "  newTag: '7.4.1'\n" in file.render()
    assert '    newTag: "v1.5.0"  # promoted 2024-05-02\n' in staging.render()


def test_a_numeric_tag_that_was_written_unquoted_gets_quoted() -> None:
    old = "images:\n  - name: demo\n    newTag: 1.9\n"
    file = KustomizationFile.parse(old)

    assert file.set_image(ImageRef("demo", tag="1.9")) is True
    assert file.render() == 'images:\n  - name: demo\n    newTag: "1.9"\n'


# -- digests and names ----------------------------------------------------------------------


def test_setting_a_digest_keeps_the_tag() -> None:
    file = KustomizationFile.parse(STAGING)

    file.set_image(ImageRef("ghcr.io/acme/demo", digest=DIGEST))
    new = file.render()

    assert changes(STAGING, new) == ([], [f"    digest: {DIGEST}"])
    assert KustomizationFile.parse(new).images()[0] == ImageRef(
        "ghcr.io/acme/demo", tag="1.4.1", digest=DIGEST
    )


def test_replacing_a_digest_changes_one_line() -> None:
    file = KustomizationFile.parse(STAGING)

    file.set_image(ImageRef("ghcr.io/acme/worker", digest=OTHER_DIGEST))

    assert changes(STAGING, file.render()) == (
        [f"    digest: {DIGEST}"],
        [f"    digest: {OTHER_DIGEST}"],
    )


def test_clear_other_removes_the_tag_when_only_a_digest_is_given() -> None:
    file = KustomizationFile.parse(STAGING)

    file.set_image(ImageRef("ghcr.io/acme/worker", digest=OTHER_DIGEST), clear_other=True)
    new = file.render()

    assert changes(STAGING, new) == (
        ["    newTag: v2.0.0", f"    digest: {DIGEST}"],
        [f"    digest: {OTHER_DIGEST}"],
    )


def test_clear_other_removes_the_digest_and_keeps_the_comment_below_it() -> None:
    file = KustomizationFile.parse(STAGING)

    file.set_image(ImageRef("ghcr.io/acme/worker", tag="v2.1.0"), clear_other=True)
    new = file.render()

    assert changes(STAGING, new) == (
        ["    newTag: v2.0.0", f"    digest: {DIGEST}"],
        ["    newTag: v2.1.0"],
    )
    assert "    newTag: v2.1.0\n\n# flags reach the pods" in new


def test_a_new_name_goes_after_the_name_as_kustomize_orders_it() -> None:
    file = KustomizationFile.parse(STAGING)

    file.set_image(ImageRef("ghcr.io/acme/demo", tag="1.4.1", new_name="mirror.internal/demo"))

    assert changes(STAGING, file.render()) == ([], ["    newName: mirror.internal/demo"])
    assert "  - name: ghcr.io/acme/demo\n    newName: mirror.internal/demo\n    newTag:" in (
        file.render()
    )


def test_every_entry_with_the_name_is_updated() -> None:
    old = "images:\n- name: demo\n  newTag: a\n- name: demo\n  newTag: b\n"
    file = KustomizationFile.parse(old)

    file.set_image(ImageRef("demo", tag="c"))

    assert [ref.tag for ref in KustomizationFile.parse(file.render()).images()] == ["c", "c"]


@pytest.mark.parametrize(
    "ref",
    [
        ImageRef("ghcr.io/Acme/demo", tag="1.4.2"),
        ImageRef("ghcr.io/acme/demo", tag="1.4.2\nnamespace: kube-system"),
        ImageRef("ghcr.io/acme/demo", digest="sha1:abc"),
        ImageRef("ghcr.io/acme/demo"),
    ],
)
def test_set_image_refuses_an_invalid_reference(ref: ImageRef) -> None:
    file = KustomizationFile.parse(STAGING)

    with pytest.raises(Invalid):
        file.set_image(ref)
    assert file.render() == STAGING


# -- errors ---------------------------------------------------------------------------------


def test_a_yaml_error_names_the_path_and_the_line() -> None:
    broken = "apiVersion: kustomize.config.k8s.io/v1beta1\nresources:\n  - ../../base\n images: x\n"

    with pytest.raises(Invalid) as caught:
        KustomizationFile.parse(broken, path="apps/demo/overlays/staging/kustomization.yaml")

    error = caught.value
    assert error.message.startswith(
        "apps/demo/overlays/staging/kustomization.yaml is not valid YAML: "
    )
    assert "at line 4, column 2" in error.message
    assert error.details == {
        "path": "apps/demo/overlays/staging/kustomization.yaml",
        "line": 4,
        "column": 2,
    }


def test_a_duplicate_key_is_a_yaml_error_with_its_line() -> None:
    with pytest.raises(Invalid, match=r'duplicate key "namespace".* at line 3'):
        KustomizationFile.parse("namespace: a\nresources: []\nnamespace: b\n")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "kustomization.yaml is empty"),
        ("# nothing yet\n", "kustomization.yaml is empty"),
        ("- ../../base\n", "the document is a list, not a mapping"),
        ("a: 1\n---\nb: 2\n", "single document"),
    ],
)
def test_a_file_that_is_no_kustomization_is_refused(text: str, says: str) -> None:
    with pytest.raises(Invalid, match=says):
        KustomizationFile.parse(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("resources: []\nimages: ghcr.io/acme/demo\n", "line 2: 'images:' must be a list"),
        ("images:\n  - name: a\n    newTag: b\n  - newTag: c\n", r"line 4: images\[1\] must be"),
        ("images:\n  - demo:1.4\n", r"line 2: images\[0\] must be"),
    ],
)
def test_a_malformed_images_list_is_refused_with_its_line(text: str, says: str) -> None:
    file = KustomizationFile.parse(text)

    with pytest.raises(Invalid, match=says):
        file.images()
    with pytest.raises(Invalid, match=says):
        file.set_image(ImageRef("demo", tag="1"))


# -- the hot path ---------------------------------------------------------------------------


def test_the_yaml_instance_is_built_once_per_thread() -> None:
    first = roundtrip.round_trip()
    other: list[YAML] = []
    thread = threading.Thread(target=lambda: other.append(roundtrip.round_trip()))
    thread.start()
    thread.join()

    assert roundtrip.round_trip() is first
    assert other[0] is not first  # a YAML instance keeps parser state: never share it


def test_generated_only_proves_flags_json_feeds_only_the_generator() -> None:
    from pathlib import Path

    starter = (
        Path(__file__).resolve().parents[2]
        / "overlays/apps/demo/overlays/staging/kustomization.yaml"
    ).read_text()
    overlay, base = "apps/demo/overlays/staging", "apps/demo/base"

    def proof(text: str) -> frozenset[str] | None:
        return KustomizationFile.parse(text).generated_only("flags.json", overlay, base)

    assert proof(starter) == frozenset({"namespace.yaml"})
    assert proof(starter + "patches:\n  - path: p.yaml\n") is None
    assert proof(starter.replace("- ../../base", "- ../../other")) is None
    assert proof(starter.replace("- ../../base", "- https://github.com/x/y//base")) is None
    assert proof(starter.replace("- namespace.yaml", "- flags.json")) is None
    assert proof(starter.replace("      - flags.json", "      - other.json")) is None
