from __future__ import annotations

import dataclasses

import pytest

from stageflow.domain.errors import Invalid
from stageflow.domain.images import (
    ImageRef,
    image_ref,
    validate_digest,
    validate_image_name,
    validate_tag,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    [
        "nginx",
        "ghcr.io/acme/demo",
        "docker.io/library/nginx",
        "localhost:5000/team/app",
        "registry.example.com:443/acme/demo",
        "Registry.Example.com/acme/demo",  # hosts may have capitals, paths may not
        "[::1]:5000/demo",
        "acme/demo-app",
        "acme/demo--app",
        "acme/demo__app",
        "acme/demo.app_v2",
        "a" * 255,
    ],
)
def test_valid_image_names_pass_unchanged(name: str) -> None:
    assert validate_image_name(name) == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("ghcr.io/Acme/demo", "lowercase"),
        ("Demo", "lowercase"),
        ("ghcr.io/acme/de..mo", "'de..mo'"),
        ("ghcr.io/acme/../demo", "'..'"),
        ("/acme/demo", "empty path component"),
        ("acme/demo/", "empty path component"),
        ("acme//demo", "empty path component"),
        ("ghcr.io:abc/demo", "registry host 'ghcr.io:abc'"),
        ("ghcr.io/acme/demo:1.4.1", "tag or digest"),
        (f"ghcr.io/acme/demo@{DIGEST}", "tag or digest"),
        ("acme/-demo", "'-demo'"),
        ("acme/demo_", "'demo_'"),
        ("acme/de___mo", "'de___mo'"),
        ("acme/demo app", "'demo app'"),
        ("", "empty"),
    ],
)
def test_invalid_image_names_are_explained(name: str, says: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_image_name(name)

    error = caught.value
    assert says in error.message
    assert repr(name) in error.message or name == ""
    assert "e.g. 'ghcr.io/acme/demo'" in error.message
    assert error.code == "invalid_image"
    assert error.details == {"field": "name", "value": name}


def test_an_image_name_is_at_most_255_characters() -> None:
    name = "ghcr.io/acme/" + "d" * 243

    assert len(name) == 256
    with pytest.raises(Invalid, match="256 characters long; at most 255"):
        validate_image_name(name)
    assert validate_image_name(name[:-1]) == name[:-1]


@pytest.mark.parametrize(
    "tag", ["latest", "1.4.2", "v1.2.3-rc.1", "1.4", "_build", "2024-05-02_1", "A" * 128]
)
def test_valid_tags_pass_unchanged(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("-x", "starts with '-'"),
        (".hidden", "starts with '.'"),
        ("a b", "characters that are not allowed"),
        ("1.4+build.7", "characters that are not allowed"),
        ("v1:2", "characters that are not allowed"),
        ("täg", "characters that are not allowed"),  # \w means ASCII here, as in Go
        ("1.4.2\n", "characters that are not allowed"),  # no `$`-before-newline loophole
        ("x" * 129, "129 characters long"),
        ("", "is empty"),
    ],
)
def test_invalid_tags_are_explained(tag: str, says: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_tag(tag)

    error = caught.value
    assert says in error.message
    assert repr(tag) in error.message or tag == ""
    assert "e.g. '1.4.2'" in error.message
    assert error.details == {"field": "tag", "value": tag}


def test_a_sha256_digest_passes_unchanged() -> None:
    assert validate_digest(DIGEST) == DIGEST


@pytest.mark.parametrize(
    ("digest", "says"),
    [
        ("sha512:" + "ab" * 64, "only sha256 is accepted"),
        ("sha256:" + "AB" * 32, "uppercase hex"),
        ("sha256:" + "a" * 63, "63 hex digits instead of 64"),
        ("sha256:" + "a" * 65, "65 hex digits instead of 64"),
        ("sha256:" + "g" * 64, "not hex digits"),
        ("0123456789abcdef" * 4, "no algorithm prefix"),
        (DIGEST + "\n", "65 hex digits"),
    ],
)
def test_invalid_digests_are_explained(digest: str, says: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_digest(digest)

    error = caught.value
    assert says in error.message
    assert repr(digest) in error.message
    assert "other algorithms are not accepted" in error.message
    assert "Example: 'sha256:e3b0c442" in error.message
    assert error.details == {"field": "digest", "value": digest}


def test_image_ref_builds_a_validated_reference() -> None:
    ref = image_ref("ghcr.io/acme/demo", tag="1.4.1", digest=DIGEST)

    assert ref == ImageRef(name="ghcr.io/acme/demo", tag="1.4.1", digest=DIGEST)
    assert ref.new_name is None


def test_image_ref_keeps_a_new_name() -> None:
    ref = image_ref("demo", tag="1.4.1", new_name="ghcr.io/acme/demo")

    assert ref == ImageRef(name="demo", tag="1.4.1", new_name="ghcr.io/acme/demo")


def test_image_ref_needs_a_tag_or_a_digest() -> None:
    with pytest.raises(Invalid) as caught:
        image_ref("ghcr.io/acme/demo")

    assert "'ghcr.io/acme/demo' needs a tag or a digest" in caught.value.message
    assert "ghcr.io/acme/demo:1.4.2" in caught.value.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "ghcr.io/Acme/demo", "tag": "1.4.1"}, "name"),
        ({"name": "ghcr.io/acme/demo", "tag": "-1"}, "tag"),
        ({"name": "ghcr.io/acme/demo", "digest": "md5:abc"}, "digest"),
        ({"name": "ghcr.io/acme/demo", "tag": "1", "new_name": "Other"}, "name"),
    ],
)
def test_image_ref_rejects_each_bad_part(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(Invalid) as caught:
        image_ref(**kwargs)

    assert caught.value.details["field"] == field


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        (ImageRef("ghcr.io/acme/demo", tag="1.4.1"), "ghcr.io/acme/demo:1.4.1"),
        (ImageRef("ghcr.io/acme/demo", digest=DIGEST), f"ghcr.io/acme/demo@{DIGEST}"),
        (
            ImageRef("ghcr.io/acme/demo", tag="1.4.1", digest=DIGEST),
            f"ghcr.io/acme/demo:1.4.1@{DIGEST}",
        ),
        (ImageRef("nginx", new_name="ghcr.io/acme/nginx"), "nginx"),
    ],
)
def test_describe_writes_the_reference_as_people_do(ref: ImageRef, text: str) -> None:
    assert ref.describe() == text


def test_image_refs_are_frozen_values() -> None:
    ref = ImageRef("ghcr.io/acme/demo", tag="1.4.1")

    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "1.4.2"  # type: ignore[misc]
    assert ref == ImageRef("ghcr.io/acme/demo", tag="1.4.1")
    assert hash(ref) == hash(ImageRef("ghcr.io/acme/demo", tag="1.4.1"))
