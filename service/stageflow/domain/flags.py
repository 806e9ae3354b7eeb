"""Feature flags: flagd flag documents as typed values, their semantic checks and their layout.

A stage's flags live in one flagd document (``https://flagd.dev/schema/v0/flags.json``) so that a
flagd sidecar or any OpenFeature flagd provider reads the generated ConfigMap unchanged. This module
parses such a document into frozen values, changes flags without touching anything else, checks
what the JSON schema cannot see (a ``defaultVariant`` that names no variant, targeting that returns
a variant that does not exist, ...) and renders the document in a fixed layout where toggling a
flag is a one-line diff in Git.

Values built here are treated as immutable: the mappings inside a ``Flag`` are plain dicts (so that
parsing and rendering thousands of flags stays cheap) and must not be mutated after construction.
The JSON-schema validation itself is an adapter concern (``adapters/flagd_schema.py``).
"""

from __future__ import annotations

import enum
import json
import math
import operator
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import compress
from json.encoder import encode_basestring
from typing import Any, Final, Literal

from stageflow.domain.errors import FlagDocumentError, Invalid, NotFound

__all__ = [
    "FLAGD_SCHEMA_URL",
    "FLAG_KEY_RE",
    "LIFECYCLES",
    "STATES",
    "Flag",
    "FlagDocument",
    "FlagKind",
    "check_flag_document",
    "new_flag",
    "parse_flag_document",
    "render_flag_document",
    "set_enabled",
    "splice_flag_document",
    "with_changes",
]

LIFECYCLES: Final = ("experimental", "beta", "stable")
STATES: Final = ("ENABLED", "DISABLED")
FLAG_KEY_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
FLAGD_SCHEMA_URL: Final = "https://flagd.dev/schema/v0/flags.json"

FlagKind = Literal["boolean", "string", "number", "object"]

_KEY_RULE = "a letter, then up to 127 letters, digits, '_', '.' or '-'"
_FLAG_PROPERTIES = ("state", "variants", "defaultVariant", "targeting", "metadata")
_DOCUMENT_PROPERTIES = ("$schema", "metadata", "$evaluators", "flags")
# The widest line on which a small map (variants, metadata) is still written compactly.
_LINE_WIDTH = 100
_MAX_LISTED = 20


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


def _kind_of(value: Any) -> FlagKind | None:
    # bool before int: True is an int to Python but a boolean to flagd.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return "number"
    if isinstance(value, dict):
        return "object"
    return None


def _listing(names: Iterable[str], limit: int = _MAX_LISTED) -> str:
    names = list(names)
    shown = ", ".join(repr(name) for name in names[:limit])
    if len(names) > limit:
        shown += f" (and {len(names) - limit} more)"
    return shown or "(none)"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- flags -------------------------------------------------------------------------------------

_FLAG_KEY: Final = operator.attrgetter("key")


@dataclass(frozen=True)
class Flag:
    """One flagd flag; ``metadata`` carries Stageflow's ``lifecycle`` and ``description``."""

    key: str
    state: str
    variants: Mapping[str, Any]
    default_variant: str | None
    targeting: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # flagd treats ``"targeting": {}`` as no targeting; one spelling keeps equality and the
        # parse/render round trip exact.
        if self.targeting is not None and not self.targeting:
            object.__setattr__(self, "targeting", None)

    @property
    def lifecycle(self) -> str | None:
        """Return the lifecycle from the metadata (None for hand-written flags without one)."""
        value = self.metadata.get("lifecycle")
        return value if isinstance(value, str) else None

    @property
    def description(self) -> str | None:
        """Return the description from the metadata."""
        value = self.metadata.get("description")
        return value if isinstance(value, str) else None

    @property
    def is_boolean(self) -> bool:
        """Tell whether every variant is a boolean (the on/off kind of flag)."""
        return bool(self.variants) and all(isinstance(v, bool) for v in self.variants.values())

    @property
    def kind(self) -> FlagKind:
        """Return the type of the variant values (of the first typed one when they are mixed)."""
        if self.is_boolean:
            return "boolean"
        for value in self.variants.values():
            kind = _kind_of(value)
            if kind is not None:
                return kind
        return "object"

    @property
    def enabled(self) -> bool:
        """Tell whether the flag can serve a non-off value."""
        if self.state != "ENABLED":
            return False
        if not self.is_boolean or self.targeting:
            return True
        return self.default_variant is not None and self.variants.get(self.default_variant) is True

    @property
    def variant(self) -> str | None:
        """Return the default variant."""
        return self.default_variant

    def to_json(self) -> dict[str, Any]:
        """Return the flagd flag object, keys in the order the rendered file uses."""
        out: dict[str, Any] = {
            "state": self.state,
            "variants": dict(self.variants),
            "defaultVariant": self.default_variant,
        }
        if self.targeting:
            out["targeting"] = dict(self.targeting)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


