"""The fixed layout a flag document is written in, and the object that owns its bytes.

Toggling a flag is a one-line diff in Git: one property per line in a flag, small maps
(variants, metadata) on one line when they fit in 100 columns, targeting and evaluators expanded.
Every flag block is a function of its flag alone, which is what lets a write edit the previous
text (``RenderedDocument.splice``) instead of rendering thousands of flags again.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from itertools import compress
from json.encoder import encode_basestring
from typing import Any, Final

from stageflow.domain.flags.model import Flag, FlagDocument

__all__ = ["RenderedDocument", "render_flag_document"]

# The widest line on which a small map (variants, metadata) is still written compactly.
_LINE_WIDTH: Final = 100

# Built once: json.dumps builds a new encoder per call when given options. The compact encoder has
# no indent, so it runs in C.
_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
_EXPANDED: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=2)


def _expanded(value: Any, indent: str) -> str:
    # JSON strings cannot hold a raw newline, so every newline is a line break of the layout.
    return _EXPANDED.encode(value).replace("\n", "\n" + indent)


def _scalar(value: Any) -> str | None:
    # The JSON of a scalar as json.dumps writes it, or None for anything else.
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    return None


def _compact(value: Any) -> str:
    # Variants and metadata are nearly always maps of scalars; joining them here is several
    # times faster than a JSONEncoder call, which builds a new C encoder every time.
    if isinstance(value, dict):
        parts = []
        for name, item in value.items():
            text = _scalar(item)
            if text is None or not isinstance(name, str):
                return _COMPACT.encode(value)
            parts.append(f"{encode_basestring(name)}: {text}")
        return "{" + ", ".join(parts) + "}"
    text = _scalar(value)
    return _COMPACT.encode(value) if text is None else text


def _small(value: Any, indent: str, prefix: str, last: bool) -> str:
    compact = _compact(value)
    if len(indent) + len(prefix) + len(compact) + (0 if last else 1) <= _LINE_WIDTH:
        return compact
    return _expanded(value, indent)


def _members(indent: str, members: list[tuple[str, Any, str]]) -> str:
    # members: (name, value, style) with style "scalar", "small" (one line when it fits) or
    # "expanded" (always one property per line).
    lines: list[str] = []
    last = len(members) - 1
    for index, (name, value, style) in enumerate(members):
        prefix = f"{encode_basestring(name)}: "
        if style == "scalar":
            text = _compact(value)
        elif style == "small":
            text = _small(value, indent, prefix, index == last)
        else:
            text = _expanded(value, indent)
        lines.append(f"{indent}{prefix}{text}")
    return ",\n".join(lines)


_FLAG_INDENT = " " * 6
# Room left for a compact value after the property name; "variants" is followed by a comma,
# "metadata" is the last property of a flag.
_VARIANTS_ROOM = _LINE_WIDTH - len(_FLAG_INDENT + '"variants": ,')
_METADATA_ROOM = _LINE_WIDTH - len(_FLAG_INDENT + '"metadata": ')


def _render_flag(key: str, flag: Flag) -> str:
    # The same layout as _members, unrolled: this runs once per flag on every write.
    variants = _compact(flag.variants)
    if len(variants) > _VARIANTS_ROOM:
        variants = _expanded(flag.variants, _FLAG_INDENT)
    text = (
        f"    {encode_basestring(key)}: {{\n"
        f'{_FLAG_INDENT}"state": {_compact(flag.state)},\n'
        f'{_FLAG_INDENT}"variants": {variants},\n'
        f'{_FLAG_INDENT}"defaultVariant": {_compact(flag.default_variant)}'
    )
    if flag.targeting:
        text += f',\n{_FLAG_INDENT}"targeting": {_expanded(flag.targeting, _FLAG_INDENT)}'
    if flag.metadata:
        metadata = _compact(flag.metadata)
        if len(metadata) > _METADATA_ROOM:
            metadata = _expanded(flag.metadata, _FLAG_INDENT)
        text += f',\n{_FLAG_INDENT}"metadata": {metadata}'
    return text + "\n    }"


def _head(doc: FlagDocument) -> str:
    # Everything before the first flag: "$schema", "metadata", "$evaluators", and the opening of
    # "flags" (of a document that has flags).
    top: list[tuple[str, Any, str]] = [("$schema", doc.schema, "scalar")]
    if doc.metadata:
        top.append(("metadata", doc.metadata, "small"))
    if doc.evaluators:
        top.append(("$evaluators", doc.evaluators, "expanded"))
    return "{\n" + _members("  ", top) + ',\n  "flags": {\n'


_TAIL: Final = "\n  }\n}\n"
_SEPARATOR: Final = ",\n"


def render_flag_document(doc: FlagDocument) -> str:
    """Write the document in the fixed layout where one toggle is a one-line diff."""
    head = _head(doc)
    if not doc.flags:
        return head[: -len("\n")] + "}\n}\n"
    blocks = [_render_flag(key, flag) for key, flag in doc.flags.items()]
    return head + _SEPARATOR.join(blocks) + _TAIL


# More changed flags than this and the splice gives way to a full render: each one costs a search
# through the previous text, and a promotion of many flags is rare next to a toggle.
_MAX_SPLICED: Final = 64

# Only RenderedDocument's own constructors hold this: a text comes with its document no other way.
_RENDERED: Final = object()


@dataclass(frozen=True, eq=False, slots=True)
class RenderedDocument:
    """A flag document and the exact text ``render_flag_document`` writes for it.

    Splicing copies the text of every flag a change did not touch, so it is right only when the
    text is the render of the very document it splices from. This object holds that pair and is
    built only by rendering (``render``) or by splicing from another one (``splice``,
    ``rewrite``): no caller can pair a document with other bytes, or splice against them.
    """

    document: FlagDocument
    text: str
    proof: InitVar[object]

    def __post_init__(self, proof: object) -> None:
        if proof is not _RENDERED:
            raise TypeError("a RenderedDocument is made by RenderedDocument.render or .splice")

    @classmethod
    def render(cls, document: FlagDocument) -> RenderedDocument:
        """Render the whole document."""
        return cls(document, render_flag_document(document), _RENDERED)

    def splice(self, document: FlagDocument) -> RenderedDocument | None:
        """Render ``document`` by editing this text; None when the edit cannot be proven.

        Only the head (``$schema``, ``metadata`` with its ``version``, ``$evaluators``) and the
        blocks of the flags that changed, were added (at the end) or removed are rendered; the rest
        is copied. A toggle in a 5,000-flag document renders one flag instead of 5,000. Anything
        the layout does not explain (a moved flag, an empty document, many changes) gives None.
        """
        text = _splice(self.document, self.text, document)
        return None if text is None else RenderedDocument(document, text, _RENDERED)

    def rewrite(self, document: FlagDocument) -> RenderedDocument:
        """Render ``document``: spliced from this text when that can be proven, else whole."""
        return self.splice(document) or RenderedDocument.render(document)


@dataclass(frozen=True)
class _Touched:
    """The flags a new document changed (by identity), added at its end, or removed."""

    changed: list[str]
    added: list[str]
    removed: list[str]

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.added) + len(self.removed)


# (start, end, replacement): the span of one flag's block in the previous text; None removes it.
_Edit = tuple[int, int, str | None]


def _splice(previous: FlagDocument, previous_text: str, doc: FlagDocument) -> str | None:
    """Return ``render_flag_document(doc)`` made by editing ``previous_text``; None if it cannot.

    ``previous_text`` must be ``render_flag_document(previous)``; ``RenderedDocument`` sees to it.
    Each block that is replaced or removed is still checked against the render of its previous
    flag, in place, and so are the previous head and the end of the text.
    """
    if not previous.flags or not doc.flags:
        return None
    touched = _touched(previous.flags, doc.flags)
    if touched is None or touched.count > _MAX_SPLICED:
        return None
    span = _flags_span(previous, previous_text)
    if span is None:
        return None
    edits = _block_edits(previous_text, span, previous.flags, doc.flags, touched)
    if edits is None:
        return None
    added = [_render_flag(key, doc.flags[key]) for key in touched.added]
    return _assemble(_head(doc), previous_text, span, edits, added)


def _touched(old_flags: Mapping[str, Flag], new_flags: Mapping[str, Flag]) -> _Touched | None:
    """Tell which flags differ; None when the new order is not the old one plus flags at the end.

    Identity, not equality, tells which flags changed: {"on": 1} equals {"on": True}, and dicts
    equal in another key order, but they render differently. An equal copy is merely rendered
    again.
    """
    old_keys, new_keys = list(old_flags), list(new_flags)
    if old_keys == new_keys:  # a flag changed in place (the common case): compared in C
        differs = map(operator.is_not, old_flags.values(), new_flags.values())
        return _Touched(list(compress(new_keys, differs)), [], [])
    changed: list[str] = []
    added: list[str] = []
    for key, flag in new_flags.items():
        old = old_flags.get(key)
        if old is None:
            added.append(key)
        elif old is not flag:
            changed.append(key)
    kept = len(new_keys) - len(added)
    # The layout keeps the flags in document order: the kept ones in their old order, then the
    # new ones.
    if any(key in old_flags for key in new_keys[kept:]):
        return None
    if new_keys[:kept] != [key for key in old_keys if key in new_flags]:
        return None
    removed = [key for key in old_keys if key not in new_flags]
    return _Touched(changed, added, removed)


def _flags_span(previous: FlagDocument, text: str) -> tuple[int, int] | None:
    """Where the flag blocks of ``text`` start and end, once its head and tail are as rendered."""
    head = _head(previous)
    if not text.startswith(head) or not text.endswith(_TAIL):
        return None
    return len(head), len(text) - len(_TAIL)


def _block_edits(
    text: str,
    span: tuple[int, int],
    old_flags: Mapping[str, Flag],
    new_flags: Mapping[str, Flag],
    touched: _Touched,
) -> list[_Edit] | None:
    """The edits replacing or removing the touched blocks, in text order; None if one is amiss."""
    edits: list[_Edit] = []
    for key in (*touched.changed, *touched.removed):
        found = _find_block(text, span, _render_flag(key, old_flags[key]))
        if found is None:
            return None
        flag = new_flags.get(key)
        edits.append((*found, None if flag is None else _render_flag(key, flag)))
    edits.sort()
    return edits


def _find_block(text: str, span: tuple[int, int], block: str) -> tuple[int, int] | None:
    """Where ``block`` is in ``text``: verified in place, followed by a separator or the end."""
    start_of_flags, end_of_flags = span
    # The line opening a flag is the only line of the flags part indented by four spaces.
    at = text.find("\n" + block[: block.index("\n") + 1], start_of_flags - 1)
    start = at + 1
    end = start + len(block)
    if at < 0 or end > end_of_flags or not text.startswith(block, start):
        return None
    if end != end_of_flags and not text.startswith(_SEPARATOR, end):
        return None
    return start, end


def _assemble(
    head: str, text: str, span: tuple[int, int], edits: list[_Edit], added: list[str]
) -> str | None:
    """Join the new head, the kept text between the edits, the replacements and the new blocks.

    Every block is followed by ",\n" here, the last one too: the separator after the last block
    is dropped at the end.
    """
    start_of_flags, end_of_flags = span
    parts = [head]
    position = start_of_flags
    for start, end, replacement in edits:
        if start < position:
            return None  # two flags found at one place: not the layout this module knows
        if start > position:
            parts.append(text[position:start])
        if replacement is None:
            position = end + len(_SEPARATOR)  # the block and the separator after it
        else:
            parts.append(replacement)
            position = end
    if position < end_of_flags:
        parts.append(text[position:end_of_flags])
    if position <= end_of_flags:
        parts.append(_SEPARATOR)  # after the last block kept in place
    for block in added:
        parts.append(block)
        parts.append(_SEPARATOR)
    last = parts[-1]
    if len(parts) < 2 or not last.endswith(_SEPARATOR):
        return None
    parts[-1] = last[: -len(_SEPARATOR)] + _TAIL  # no separator after the last block
    return "".join(parts)
