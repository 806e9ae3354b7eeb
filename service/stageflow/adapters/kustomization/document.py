"""Read and edit an overlay's ``kustomization.yaml`` without disturbing what people wrote.

ruamel.yaml's round-trip mode keeps comments and key order, but on output it still normalises a few
things: one indentation style for every sequence, ``key:  value`` spacing, ``~`` for null, flow
collection spacing, and it drops a ``---`` line together with any comment above it. A commit that
bumps one tag must not reformat the file, so ``render`` dumps the document twice, as it was parsed
and as it is now, and carries only the lines that differ between those two dumps over to the
original text. When that cannot be done safely the full dump is used, which is always correct YAML
with the same content, just normalised.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Iterable

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from stageflow.adapters.kustomization.comments import (
    add_trailing,
    add_trailing_at,
    append_item,
    take_trailing,
    take_trailing_of,
)
from stageflow.adapters.kustomization.images import ImageEdit
from stageflow.adapters.kustomization.roundtrip import (
    Style,
    canonical,
    kind_of,
    line_of,
    round_trip,
    syntax_error,
)
from stageflow.adapters.kustomization.text import (
    carry_over,
    detect_style,
    join_lines,
    preamble_length,
    separates_keys_with_blank_lines,
    split_lines,
)
from stageflow.domain.errors import Invalid
from stageflow.domain.images import ImageRef, image_ref


class KustomizationFile:
    """One ``kustomization.yaml``: its images and namespace, edited round-trip."""

    def __init__(self, text: str, data: CommentedMap, path: str) -> None:
        self._text = text
        self._data = data
        self._path = path
        self._lines = text.splitlines()
        # The dump of the document as parsed, taken just before the first edit (see render).
        self._pristine: str | None = None
        self._style: Style | None = None

    @classmethod
    def parse(cls, text: str, *, path: str = "kustomization.yaml") -> KustomizationFile:
        """Parse ``text``; a YAML error becomes ``Invalid`` naming ``path`` and the line."""
        try:
            data = round_trip().load(text)
        except YAMLError as exc:
            raise syntax_error(path, text, exc) from exc
        if data is None:
            raise Invalid(
                f"{path} is empty. A kustomization needs at least 'resources:'; "
                f"write one before setting images.",
                code="invalid_kustomization",
                details={"path": path},
            )
        if not isinstance(data, CommentedMap):
            raise Invalid(
                f"{path}: the document is a {kind_of(data)}, not a mapping. A "
                f"kustomization is a mapping with keys such as 'resources:' and 'images:'.",
                code="invalid_kustomization",
                details={"path": path, "line": 1},
            )
        return cls(text, data, path)

    @property
    def namespace(self) -> str | None:
        """The ``namespace:`` the overlay sets, if any."""
        return self._scalar_text(self._data, "namespace")

    def images(self) -> list[ImageRef]:
        """Return the ``images:`` entries in file order."""
        return [
            ImageRef(
                name=self._entry_name(entry),
                tag=self._scalar_text(entry, "newTag"),
                digest=self._scalar_text(entry, "digest"),
                new_name=self._scalar_text(entry, "newName"),
            )
            for entry in self._image_entries()
        ]

    def generated_only(self, filename: str, overlay: str, base: str) -> frozenset[str] | None:
        """The overlay's own files it reads, when ``filename`` feeds only a configMapGenerator.

        None when that cannot be shown: a key outside the simple set below, a resource outside
        the overlay other than ``base``, a remote resource, or ``filename`` used elsewhere. The
        caller may then skip re-rendering after a change to ``filename`` alone (its content is
        opaque data to the generator), as long as the other inputs are unchanged.
        """
        data = self._data
        if not set(data) <= _SIMPLE_KEYS:
            return None
        resources = _local_resources(data.get("resources") or [], filename, overlay, base)
        sources = _generator_sources(data.get("configMapGenerator") or [])
        if resources is None or sources is None or filename not in sources:
            return None
        return frozenset(resources | (sources - {filename}))

    def set_image(self, ref: ImageRef, *, clear_other: bool = False) -> bool:
        """Set the tag and/or digest of image ``ref.name``; return whether the text changes.

        Only what ``ref`` gives is written: setting a digest keeps the tag and vice versa, unless
        ``clear_other`` asks to remove the one ``ref`` leaves out. ``ref.new_name`` is written when
        given and left alone otherwise. An image that has no entry yet is appended.
        """
        image_ref(ref.name, tag=ref.tag, digest=ref.digest, new_name=ref.new_name)
        edit = ImageEdit.of(ref, clear_other=clear_other)
        entries = [e for e in self._image_entries() if self._entry_name(e) == ref.name]
        if not entries:
            self._keep_pristine()
            self._append_image_entry(edit.new_entry())
            return True
        # kustomize applies every entry with the name in turn, so a duplicate must follow suit.
        changing = [entry for entry in entries if edit.changes(entry)]
        if changing:
            self._keep_pristine()
        for entry in changing:
            edit.apply(entry)
        return bool(changing)

    def render(self) -> str:
        """Return the file text: the input unchanged, or with only the edited lines changed."""
        if self._pristine is None:
            return self._text
        edited = self._dump(self._data).splitlines()
        pristine = self._pristine.splitlines()
        lines, newline, final_newline = split_lines(self._text)
        # ruamel drops '---' and any comment above it; they stay as they were.
        head = preamble_length(lines)
        body = lines[head:]
        if body == pristine:
            merged = edited
        else:
            carried = carry_over(body, pristine, edited)
            if carried is not None and self._means_the_same(
                join_lines(lines[:head] + carried, newline, final_newline)
            ):
                merged = carried
            else:
                merged = edited
        return join_lines(lines[:head] + merged, newline, final_newline)

    # -- reading ---------------------------------------------------------------------------

    def _image_entries(self) -> list[CommentedMap]:
        images = self._data.get("images")
        if images is None:
            return []
        if not isinstance(images, CommentedSeq):
            raise self._invalid(
                "'images:' must be a list of entries like '- name: ghcr.io/acme/demo' with "
                "'newTag:' and/or 'digest:'",
                line_of(self._data, "images"),
            )
        for index, entry in enumerate(images):
            if not isinstance(entry, CommentedMap) or entry.get("name") is None:
                raise self._invalid(
                    f"images[{index}] must be a mapping with a 'name:' "
                    f"(e.g. '- name: ghcr.io/acme/demo' and 'newTag: \"1.4.2\"')",
                    line_of(images, index),
                )
        return list(images)

    def _entry_name(self, entry: CommentedMap) -> str:
        name = self._scalar_text(entry, "name")
        if name is None:  # _image_entries checked it; this keeps the type honest
            raise self._invalid("an images[] entry has no name", line_of(entry, "name"))
        return name

    def _scalar_text(self, mapping: CommentedMap, key: str) -> str | None:
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return str(value)
        if isinstance(value, CommentedMap | CommentedSeq):
            raise self._invalid(f"'{key}:' must be a single value", line_of(mapping, key))
        # An unquoted 1.10 or true is read as a number or boolean; what people meant is the text
        # they wrote (1.10, not 1.1), so take it from the source line.
        try:
            line, column = mapping.lc.value(key)
            source: str = self._lines[line][column:]
        except (AttributeError, IndexError, KeyError, TypeError):
            return str(value)
        return re.split(r"\s#", source, maxsplit=1)[0].strip() or str(value)

    def _invalid(self, message: str, line: int | None) -> Invalid:
        where = f"{self._path} line {line}" if line is not None else self._path
        return Invalid(
            f"{where}: {message}.",
            code="invalid_kustomization",
            details={"path": self._path, "line": line},
        )

    # -- writing ---------------------------------------------------------------------------

    def _keep_pristine(self) -> None:
        if self._pristine is None:
            self._pristine = self._dump(self._data)

    def _dump(self, data: CommentedMap) -> str:
        if self._style is None:
            self._style = detect_style(self._lines)
        stream = io.StringIO()
        round_trip(self._style).dump(data, stream)
        return stream.getvalue()

    def _append_image_entry(self, entry: CommentedMap) -> None:
        images = self._data.get("images")
        if isinstance(images, CommentedSeq):
            if not images:
                images.fa.set_block_style()  # `images: []` becomes a block list
            append_item(images, entry)
        elif "images" in self._data:
            # `images:` with no value: the key keeps its place and its end-of-line comment.
            trailing = take_trailing_of(self._data, "images")
            self._data["images"] = CommentedSeq([entry])
            add_trailing_at(self._data, "images", trailing)
        else:
            # A new top-level key goes last; what trailed the old last line (a closing comment)
            # moves below it, and a blank line separates it when the file separates its keys so.
            trailing = take_trailing(self._data)
            if separates_keys_with_blank_lines(self._lines):
                add_trailing(self._data, "\n")
            self._data["images"] = CommentedSeq([entry])
            add_trailing(self._data, trailing)

    def _means_the_same(self, text: str) -> bool:
        try:
            data = round_trip().load(text)
        except YAMLError:
            return False
        return bool(canonical(data) == canonical(self._data))


# The kustomization keys whose effect on a render is known well enough to skip it (see
# ``generated_only``); any other key may read files in ways not followed here.
_SIMPLE_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "images",
        "configMapGenerator",
        "labels",
        "commonLabels",
        "commonAnnotations",
        "namePrefix",
        "nameSuffix",
        "generatorOptions",
    }
)
_GENERATOR_KEYS = frozenset({"name", "files", "literals", "behavior", "options"})


def _local_resources(
    resources: Iterable[object], filename: str, overlay: str, base: str
) -> set[str] | None:
    """The overlay's own files among ``resources``; None for anything else but ``base``."""
    local: set[str] = set()
    for item in resources:
        if not isinstance(item, str) or "://" in item or item.startswith("github.com"):
            return None
        target = posixpath.normpath(posixpath.join(overlay, item))
        if target == base:
            continue
        if posixpath.dirname(target) != overlay or posixpath.basename(target) == filename:
            return None
        local.add(posixpath.basename(target))
    return local


def _generator_sources(generators: Iterable[object]) -> set[str] | None:
    """The overlay files the configMapGenerators read; None when one is not a simple generator."""
    sources: set[str] = set()
    for generator in generators:
        if not isinstance(generator, dict) or set(generator) - _GENERATOR_KEYS:
            return None
        for entry in generator.get("files") or []:
            if not isinstance(entry, str):
                return None
            source = entry.split("=", 1)[-1]
            if "/" in source:
                return None
            sources.add(source)
    return sources