def _variant_problems(variants: Mapping[str, Any]) -> list[str]:
    if not variants:
        return ['has no variants; add at least one (a boolean flag has "on": true, "off": false)']
    problems: list[str] = []
    names_by_kind: dict[str, list[str]] = {}
    for name, value in variants.items():
        if not isinstance(name, str) or not name:
            problems.append("has a variant with an empty name; give every variant a name")
            continue
        kind = _kind_of(value)
        if kind is None:
            problems.append(
                f"variant {name!r} has the value {_json(value)}, which flagd cannot serve; "
                "use a boolean, a string, a number or an object"
            )
            continue
        names_by_kind.setdefault(kind, []).append(name)
    if len(names_by_kind) > 1:
        mix = "; ".join(f"{kind}: {_listing(names, 5)}" for kind, names in names_by_kind.items())
        problems.append(
            f"has variants of different types ({mix}); give every variant the same type "
            "(boolean, string, number or object)"
        )
    return problems


def _require_key(key: str) -> None:
    if not isinstance(key, str) or not FLAG_KEY_RE.fullmatch(key):
        raise Invalid(
            f"flag key {key!r} is not valid: use {_KEY_RULE}",
            details={"key": key, "pattern": FLAG_KEY_RE.pattern},
        )


def _require_lifecycle(key: str, lifecycle: str) -> None:
    if lifecycle not in LIFECYCLES:
        raise Invalid(
            f"flag {key!r}: lifecycle {lifecycle!r} is not one of {', '.join(LIFECYCLES)}",
            details={"key": key, "lifecycle": lifecycle, "allowed": list(LIFECYCLES)},
        )


def _require_description(key: str, description: str | None) -> None:
    if description is not None and not isinstance(description, str):
        raise Invalid(f"flag {key!r}: description must be a string", details={"key": key})


def _require_variant(flag_key: str, variants: Mapping[str, Any], name: str | None) -> None:
    if name is not None and (not isinstance(name, str) or name not in variants):
        raise Invalid(
            f"flag {flag_key!r}: defaultVariant {name!r} names no variant; "
            f"use one of {_listing(variants)} or null",
            details={"key": flag_key, "defaultVariant": name, "variants": list(variants)},
        )


def new_flag(
    key: str,
    *,
    description: str | None = None,
    lifecycle: str = "experimental",
    variants: Mapping[str, Any] | None = None,
    default_variant: str | None = None,
) -> Flag:
    """Build a new flag, OFF unless ``default_variant`` names the true variant of a boolean flag.

    Without ``variants`` it is the boolean ``{"on": true, "off": false}`` flag with
    ``defaultVariant: "off"``. A boolean flag without a ``default_variant`` defaults to its false
    variant. Any other kind of flag starts ``DISABLED`` (OFF: clients get their code default),
    with the given or else the first variant as ``defaultVariant``; ``set_enabled`` turns it on.
    """
    _require_key(key)
    _require_lifecycle(key, lifecycle)
    _require_description(key, description)
    state = "ENABLED"
    default: str | None
    if variants is None:
        chosen: dict[str, Any] = {"on": True, "off": False}
        default = "off" if default_variant is None else default_variant
    else:
        if not isinstance(variants, Mapping):
            raise Invalid(f"flag {key!r}: variants must be an object", details={"key": key})
        chosen = dict(variants)
        problems = _variant_problems(chosen)
        if problems:
            raise Invalid(f"flag {key!r} {problems[0]}", details={"key": key, "problems": problems})
        flag = Flag(key, state, chosen, None)
        if not flag.is_boolean:
            state = "DISABLED"
        if default_variant is not None:
            default = default_variant
        elif flag.is_boolean:
            default = _boolean_variant(flag, False, required=False)
        else:
            default = next(iter(chosen))
    _require_variant(key, chosen, default)
    metadata: dict[str, Any] = {"lifecycle": lifecycle}
    if description is not None:
        metadata["description"] = description
    return Flag(key, state, chosen, default, None, metadata)


