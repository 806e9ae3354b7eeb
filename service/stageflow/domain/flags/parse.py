"""Read a flagd document from its text into ``model`` values, refusing what would not round-trip.

Only the shape is judged here (objects where objects belong, strings where strings belong);
``check`` and the JSON schema (an adapter) judge the values.
"""

from __future__ import annotations

import json
from typing import Any, Final

from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.flags.model import FLAGD_SCHEMA_URL, Flag, FlagDocument

__all__ = ["parse_flag_document"]

_FLAG_PROPERTIES: Final = ("state", "variants", "defaultVariant", "targeting", "metadata")
_DOCUMENT_PROPERTIES: Final = ("$schema", "metadata", "$evaluators", "flags")


class _NotJSONError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJSONError(name)


# json.loads keeps the last of two equal keys without a word; after a clumsy merge that repeats a
# flag, the next write would silently drop one. Checking costs about 3 ms per 5,000 flags.
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _NotJSONError(f"the key {name!r} twice in one object")
            seen.add(name)
    return obj


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _fail(problems: list[str]) -> FlagDocumentError:
    more = len(problems) - 1
    message = problems[0]
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''}; see details.problems)"
    return FlagDocumentError(message, details={"problems": problems})


def parse_flag_document(text: str | bytes) -> FlagDocument:
    """Read a flagd document; FlagDocumentError names the line and column of a JSON error.

    Only the shape is checked here (objects where objects belong, strings where strings belong);
    ``check_flag_document`` and the JSON schema judge the values. Unknown properties are refused
    rather than dropped, because the document is written back on the next change.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = f"the flag document is not UTF-8 (byte {exc.start}); save it as UTF-8"
            raise _fail([problem]) from None
    elif text.startswith("\ufeff"):
        text = text[1:]
    try:
        raw = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        problem = (
            f"the flag document is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        )
        error = _fail([problem])
        error.details.update(line=exc.lineno, column=exc.colno)
        raise error from None
    except _NotJSONError as exc:
        raise _fail([f"the flag document is not valid JSON: it has {exc}; fix it"]) from None
    return _document_from_json(raw)


def _document_from_json(raw: Any) -> FlagDocument:
    if not isinstance(raw, dict):
        raise _fail([f"the flag document must be a JSON object, not {_type_name(raw)}"])
    problems = [
        f"{name}: unknown top-level property; a flag document has only "
        f"{', '.join(_DOCUMENT_PROPERTIES)} (remove it)"
        for name in raw
        if name not in _DOCUMENT_PROPERTIES
    ]
    schema = raw.get("$schema", FLAGD_SCHEMA_URL)
    if not isinstance(schema, str):
        problems.append(f"$schema: must be a string, not {_type_name(schema)}")
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"metadata: must be an object, not {_type_name(metadata)}")
    evaluators = raw.get("$evaluators", {})
    if not isinstance(evaluators, dict):
        problems.append(f"$evaluators: must be an object, not {_type_name(evaluators)}")
    flags = _flags_from_json(raw, problems)
    if problems:
        raise _fail(problems)
    return FlagDocument(flags, metadata, evaluators, schema)


def _flags_from_json(raw: dict[str, Any], problems: list[str]) -> dict[str, Flag]:
    flags: dict[str, Flag] = {}
    if "flags" not in raw:
        problems.append('flags: missing; a flag document needs "flags": {...}')
    elif not isinstance(raw["flags"], dict):
        problems.append(
            f"flags: must be an object keyed by flag key, not {_type_name(raw['flags'])}"
        )
    else:
        for key, obj in raw["flags"].items():
            flag = _flag_from_json(key, obj, problems)
            if flag is not None:
                flags[key] = flag
    return flags


def _flag_from_json(key: str, obj: Any, problems: list[str]) -> Flag | None:
    where = f"flags.{key}"
    if not isinstance(obj, dict):
        problems.append(f"{where}: a flag must be an object, not {_type_name(obj)}")
        return None
    before = len(problems)
    for name in obj:
        if name not in _FLAG_PROPERTIES:
            problems.append(
                f"{where}.{name}: unknown flag property; a flag has only "
                f"{', '.join(_FLAG_PROPERTIES)} (remove it)"
            )
    state = obj.get("state")
    if not isinstance(state, str):
        problems.append(
            f'{where}.state: must be "ENABLED" or "DISABLED", not {_type_name(state)}'
            if "state" in obj
            else f'{where}.state: missing; add "state": "ENABLED"'
        )
    variants = obj.get("variants")
    if not isinstance(variants, dict):
        problems.append(
            f"{where}.variants: must be an object, not {_type_name(variants)}"
            if "variants" in obj
            else f'{where}.variants: missing; add e.g. "variants": {{"on": true, "off": false}}'
        )
    default = obj.get("defaultVariant")
    if default is not None and not isinstance(default, str):
        problems.append(
            f"{where}.defaultVariant: must be a variant name or null, not {_type_name(default)}"
        )
    targeting = obj.get("targeting")
    if targeting is not None and not isinstance(targeting, dict):
        problems.append(
            f"{where}.targeting: must be a JSONLogic object, not {_type_name(targeting)}"
        )
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"{where}.metadata: must be an object, not {_type_name(metadata)}")
    if len(problems) != before or not isinstance(state, str) or not isinstance(variants, dict):
        return None
    return Flag(key, state, variants, default, targeting, metadata)
