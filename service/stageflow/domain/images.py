"""Container image references as an overlay's ``images:`` list names them.

Names, tags and digests follow the OCI distribution reference grammar (the one ``docker pull`` and
kustomize accept), so a value that passes here is one a registry and kustomize will take as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stageflow.domain.errors import Invalid

__all__ = [
    "NAME_MAX_LENGTH",
    "TAG_MAX_LENGTH",
    "ImageRef",
    "image_ref",
    "validate_digest",
    "validate_image_name",
    "validate_tag",
]

NAME_MAX_LENGTH = 255
TAG_MAX_LENGTH = 128

_NAME_EXAMPLE = "ghcr.io/acme/demo"
_TAG_EXAMPLE = "1.4.2"
# The digest of zero bytes: a well-formed value that is obviously an example.
_DIGEST_EXAMPLE = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# The grammar of github.com/distribution/reference (regexp.go), written out piece by piece.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_HOST = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6_HOST})(?::[0-9]+)?"
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT)
# re.ASCII: in the grammar (Go's regexp) \w is [A-Za-z0-9_], not every Unicode letter.
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


@dataclass(frozen=True)
class ImageRef:
    """One entry of an overlay's ``images:`` list."""

    name: str
    tag: str | None = None
    digest: str | None = None
    new_name: str | None = None

    def describe(self) -> str:
        """Return the reference as people write it: ``name[:tag][@digest]``."""
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _invalid(field: str, value: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_image", details={"field": field, "value": value})


def validate_image_name(name: str) -> str:
    """Return ``name`` if it is a valid image repository name, else raise ``Invalid``."""
    hint = (
        f"An image name is an optional registry host[:port] followed by '/'-separated path "
        f"components of lowercase letters and digits joined by '.', '_', '__' or '-', "
        f"e.g. {_NAME_EXAMPLE!r} or 'localhost:5000/team/app'."
    )
    if not name:
        raise _invalid("name", name, f"The image name is empty. {hint}")
    if len(name) > NAME_MAX_LENGTH:
        raise _invalid(
            "name",
            name,
            f"The image name {name!r} is {len(name)} characters long; at most "
            f"{NAME_MAX_LENGTH} are allowed. {hint}",
        )
    if _NAME_RE.fullmatch(name):
        return name
    components = name.split("/")
    if "" in components:
        problem = "has an empty path component (a leading, trailing or doubled '/')"
    elif "@" in name or ":" in components[-1]:
        problem = "contains a tag or digest; pass those separately"
    else:
        # The first component is the registry host when there is more than one.
        path = components[1:] or components
        if any(c != c.lower() for c in path):
            problem = "has uppercase letters in its path; repository paths are lowercase"
        else:
            bad = [c for c in path if not _PATH_COMPONENT_RE.fullmatch(c)]
            if bad:
                problem = f"has a path component {bad[0]!r} that is not valid"
            else:
                problem = f"has a registry host {components[0]!r} that is not valid"
    raise _invalid("name", name, f"The image name {name!r} {problem}. {hint}")


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid image tag, else raise ``Invalid``."""
    hint = (
        f"A tag is 1 to {TAG_MAX_LENGTH} characters: letters, digits, '_', '.' and '-', "
        f"not starting with '.' or '-', e.g. {_TAG_EXAMPLE!r} or 'v1.2.3-rc.1'."
    )
    if _TAG_RE.fullmatch(tag):
        return tag
    if not tag:
        problem = "The image tag is empty."
    elif len(tag) > TAG_MAX_LENGTH:
        problem = f"The image tag {tag!r} is {len(tag)} characters long."
    elif tag[0] in ".-":
        problem = f"The image tag {tag!r} starts with {tag[0]!r}."
    else:
        problem = f"The image tag {tag!r} contains characters that are not allowed."
    raise _invalid("tag", tag, f"{problem} {hint}")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a ``sha256:<64 lowercase hex>`` digest, else raise ``Invalid``."""
    hint = (
        "A digest is 'sha256:' followed by 64 lowercase hex digits; other algorithms are not "
        f"accepted. Example: {_DIGEST_EXAMPLE!r}."
    )
    if _DIGEST_RE.fullmatch(digest):
        return digest
    algorithm, colon, hex_part = digest.partition(":")
    if not colon:
        problem = "has no algorithm prefix"
    elif algorithm != "sha256":
        problem = f"uses the algorithm {algorithm!r}; only sha256 is accepted"
    elif len(hex_part) != 64:
        problem = f"has {len(hex_part)} hex digits instead of 64"
    elif re.fullmatch(r"[a-fA-F0-9]{64}", hex_part):
        problem = "has uppercase hex digits"
    else:
        problem = "has characters that are not hex digits"
    raise _invalid("digest", digest, f"The image digest {digest!r} {problem}. {hint}")


def image_ref(
    name: str,
    *,
    tag: str | None = None,
    digest: str | None = None,
    new_name: str | None = None,
) -> ImageRef:
    """Build a validated ``ImageRef``; it needs a tag, a digest or both."""
    validate_image_name(name)
    if tag is None and digest is None:
        raise Invalid(
            f"The image {name!r} needs a tag or a digest, e.g. {name}:{_TAG_EXAMPLE} or "
            f"{name}@{_DIGEST_EXAMPLE}.",
            code="invalid_image",
            details={"field": "tag", "value": None},
        )
    if tag is not None:
        validate_tag(tag)
    if digest is not None:
        validate_digest(digest)
    if new_name is not None:
        validate_image_name(new_name)
    return ImageRef(name=name, tag=tag, digest=digest, new_name=new_name)
