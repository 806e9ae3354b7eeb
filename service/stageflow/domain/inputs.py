"""Rules every JSON body and every URL obeys before any field of it is used.

Python's ``json`` reads ``"\\ud800"`` as a string holding a lone UTF-16 surrogate, which no UTF-8
writer (Git, the database, the answer) can encode: refused here, with the place it was found, it
is a 400 instead of a failure halfway through a write. Nesting is bounded for the same reason:
every document Stageflow keeps (flagd targeting, check details, OFREP contexts) is shallow, and a
deep one costs recursion in every reader after this one.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from stageflow.domain.errors import Malformed

MAX_DEPTH: Final = 32

# A JSON escape of a surrogate code point (high or low): `\uD800` to `\uDFFF`.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_json(raw: bytes) -> None:
    """Refuse a JSON body that holds a lone surrogate or nests deeper than ``MAX_DEPTH``.

    Clean bodies cost two byte scans: the document is parsed only when it holds a surrogate
    escape or more than ``MAX_DEPTH`` brackets. A body that is not JSON at all passes: the
    parser that reads it next answers that in its own words.
    """
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if not surrogates and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep(None) from None
    except ValueError:
        return
    check_value(value)


def check_value(value: Any) -> None:
    """Refuse a decoded JSON value with a lone surrogate anywhere or nesting beyond the limit."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _check_text(item, where or "the body")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise too_deep(where)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in pairs:
                path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    _check_text(key, f"a key in {where or 'the body'}")
                stack.append((inner, depth + 1, path))


def check_url(path: bytes, query: str) -> None:
    """Refuse a path or query string whose percent-decoded bytes are not UTF-8."""
    for what, raw in (("path", path), ("query string", unquote_to_bytes(query.replace("+", " ")))):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Malformed(
                f"the {what} is not UTF-8 (byte {exc.start}: {raw[exc.start : exc.end]!r}, e.g. "
                "an encoded UTF-16 surrogate); percent-encode the UTF-8 bytes of the text",
                code="invalid_unicode",
                details={"where": what},
            ) from None


def too_deep(where: str | None) -> Malformed:
    where = where and (where if len(where) <= 80 else where[:77] + "...")
    at = f" at {where}" if where else ""
    return Malformed(
        f"the JSON body is nested more than {MAX_DEPTH} levels deep{at}; send at most "
        f"{MAX_DEPTH} levels of objects and arrays",
        code="too_deep",
        details={"max_depth": MAX_DEPTH, **({"at": where} if where else {})},
    )


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Malformed(
            f"{where} holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}), which is "
            "not Unicode text and cannot be stored as UTF-8; send the character's surrogate "
            "pair or the UTF-8 text itself",
            code="invalid_unicode",
            details={"at": where},
        ) from None
