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

import difflib
import io
import itertools
import posixpath
import re
import threading
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from stageflow.domain.errors import Invalid
from stageflow.domain.images import ImageRef, image_ref

__all__ = ["KustomizationFile"]

# kustomize's own order for the fields of an images[] entry (`kustomize edit set image` writes it).
_IMAGE_KEYS = ("name", "newName", "newTag", "digest")
_STR_TAG = "tag:yaml.org,2002:str"
# kustomize reads YAML with go-yaml, which still treats yes/no/on/off as booleans (YAML 1.1), so a
# value is written plain only when both YAML versions read it as a string.
_RESOLVERS = (VersionedResolver(version=(1, 2)), VersionedResolver(version=(1, 1)))


@dataclass(frozen=True)
class _Style:
    """How a file indents: ruamel's ``YAML.indent(mapping=, sequence=, offset=)``."""

    mapping: int = 2
    sequence: int = 4
    offset: int = 2


_DEFAULT_STYLE = _Style()
_local = threading.local()


def _yaml(style: _Style = _DEFAULT_STYLE) -> YAML:
    """Return this thread's round-trip YAML instance for ``style``, configured once."""
    # A YAML instance keeps its reader, scanner and emitter between calls, so it must not be
    # shared between threads; one per thread and style still avoids building one per request.
    instances: dict[_Style, YAML] | None = getattr(_local, "instances", None)
    if instances is None:
        instances = {}
        _local.instances = instances
    yaml = instances.get(style)
    if yaml is None:
        yaml = YAML(typ="rt")
        yaml.preserve_quotes = True
        # Never fold a long line that someone wrote on one line.
        yaml.width = 1 << 20
        yaml.indent(mapping=style.mapping, sequence=style.sequence, offset=style.offset)
        instances[style] = yaml
    return yaml


