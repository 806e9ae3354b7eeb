"""The file as lines: its indentation style, its preamble, and carrying edits over to it."""

from __future__ import annotations

import difflib
import itertools
import re

from stageflow.adapters.kustomization.roundtrip import DEFAULT_STYLE, Style

_IGNORABLE = re.compile(r"\s*(?:#.*)?")
_OPENER = re.compile(r"(?P<indent> *)(?P<dashes>(?:- +)*)(?P<key>[^\s#][^#]*?):\s*(?:#.*)?")
_ITEM = re.compile(r"(?P<indent> *)-(?P<gap> +)\S")
_TOP_LEVEL_KEY = re.compile(r"[^\s#-][^#]*?:(?:\s.*)?")


def detect_style(lines: list[str]) -> Style:
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
    sequence, offset = images_list or any_list or (DEFAULT_STYLE.sequence, DEFAULT_STYLE.offset)
    return Style(mapping=mapping or DEFAULT_STYLE.mapping, sequence=sequence, offset=offset)


def separates_keys_with_blank_lines(lines: list[str]) -> bool:
    """Say whether a blank line precedes some top-level key."""
    return any(
        not previous.strip() and _TOP_LEVEL_KEY.fullmatch(line)
        for previous, line in itertools.pairwise(lines)
    )


def split_lines(text: str) -> tuple[list[str], str, bool]:
    """Split ``text`` into lines without their ends; return the newline and a final-newline flag."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    if newline == "\r\n":
        lines = [line.removesuffix("\r") for line in lines]
    return lines, newline, final_newline


def join_lines(lines: list[str], newline: str, final_newline: bool) -> str:
    """Join ``lines`` back with the file's ``newline``, and its final newline when it had one."""
    return newline.join(lines) + (newline if final_newline and lines else "")


def preamble_length(lines: list[str]) -> int:
    """Count the lines up to and including a leading ``---`` (with comments or directives above)."""
    for index, line in enumerate(lines):
        if line == "---" or line.startswith(("--- ", "---\t")):
            return index + 1
        if not (_IGNORABLE.fullmatch(line) or line.startswith("%")):
            return 0
    return 0


def carry_over(original: list[str], before: list[str], after: list[str]) -> list[str] | None:
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
