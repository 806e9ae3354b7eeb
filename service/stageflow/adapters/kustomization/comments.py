"""Comment lines that ruamel keeps with a node, moved so that appending never lands below them.

ruamel keeps the comment lines that follow a node with the last scalar before them: a comment
above `configMapGenerator:` hangs on the last key of the last images[] entry. Anything appended
after that key would land below the comment, so appending moves those lines to the new end.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken


def _slot(container: Any, key: Any) -> tuple[dict[Any, list[Any]], Any, int]:
    """Find where ruamel keeps the comments that follow ``container[key]``."""
    value = container[key]
    if isinstance(value, CommentedMap) and value:
        return _slot(value, next(reversed(value)))
    if isinstance(value, CommentedSeq) and value:
        return _slot(value, len(value) - 1)
    return container.ca.items, key, 2 if isinstance(container, CommentedMap) else 0


def _last_key(node: CommentedMap | CommentedSeq) -> Any:
    """Return the key (or index) of the last item of ``node``."""
    return next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1


def take_trailing_of(container: Any, key: Any) -> str:
    """Detach and return the comment lines after ``container[key]``."""
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


def take_trailing(node: CommentedMap | CommentedSeq) -> str:
    """Detach and return the comment lines after ``node``'s last line."""
    return take_trailing_of(node, _last_key(node)) if node else ""


def add_trailing_at(container: Any, key: Any, lines: str) -> None:
    """Put comment lines after ``container[key]``, after any already there."""
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


def add_trailing(node: CommentedMap | CommentedSeq, lines: str) -> None:
    """Put comment lines (each ending in a newline) after ``node``'s last line."""
    if node:
        add_trailing_at(node, _last_key(node), lines)


def append_item(seq: CommentedSeq, item: Any) -> None:
    """Append ``item`` to ``seq``, keeping the comment lines that closed it last."""
    trailing = take_trailing(seq)
    seq.append(item)
    add_trailing(seq, trailing)