class KustomizationFile:
    """One ``kustomization.yaml``: its images and namespace, edited round-trip."""

    def __init__(self, text: str, data: CommentedMap, path: str) -> None:
        self._text = text
        self._data = data
        self._path = path
        self._lines = text.splitlines()
        # The dump of the document as parsed, taken just before the first edit (see render).
        self._pristine: str | None = None
        self._style: _Style | None = None

    @classmethod
    def parse(cls, text: str, *, path: str = "kustomization.yaml") -> KustomizationFile:
        """Parse ``text``; a YAML error becomes ``Invalid`` naming ``path`` and the line."""
        try:
            data = _yaml().load(text)
        except YAMLError as exc:
            raise _syntax_error(path, text, exc) from exc
        if data is None:
            raise Invalid(
                f"{path} is empty. A kustomization needs at least 'resources:'; "
                f"write one before setting images.",
                code="invalid_kustomization",
                details={"path": path},
            )
        if not isinstance(data, CommentedMap):
            raise Invalid(
                f"{path}: the document is a {_kind(data)}, not a mapping. A "
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
        simple = {
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
        data = self._data
        if not set(data) <= simple:
            return None
        local: set[str] = set()
        for item in data.get("resources") or []:
            if not isinstance(item, str) or "://" in item or item.startswith("github.com"):
                return None
            target = posixpath.normpath(posixpath.join(overlay, item))
            if target == base:
                continue
            if posixpath.dirname(target) != overlay or posixpath.basename(target) == filename:
                return None
            local.add(posixpath.basename(target))
        used = False
        for generator in data.get("configMapGenerator") or []:
            if not isinstance(generator, dict) or set(generator) - {
                "name",
                "files",
                "literals",
                "behavior",
                "options",
            }:
                return None
            for entry in generator.get("files") or []:
                if not isinstance(entry, str):
                    return None
                source = entry.split("=", 1)[-1]
                if "/" in source:
                    return None
                if source == filename:
                    used = True
                else:
                    local.add(source)
        return frozenset(local) if used else None

    def set_image(self, ref: ImageRef, *, clear_other: bool = False) -> bool:
        """Set the tag and/or digest of image ``ref.name``; return whether the text changes.

        Only what ``ref`` gives is written: setting a digest keeps the tag and vice versa, unless
        ``clear_other`` asks to remove the one ``ref`` leaves out. ``ref.new_name`` is written when
        given and left alone otherwise. An image that has no entry yet is appended.
        """
        image_ref(ref.name, tag=ref.tag, digest=ref.digest, new_name=ref.new_name)
        wanted = {
            key: value
            for key, value in (
                ("newName", ref.new_name),
                ("newTag", ref.tag),
                ("digest", ref.digest),
            )
            if value is not None
        }
        unwanted = []
        if clear_other:
            unwanted = [key for key in ("newTag", "digest") if key not in wanted]

        entries = [e for e in self._image_entries() if self._entry_name(e) == ref.name]
        if not entries:
            self._keep_pristine()
            entry = CommentedMap()
            entry["name"] = _scalar(ref.name, None)
            for key in _IMAGE_KEYS[1:]:
                if key in wanted:
                    entry[key] = _scalar(wanted[key], None)
            self._append_image_entry(entry)
            return True

        changed = False
        # kustomize applies every entry with the name in turn, so a duplicate must follow suit.
        for entry in entries:
            to_set = [
                key
                for key, value in wanted.items()
                if not (isinstance(entry.get(key), str) and entry[key] == value)
            ]
            to_remove = [key for key in unwanted if key in entry]
            if not to_set and not to_remove:
                continue
            self._keep_pristine()
            changed = True
            for key in to_set:
                _set_image_key(entry, key, _scalar(wanted[key], entry.get(key)))
            for key in to_remove:
                _remove_key(entry, key)
        return changed

    def render(self) -> str:
        """Return the file text: the input unchanged, or with only the edited lines changed."""
        if self._pristine is None:
            return self._text
        edited = self._dump(self._data).splitlines()
        pristine = self._pristine.splitlines()
        lines, newline, final_newline = _split_lines(self._text)
        # ruamel drops '---' and any comment above it; they stay as they were.
        head = _preamble_length(lines)
        body = lines[head:]
        if body == pristine:
            merged = edited
        else:
            carried = _carry_over(body, pristine, edited)
            if carried is not None and self._means_the_same(
                _join(lines[:head] + carried, newline, final_newline)
            ):
                merged = carried
            else:
                merged = edited
        return _join(lines[:head] + merged, newline, final_newline)

    # -- reading ---------------------------------------------------------------------------

    def _image_entries(self) -> list[CommentedMap]:
        images = self._data.get("images")
        if images is None:
            return []
        if not isinstance(images, CommentedSeq):
            raise self._invalid(
                "'images:' must be a list of entries like '- name: ghcr.io/acme/demo' with "
                "'newTag:' and/or 'digest:'",
                _line(self._data, "images"),
            )
        for index, entry in enumerate(images):
            if not isinstance(entry, CommentedMap) or entry.get("name") is None:
                raise self._invalid(
                    f"images[{index}] must be a mapping with a 'name:' "
                    f"(e.g. '- name: ghcr.io/acme/demo' and 'newTag: \"1.4.2\"')",
                    _line(images, index),
                )
        return list(images)

    def _entry_name(self, entry: CommentedMap) -> str:
        name = self._scalar_text(entry, "name")
        if name is None:  # _image_entries checked it; this keeps the type honest
            raise self._invalid("an images[] entry has no name", _line(entry, "name"))
        return name

    def _scalar_text(self, mapping: CommentedMap, key: str) -> str | None:
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return str(value)
        if isinstance(value, CommentedMap | CommentedSeq):
            raise self._invalid(f"'{key}:' must be a single value", _line(mapping, key))
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
            self._style = _detect_style(self._lines)
        stream = io.StringIO()
        _yaml(self._style).dump(data, stream)
        return stream.getvalue()

    def _append_image_entry(self, entry: CommentedMap) -> None:
        images = self._data.get("images")
        if isinstance(images, CommentedSeq):
            if not images:
                images.fa.set_block_style()  # `images: []` becomes a block list
            _append_item(images, entry)
        elif "images" in self._data:
            # `images:` with no value: the key keeps its place and its end-of-line comment.
            trailing = _take_trailing_of(self._data, "images")
            self._data["images"] = CommentedSeq([entry])
            _add_trailing_at(self._data, "images", trailing)
        else:
            # A new top-level key goes last; what trailed the old last line (a closing comment)
            # moves below it, and a blank line separates it when the file separates its keys so.
            trailing = _take_trailing(self._data)
            if _separates_keys_with_blank_lines(self._lines):
                _add_trailing(self._data, "\n")
            self._data["images"] = CommentedSeq([entry])
            _add_trailing(self._data, trailing)

    def _means_the_same(self, text: str) -> bool:
        try:
            data = _yaml().load(text)
        except YAMLError:
            return False
        return bool(_canonical(data) == _canonical(self._data))


# -- values ----------------------------------------------------------------------------------


def _reads_as_string(text: str) -> bool:
    return all(str(r.resolve(ScalarNode, text, (True, False))) == _STR_TAG for r in _RESOLVERS)


def _scalar(value: str, like: object) -> str:
    """Return ``value`` styled like the value it replaces, quoted when YAML would misread it."""
    styled: str
    if isinstance(like, SingleQuotedScalarString):
        styled = SingleQuotedScalarString(value)
    elif isinstance(like, DoubleQuotedScalarString) or not _reads_as_string(value):
        styled = DoubleQuotedScalarString(value)
    else:
        styled = value
    return styled


def _set_image_key(entry: CommentedMap, key: str, value: str) -> None:
    if key in entry:
        entry[key] = value  # same place; its end-of-line comment stays
        return
    rank = _IMAGE_KEYS.index(key)
    for position, existing in enumerate(entry):
        if existing in _IMAGE_KEYS and _IMAGE_KEYS.index(existing) > rank:
            entry.insert(position, key, value)
            return
    trailing = _take_trailing(entry)
    entry[key] = value
    _add_trailing(entry, trailing)


def _remove_key(entry: CommentedMap, key: str) -> None:
    position = list(entry).index(key)
    # Comment lines below the removed line belong to what follows it; keep them.
    trailing = _take_trailing_of(entry, key)
    entry.ca.items.pop(key, None)
    previous = list(entry)[position - 1] if position > 0 else None
    del entry[key]
    if previous is not None:
        _add_trailing_at(entry, previous, trailing)


# -- comments --------------------------------------------------------------------------------
# ruamel keeps the comment lines that follow a node with the last scalar before them: a comment
# above `configMapGenerator:` hangs on the last key of the last images[] entry. Anything appended
# after that key would land below the comment, so appending moves those lines to the new end.


def _slot(container: Any, key: Any) -> tuple[dict[Any, list[Any]], Any, int]:
    """Find where ruamel keeps the comments that follow ``container[key]``."""
    value = container[key]
    if isinstance(value, CommentedMap) and value:
        return _slot(value, next(reversed(value)))
    if isinstance(value, CommentedSeq) and value:
        return _slot(value, len(value) - 1)
    return container.ca.items, key, 2 if isinstance(container, CommentedMap) else 0


def _last_key(node: CommentedMap | CommentedSeq) -> Any:
    return next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1


def _take_trailing_of(container: Any, key: Any) -> str:
    items, slot_key, index = _slot(container, key)
    slot = items.get(slot_key)
    token = slot[index] if slot is not None else None
    if slot is None or token is None:
        return ""
    first, newline, rest = token.value.partition("\n")
    if not rest:
        return ""
    if first.strip():
        token.value = first + newline  # keep the end-of-line comment where it is
    else:
        slot[index] = None
    return str(rest)


def _take_trailing(node: CommentedMap | CommentedSeq) -> str:
    """Detach and return the comment lines after ``node``'s last line."""
    return _take_trailing_of(node, _last_key(node)) if node else ""


def _add_trailing_at(container: Any, key: Any, lines: str) -> None:
    if not lines:
        return
    items, slot_key, index = _slot(container, key)
    slot = items.setdefault(slot_key, [None, None, None, None])
    token = slot[index]
    if token is None:
        slot[index] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        value = token.value if token.value.endswith("\n") else token.value + "\n"
        token.value = value + lines


def _add_trailing(node: CommentedMap | CommentedSeq, lines: str) -> None:
    """Put comment lines (each ending in a newline) after ``node``'s last line."""
    if node:
        _add_trailing_at(node, _last_key(node), lines)


def _append_item(seq: CommentedSeq, item: Any) -> None:
    trailing = _take_trailing(seq)
    seq.append(item)
    _add_trailing(seq, trailing)


# -- text ------------------------------------------------------------------------------------

_IGNORABLE = re.compile(r"\s*(?:#.*)?")
_OPENER = re.compile(r"(?P<indent> *)(?P<dashes>(?:- +)*)(?P<key>[^\s#][^#]*?):\s*(?:#.*)?")
_ITEM = re.compile(r"(?P<indent> *)-(?P<gap> +)\S")
_TOP_LEVEL_KEY = re.compile(r"[^\s#-][^#]*?:(?:\s.*)?")


def _detect_style(lines: list[str]) -> _Style:
    """Read the indentation the file uses, preferring the ``images:`` list's own."""
    mapping: int | None = None
    images_list: tuple[int, int] | None = None
    any_list: tuple[int, int] | None = None
    parent: tuple[str, int] | None = None  # the key of the last `key:` line without a value
    for line in lines:
        if _IGNORABLE.fullmatch(line):
            continue
        if parent is not None:
            key, column = parent
            item = _ITEM.match(line)
            indent = len(line) - len(line.lstrip(" "))
            if item:
                offset = len(item["indent"]) - column
                sequence = offset + 1 + len(item["gap"])
                if offset >= 0 and sequence >= offset + 2:
                    if key == "images" and column == 0:
                        images_list = (sequence, offset)
                    elif any_list is None:
                        any_list = (sequence, offset)
            elif indent > column and mapping is None:
                mapping = indent - column
        opener = _OPENER.fullmatch(line)
        parent = (opener["key"], len(opener["indent"]) + len(opener["dashes"])) if opener else None
    sequence, offset = images_list or any_list or (_DEFAULT_STYLE.sequence, _DEFAULT_STYLE.offset)
    return _Style(mapping=mapping or _DEFAULT_STYLE.mapping, sequence=sequence, offset=offset)


def _separates_keys_with_blank_lines(lines: list[str]) -> bool:
    return any(
        not previous.strip() and _TOP_LEVEL_KEY.fullmatch(line)
        for previous, line in itertools.pairwise(lines)
    )


def _split_lines(text: str) -> tuple[list[str], str, bool]:
    """Split ``text`` into lines without their ends; return the newline and a final-newline flag."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    if newline == "\r\n":
        lines = [line.removesuffix("\r") for line in lines]
    return lines, newline, final_newline


def _join(lines: list[str], newline: str, final_newline: bool) -> str:
    return newline.join(lines) + (newline if final_newline and lines else "")


def _preamble_length(lines: list[str]) -> int:
    """Count the lines up to and including a leading ``---`` (with comments or directives above)."""
    for index, line in enumerate(lines):
        if line == "---" or line.startswith(("--- ", "---\t")):
            return index + 1
        if not (_IGNORABLE.fullmatch(line) or line.startswith("%")):
            return 0
    return 0


def _carry_over(original: list[str], before: list[str], after: list[str]) -> list[str] | None:
    """Apply the line changes from ``before`` to ``after`` to ``original``.

    ``before`` is ruamel's rendering of ``original``: mostly the same lines, some reformatted.
    Lines are matched between the two (equal, or reformatted in place); each changed run of
    ``before`` must match a run of ``original`` line for line, else None.
    """
    where: list[int | None] = [None] * len(before)
    matcher = difflib.SequenceMatcher(None, original, before, autojunk=False)
    for tag, o1, o2, b1, b2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and o2 - o1 == b2 - b1):
            for k in range(b2 - b1):
                where[b1 + k] = o1 + k
    edits: list[tuple[int, int, list[str]]] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, b1, b2, a1, a2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if b2 > b1:
            start = where[b1]
            if start is None or any(where[b1 + k] != start + k for k in range(b2 - b1)):
                return None
            edits.append((start, start + b2 - b1, after[a1:a2]))
        else:
            anchor = where[b1 - 1] if b1 > 0 else -1
            if anchor is None:
                return None
            edits.append((anchor + 1, anchor + 1, after[a1:a2]))
    result = list(original)
    for start, end, lines in reversed(edits):
        result[start:end] = lines
    return result


def _canonical(node: Any) -> Any:
    """Return ``node`` as plain values that compare equal only for the same YAML content."""
    if isinstance(node, dict):
        return ("map", [(_canonical(k), _canonical(v)) for k, v in node.items()])
    if isinstance(node, list):
        return ("seq", [_canonical(v) for v in node])
    for kind in (str, bool, int, float):
        if isinstance(node, kind):
            return (kind.__name__, kind(node))
    return (type(node).__name__, node)


def _kind(node: Any) -> str:
    return "list" if isinstance(node, list) else "single value"


def _line(container: Any, key: Any) -> int | None:
    """Return the 1-based line of ``container[key]`` in the parsed text, when known."""
    try:
        if isinstance(container, CommentedSeq):
            return int(container.lc.item(key)[0]) + 1
        return int(container.lc.key(key)[0]) + 1
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _syntax_error(path: str, text: str, exc: YAMLError) -> Invalid:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    elif isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    else:
        line = column = None
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    where = f" at line {line}, column {column}" if line is not None else ""
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem = f"{context} (line {context_mark.line + 1}): {problem}"
    return Invalid(
        f"{path} is not valid YAML: {problem}{where}. Fix the file and try again.",
        code="invalid_kustomization",
        details={"path": path, "line": line, "column": column},
    )
