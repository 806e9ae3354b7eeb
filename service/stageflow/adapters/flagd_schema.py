"""Validate flagd documents against the vendored flagd JSON schema, offline.

The schema files live in ``stageflow/domain/schemas/flagd`` (package data). ``flags.json`` refers
to ``./targeting.json``; both are registered under their published ``$id`` in a
``referencing.Registry`` so that the reference resolves without the network.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from importlib import resources
from typing import Any, Final

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.flags import FlagDocument, check_flag_document

__all__ = ["FLAGS_SCHEMA_ID", "TARGETING_SCHEMA_ID", "FlagdSchema", "validate_flag_document"]

FLAGS_SCHEMA_ID: Final = "https://flagd.dev/schema/v0/flags.json"
TARGETING_SCHEMA_ID: Final = "https://flagd.dev/schema/v0/targeting.json"
_MAX_MESSAGE = 240

Path = tuple[str | int, ...]


def _load(name: str) -> Any:
    data = resources.files("stageflow.domain") / "schemas" / "flagd" / name
    return json.loads(data.read_text(encoding="utf-8"))


def _format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _closest(error: ValidationError) -> list[ValidationError]:
    """Return the errors that explain ``error`` best.

    ``anyOf``/``oneOf`` failures (a flag is one of four typed flags, a rule one of a dozen
    operators) carry every alternative's errors, and jsonschema's own message is only "not valid
    under any of the given schemas". Explain the alternative that fits best instead: first one
    that accepts the shape of the value itself (no complaint about the value as a whole, such as
    "'if' was unexpected" from the ``var`` rule), then the one with the fewest complaints, then the
    one that got deepest into the document.
    """
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    grouped: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        grouped.setdefault(sub.relative_schema_path[0], []).append(sub)
    here = len(error.absolute_path)
    explained = [[found for sub in group for found in _closest(sub)] for group in grouped.values()]

    def fit(errors: list[ValidationError]) -> tuple[bool, int, int]:
        depths = [len(found.absolute_path) for found in errors]
        return (min(depths) <= here, len(errors), -max(depths))

    return min(explained, key=fit)


def _describe(error: ValidationError) -> tuple[Path, str]:
    path: Path = tuple(error.absolute_path)
    message = error.message
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in error.instance]
        if missing:
            path = (*path, missing[0])
            message = f"required property {missing[0]!r} is missing"
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return path, message


class FlagdSchema:
    """The flagd ``flags.json`` schema (v0, vendored), loaded and compiled once."""

    def __init__(self) -> None:
        flags = _load("flags.json")
        targeting = _load("targeting.json")
        registry: Registry[Any] = Registry().with_resources(
            [
                (FLAGS_SCHEMA_ID, Resource.from_contents(flags, default_specification=DRAFT7)),
                (
                    TARGETING_SCHEMA_ID,
                    Resource.from_contents(targeting, default_specification=DRAFT7),
                ),
            ]
        )
        Draft7Validator.check_schema(flags)
        Draft7Validator.check_schema(targeting)
        # Enter through the registry rather than validating against ``flags`` directly: in draft 7
        # a root ``$ref`` hides its sibling ``$id``, so the relative ``./targeting.json`` would
        # have no base URI to resolve against.
        self._document = Draft7Validator({"$ref": FLAGS_SCHEMA_ID}, registry=registry)
        # One flag object on its own: lets a write validate only the flags it changed.
        self._flag = Draft7Validator(
            {"$ref": f"{FLAGS_SCHEMA_ID}#/definitions/anyFlag"}, registry=registry
        )

    def problems(self, document: Mapping[str, Any]) -> list[str]:
        """List what the schema rejects in a whole document as ``path: message``, by path."""
        return self._report((), self._document.iter_errors(document))

    def problems_for_flags(self, flags: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """List what the schema rejects in these flag objects (``key -> flagd JSON``), by path."""
        problems: list[str] = []
        for key, flag in flags.items():
            if not key:
                problems.append("flags: a flag key must not be empty")
            problems.extend(self._report(("flags", key), self._flag.iter_errors(flag)))
        return sorted(problems)

    @staticmethod
    def _report(prefix: Path, errors: Iterable[ValidationError]) -> list[str]:
        # A set: the alternatives of an anyOf often repeat the same complaint.
        found = {_describe(closest) for error in errors for closest in _closest(error)}
        ordered = sorted(found, key=lambda item: ([str(p) for p in item[0]], item[1]))
        return [f"{_format_path((*prefix, *path))}: {message}" for path, message in ordered]


def validate_flag_document(
    doc: FlagDocument, schema: FlagdSchema, *, only: Collection[str] | None = None
) -> None:
    """Raise FlagDocumentError listing every schema and semantic problem of the document.

    ``only`` names the flags a write changed: the schema then checks those flags and the
    document-level parts (metadata, ``$evaluators``) instead of all flags, which keeps a toggle in
    a stage of thousands of flags cheap. Flags not named are assumed unchanged since they were
    last validated.
    """
    if only is None:
        problems = schema.problems(doc.to_json())
    else:
        # Only the named flags become JSON: converting all of them costs more than checking one.
        top = replace(doc, flags={}).to_json()
        changed = {key: doc.flags[key].to_json() for key in only if key in doc.flags}
        problems = schema.problems(top) + schema.problems_for_flags(changed)
    problems += check_flag_document(doc, only=only)
    if problems:
        more = len(problems) - 1
        message = problems[0]
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''}; see details.problems)"
        raise FlagDocumentError(message, details={"problems": problems})