def _boolean_variant(flag: Flag, value: bool, *, required: bool = True) -> str | None:
    # Prefer the conventional names; a hand-written flag may call them "yes"/"no".
    conventional = "on" if value else "off"
    if flag.variants.get(conventional) is value:
        return conventional
    for name, candidate in flag.variants.items():
        if candidate is value:
            return name
    if required:
        raise Invalid(
            f"flag {flag.key!r} has no variant with the value {_json(value)}; "
            f'add one (e.g. "{conventional}": {_json(value)}) to switch it '
            f"{'on' if value else 'off'}",
            details={"key": flag.key, "variants": list(flag.variants)},
        )
    return None


def set_enabled(flag: Flag, enabled: bool) -> Flag:
    """Switch a flag on or off.

    A boolean flag is switched by its ``defaultVariant`` (``on``/``off``) with ``state: ENABLED``;
    any other flag by its ``state``. Switching OFF a boolean flag that has targeting also sets
    ``state: DISABLED``: its rules could still return ``on`` for some users, and OFF is the kill
    switch. The targeting is kept, so switching it ON again restores the rules.
    """
    if not flag.is_boolean:
        return replace(flag, state="ENABLED" if enabled else "DISABLED")
    variant = _boolean_variant(flag, enabled)
    state = "DISABLED" if not enabled and flag.targeting else "ENABLED"
    return replace(flag, state=state, default_variant=variant)


def with_changes(
    flag: Flag,
    *,
    default_variant: str | _Unset | None = _UNSET,
    state: str | _Unset = _UNSET,
    targeting: Mapping[str, Any] | _Unset | None = _UNSET,
    lifecycle: str | _Unset = _UNSET,
    description: str | _Unset | None = _UNSET,
) -> Flag:
    """Return the flag with the given fields changed; ``targeting=None`` or ``{}`` removes it."""
    changes: dict[str, Any] = {}
    if not isinstance(default_variant, _Unset):
        _require_variant(flag.key, flag.variants, default_variant)
        changes["default_variant"] = default_variant
    if not isinstance(state, _Unset):
        if state not in STATES:
            raise Invalid(
                f'flag {flag.key!r}: state {state!r} is not valid; use "ENABLED" or "DISABLED"',
                details={"key": flag.key, "state": state},
            )
        changes["state"] = state
    if not isinstance(targeting, _Unset):
        if targeting is not None and not isinstance(targeting, Mapping):
            raise Invalid(
                f"flag {flag.key!r}: targeting must be a JSONLogic object or null",
                details={"key": flag.key},
            )
        changes["targeting"] = dict(targeting) if targeting else None
    metadata = dict(flag.metadata)
    if not isinstance(lifecycle, _Unset):
        _require_lifecycle(flag.key, lifecycle)
        metadata["lifecycle"] = lifecycle
    if not isinstance(description, _Unset):
        _require_description(flag.key, description)
        if description is None:
            metadata.pop("description", None)
        else:
            metadata["description"] = description
    if metadata != flag.metadata:
        changes["metadata"] = metadata
    return replace(flag, **changes) if changes else flag


