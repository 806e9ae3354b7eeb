"""Walk a loaded ``stageflow.yaml`` and stop at its first problem with a message people can act on.

Every message names the file, the line when known, the key path (``stages[1].gates.soak``), what
is wrong and how to fix it, because the people reading it edit the file by hand.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import NoReturn

from stageflow.domain.errors import PipelineError
from stageflow.domain.pipeline.durations import parse_duration

KeyPath = tuple[str | int, ...]
LineOf = Callable[[KeyPath], int | None]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dotted(path: KeyPath) -> str:
    """Write a key path the way people read it: ``stages[1].gates.soak``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _show(value: object) -> str:
    """Describe a YAML value in a message, the way it looks in the file."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {json.dumps(shown)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def quoted(value: object) -> str:
    """Show a value as JSON when it is a string, else describe it (``the number 3``)."""
    return json.dumps(value) if isinstance(value, str) else _show(value)


class Reader:
    """Walks the loaded document and raises the first problem as a ``PipelineError``."""

    def __init__(self, source: str, line_of: LineOf) -> None:
        self.source = source
        self.line_of = line_of

    def fail(self, path: KeyPath, problem: str, fix: str) -> NoReturn:
        where = _dotted(path)
        line = self.line_of(path)
        head = self.source if line is None else f"{self.source} line {line}"
        if where:
            head = f"{head}, {where}"
        raise PipelineError(f"{head}: {problem}; {fix}", details={"path": where, "line": line})

    # Types ---------------------------------------------------------------------------------

    def mapping(self, value: object, path: KeyPath, example: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, found {_show(value)}", f"write it like {example}")
        for key in value:
            if not isinstance(key, str):
                self.fail(
                    (*path, str(key)),
                    f"keys must be strings, found {_show(key)}",
                    "quote the key or fix its spelling",
                )
        return value

    def sequence(self, value: object, path: KeyPath, example: str) -> list[object]:
        if not isinstance(value, list | tuple):
            self.fail(path, f"expected a list, found {_show(value)}", f"write it like {example}")
        return list(value)

    def string(self, value: object, path: KeyPath, example: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, found {_show(value)}", f"write it like {example}")
        if not value.strip():
            self.fail(path, "is empty", f"write it like {example}")
        return value

    def integer(self, value: object, path: KeyPath, example: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(
                path, f"expected a whole number, found {_show(value)}", f"write it like {example}"
            )
        return value

    def number(self, value: object, path: KeyPath, example: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, found {_show(value)}", f"write it like {example}")
        if not math.isfinite(value):
            self.fail(path, f"{value} is not a finite number", f"write it like {example}")
        return float(value)

    def boolean(self, value: object, path: KeyPath, example: str) -> bool:
        if not isinstance(value, bool):
            self.fail(
                path, f"expected true or false, found {_show(value)}", f"write it like {example}"
            )
        return value

    def name(self, value: object, path: KeyPath, what: str, example: str) -> str:
        text = self.string(value, path, example)
        if len(text) > 63 or not _DNS_LABEL.match(text):
            self.fail(
                path,
                f"{json.dumps(text)} is not a valid {what} name",
                "use at most 63 lowercase letters, digits and '-', starting and ending with a "
                f"letter or digit, like {example}",
            )
        return text

    def duration(self, value: object, path: KeyPath) -> timedelta:
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(
                path,
                f"expected a duration, found {_show(value)}",
                "write it like 30s, 10m or 1h30m (or a whole number of seconds)",
            )
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(
                path,
                f"{quoted(value)} is not a duration",
                "write it like 30s, 10m or 1h30m",
            )

    # Structure -----------------------------------------------------------------------------

    def keys(
        self,
        value: Mapping[str, object],
        path: KeyPath,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> None:
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(
                    (*path, key),
                    f"unknown key {json.dumps(key)}",
                    f"{hint}known keys here: {', '.join(allowed)}",
                )
        for key in required:
            if key not in value:
                where = _dotted(path) or "the top level"
                self.fail((*path, key), "is missing", f"add {key}: to {where}")

    def unique(self, name: str, seen: dict[str, KeyPath], path: KeyPath, what: str) -> None:
        if name in seen:
            self.fail(
                path,
                f"{json.dumps(name)} is already the name of {_dotted(seen[name])}",
                f"give every {what} a unique name",
            )
        seen[name] = path[:-1]


def optional(mapping: Mapping[str, object], key: str) -> object:
    """Return ``mapping[key]``; None when absent or empty (an empty ``gates:`` is the default)."""
    return mapping.get(key)