# --- documents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagDocument:
    """A stage's flagd document: its flags in file order, flag-set metadata and evaluators."""

    flags: Mapping[str, Flag]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    evaluators: Mapping[str, Any] = field(default_factory=dict)
    schema: str = FLAGD_SCHEMA_URL

    def __post_init__(self) -> None:
        # Every derived document (put, with_metadata, ...) passes here: compared in C first, a
        # 5,000-flag document costs ~0.1 ms instead of ~0.4 ms.
        flags = self.flags
        if all(map(operator.eq, flags, map(_FLAG_KEY, flags.values()))):
            return
        for key, flag in flags.items():
            if key != flag.key:
                raise ValueError(f"flag stored under {key!r} has the key {flag.key!r}")

    def get(self, key: str) -> Flag:
        """Return the flag with this key, or raise NotFound listing the known keys."""
        try:
            return self.flags[key]
        except KeyError:
            known = list(self.flags)
            raise NotFound(
                f"flag {key!r} does not exist here; known flags: {_listing(known)}",
                details={"key": key, "known": known[:_MAX_LISTED]},
            ) from None

    def put(self, flag: Flag) -> FlagDocument:
        """Add the flag (at the end) or replace the one with its key (in place)."""
        flags = dict(self.flags)
        flags[flag.key] = flag
        return replace(self, flags=flags)

    def remove(self, key: str) -> FlagDocument:
        """Drop the flag with this key; NotFound if there is none."""
        self.get(key)
        return replace(self, flags={k: f for k, f in self.flags.items() if k != key})

    def with_metadata(self, **values: Any) -> FlagDocument:
        """Set flag-set metadata entries (``flagSetId``, ``version``, ...); None removes one."""
        metadata = dict(self.metadata)
        for name, value in values.items():
            if value is None:
                metadata.pop(name, None)
            else:
                metadata[name] = value
        return replace(self, metadata=metadata)

    def to_json(self) -> dict[str, Any]:
        """Return the flagd document as JSON-ready containers."""
        out: dict[str, Any] = {"$schema": self.schema}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.evaluators:
            out["$evaluators"] = dict(self.evaluators)
        out["flags"] = {key: flag.to_json() for key, flag in self.flags.items()}
        return out


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
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise _fail([f"the flag document must be a JSON object, not {_type_name(raw)}"])
    for name in raw:
        if name not in _DOCUMENT_PROPERTIES:
            problems.append(
                f"{name}: unknown top-level property; a flag document has only "
                f"{', '.join(_DOCUMENT_PROPERTIES)} (remove it)"
            )
    schema = raw.get("$schema", FLAGD_SCHEMA_URL)
    if not isinstance(schema, str):
        problems.append(f"$schema: must be a string, not {_type_name(schema)}")
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"metadata: must be an object, not {_type_name(metadata)}")
    evaluators = raw.get("$evaluators", {})
    if not isinstance(evaluators, dict):
        problems.append(f"$evaluators: must be an object, not {_type_name(evaluators)}")
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
    if problems:
        raise _fail(problems)
    return FlagDocument(flags, metadata, evaluators, schema)


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


# --- semantic checks ---------------------------------------------------------------------------


def check_flag_document(doc: FlagDocument, *, only: Collection[str] | None = None) -> list[str]:
    """List what flagd would misread that the JSON schema lets through; [] when all is well.

    ``only`` restricts the checks to these flag keys (the ones a write changed).
    """
    problems: list[str] = []
    if only is None:
        keys: Iterable[str] = doc.flags
    elif len(only) == 1:
        keys = [key for key in only if key in doc.flags]  # a toggle: no walk through all flags
    else:
        wanted = set(only)
        keys = [key for key in doc.flags if key in wanted]  # in document order
    for key in keys:
        flag = doc.flags[key]
        name = f"flag {key!r}"
        if not FLAG_KEY_RE.fullmatch(key):
            problems.append(f"{name}: the key is not valid; rename it to {_KEY_RULE}")
        if flag.state not in STATES:
            problems.append(
                f'{name}: state {flag.state!r} is not valid; use "ENABLED" or "DISABLED"'
            )
        problems.extend(f"{name} {problem}" for problem in _variant_problems(flag.variants))
        if flag.default_variant is not None and flag.default_variant not in flag.variants:
            problems.append(
                f"{name}: defaultVariant {flag.default_variant!r} names no variant; "
                f"use one of {_listing(flag.variants)} or null"
            )
        if "lifecycle" in flag.metadata and flag.metadata["lifecycle"] not in LIFECYCLES:
            problems.append(
                f"{name}: metadata.lifecycle {flag.metadata['lifecycle']!r} is not a lifecycle; "
                f"use one of {', '.join(LIFECYCLES)}"
            )
        if flag.targeting:
            _TargetingCheck(name, flag.variants, doc.evaluators, problems).walk(
                flag.targeting, result=True, via=""
            )
    return problems


class _TargetingCheck:
    """Walk one flag's targeting, following ``$ref`` into ``$evaluators``.

    A node is in *result position* when its value becomes the flag's variant: the targeting root,
    the then/else branches of an ``if`` in result position, the bucket names of a ``fractional``
    in result position, and the body of an evaluator referenced from a result position. Only
    literals there must be variant names; ``"abc"`` inside ``starts_with`` is just a string.
    """

    def __init__(
        self, name: str, variants: Mapping[str, Any], evaluators: Mapping[str, Any], out: list[str]
    ) -> None:
        self.name = name
        self.variants = variants
        self.evaluators = evaluators
        self.out = out
        self.expanding: list[str] = []

    def report(self, via: str, message: str) -> None:
        self.out.append(f"{self.name}: targeting{via} {message}")

    def walk(self, node: Any, *, result: bool, via: str) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, result=False, via=via)
        elif isinstance(node, dict):
            if "$ref" in node:
                self.ref(node["$ref"], result=result, via=via)
            for operator, args in node.items():
                if operator == "$ref":
                    continue
                if operator == "if" and isinstance(args, list):
                    self.if_rule(args, result=result, via=via)
                elif operator == "fractional" and isinstance(args, list):
                    self.fractional(args, result=result, via=via)
                else:
                    self.walk(args, result=False, via=via)
        elif result:
            self.literal_result(node, via=via)

    def ref(self, target: Any, *, result: bool, via: str) -> None:
        if not isinstance(target, str) or target not in self.evaluators:
            self.report(
                via,
                f"references the evaluator {target!r}, which $evaluators does not define; "
                f"define it or use one of {_listing(self.evaluators)}",
            )
            return
        if target in self.expanding:
            self.report(
                via,
                f"references the evaluator {target!r} from inside itself; flagd "
                "cannot expand a cycle",
            )
            return
        self.expanding.append(target)
        self.walk(self.evaluators[target], result=result, via=f" (via $evaluators.{target})")
        self.expanding.pop()

    def if_rule(self, args: list[Any], *, result: bool, via: str) -> None:
        # JSONLogic "if": [cond, then, cond, then, ..., else]; odd positions and a final odd
        # element are the values the rule returns.
        last = len(args) - 1
        for index, arg in enumerate(args):
            returned = index % 2 == 1 or (index == last and len(args) % 2 == 1)
            self.walk(arg, result=result and returned, via=via)

    def fractional(self, args: list[Any], *, result: bool, via: str) -> None:
        for arg in args:
            if not isinstance(arg, list):
                self.walk(arg, result=False, via=via)  # the bucketing expression
                continue
            if not arg:
                continue  # the schema reports empty buckets
            bucket = arg[0]
            if isinstance(bucket, str):
                if result and bucket not in self.variants:
                    self.report(
                        via,
                        f"has the fractional bucket {bucket!r}, which is not a variant; use one "
                        f"of {_listing(self.variants)} or add the variant",
                    )
            else:
                self.walk(bucket, result=result, via=via)
            if len(arg) > 1:
                self.weight(bucket, arg[1], via=via)

    def weight(self, bucket: Any, weight: Any, *, via: str) -> None:
        if isinstance(weight, dict):
            # flagd accepts a JSONLogic rule as a weight (time-based rollouts).
            self.walk(weight, result=False, via=via)
            return
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight < 0
        ):
            self.report(
                via,
                f"gives the fractional bucket {bucket!r} the weight {_json(weight)}; "
                "weights are non-negative numbers",
            )
        elif isinstance(weight, float) and not weight.is_integer():
            # The schema flagd v0.16.1 compiles in types weights as numbers, but its evaluator
            # then buckets nobody (every user gets the default variant).
            self.report(
                via,
                f"gives the fractional bucket {bucket!r} the weight {_json(weight)}; flagd "
                "takes whole numbers only: scale every weight of the rule (x10, x100)",
            )

    def literal_result(self, value: Any, *, via: str) -> None:
        if isinstance(value, str):
            if value not in self.variants:
                self.report(
                    via,
                    f"returns {value!r}, which is not a variant; use one of "
                    f"{_listing(self.variants)} or add the variant",
                )
        elif isinstance(value, bool):
            # flagd turns a boolean result into the variant name "true"/"false".
            name = "true" if value else "false"
            if name not in self.variants:
                self.report(
                    via,
                    f"returns {name}, which flagd looks up as the variant {name!r}; there is "
                    f"none: return a variant name ({_listing(self.variants)}) instead",
                )


# --- rendering ---------------------------------------------------------------------------------

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
_MAX_SPLICED = 64


def splice_flag_document(
    previous: FlagDocument, previous_text: str, doc: FlagDocument
) -> str | None:
    """Return ``render_flag_document(doc)``, made by editing ``previous_text``; None if it cannot.

    ``previous_text`` must be ``render_flag_document(previous)`` (the caller knows it: it rendered
    that text itself). Then every flag block of the layout is a function of its flag alone, so only
    the document's head (``$schema``, ``metadata`` with its ``version``, ``$evaluators``) and the
    blocks of the flags that changed, were added (at the end) or removed are rendered; the rest of
    the text is copied. A toggle in a 5,000-flag document renders one flag instead of 5,000.

    Each block that is replaced or removed is checked against the render of its previous flag,
    in place, and so is the previous head and the end of the text; anything unexpected (a moved
    flag, an empty document, many changes) returns None, and the caller renders the whole document.
    """
    old_flags, new_flags = previous.flags, doc.flags
    if not old_flags or not new_flags:
        return None
    # Identity, not equality, tells which flags changed: {"on": 1} equals {"on": True}, and
    # dicts equal in another key order, but they render differently. An equal copy is merely
    # rendered again.
    old_keys, new_keys = list(old_flags), list(new_flags)
    changed: list[str]
    added: list[str]
    removed: list[str]
    if old_keys == new_keys:  # a flag changed in place (the common case): compared in C
        changed = list(
            compress(new_keys, map(operator.is_not, old_flags.values(), new_flags.values()))
        )
        added, removed = [], []
    else:
        changed, added = [], []
        for key, flag in new_flags.items():
            old = old_flags.get(key)
            if old is None:
                added.append(key)
            elif old is not flag:
                changed.append(key)
        kept = len(new_keys) - len(added)
        removed = [key for key in old_keys if key not in new_flags]
        # The layout keeps the flags in document order: the kept ones in their old order, then
        # the new ones.
        if any(key in old_flags for key in new_keys[kept:]):
            return None
        if new_keys[:kept] != [key for key in old_keys if key in new_flags]:
            return None
    if len(changed) + len(added) + len(removed) > _MAX_SPLICED:
        return None
    old_head = _head(previous)
    if not previous_text.startswith(old_head) or not previous_text.endswith(_TAIL):
        return None
    start_of_flags = len(old_head)
    end_of_flags = len(previous_text) - len(_TAIL)
    # (start, end, replacement): the block of each touched flag; None removes it.
    edits: list[tuple[int, int, str | None]] = []
    for key in (*changed, *removed):
        old_block = _render_flag(key, old_flags[key])
        # The line opening a flag is the only line of the flags part indented by four spaces.
        at = previous_text.find("\n" + old_block[: old_block.index("\n") + 1], start_of_flags - 1)
        start = at + 1
        end = start + len(old_block)
        if at < 0 or end > end_of_flags or not previous_text.startswith(old_block, start):
            return None
        if end != end_of_flags and not previous_text.startswith(_SEPARATOR, end):
            return None
        edits.append((start, end, _render_flag(key, new_flags[key]) if key in new_flags else None))
    edits.sort()
    # Every block is followed by ",\n" here, the last one too: the separator after the last
    # block is dropped at the end.
    parts = [_head(doc)]
    position = start_of_flags
    for start, end, replacement in edits:
        if start < position:
            return None  # two flags found at one place: not the layout this function knows
        if start > position:
            parts.append(previous_text[position:start])
        if replacement is None:
            position = end + len(_SEPARATOR)  # the block and the separator after it
        else:
            parts.append(replacement)
            position = end
    if position < end_of_flags:
        parts.append(previous_text[position:end_of_flags])
    if position <= end_of_flags:
        parts.append(_SEPARATOR)  # after the last block kept in place
    for key in added:
        parts.append(_render_flag(key, new_flags[key]))
        parts.append(_SEPARATOR)
    last = parts[-1]
    if len(parts) < 2 or not last.endswith(_SEPARATOR):
        return None
    parts[-1] = last[: -len(_SEPARATOR)] + _TAIL  # no separator after the last block
    return "".join(parts)
