"""Feature flags as typed values: a flagd flag, a stage's flag document, and their changes.

A stage's flags live in one flagd document (``https://flagd.dev/schema/v0/flags.json``) so that a
flagd sidecar or any OpenFeature flagd provider reads the generated ConfigMap unchanged. Here are
the frozen values such a document parses into, and the changes made to a flag without touching
anything else; ``parse``, ``check`` and ``layout`` read, judge and write them.

Values built here are treated as immutable: the mappings inside a ``Flag`` are plain dicts (so that
parsing and rendering thousands of flags stays cheap) and must not be mutated after construction.
"""

from __future__ import annotations

import enum
import json
import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from stageflow.domain.errors import Invalid, NotFound

# The lifecycles a flag goes through, in order; a stage's ``flags.allow`` names the ones it lets
# be ON. Defined here only: the pipeline, the API schemas and the CLI read them from this tuple.
LIFECYCLES: Final = ("experimental", "beta", "stable")
# A flag without a lifecycle (hand-written) is read as the first, strictest one.
DEFAULT_LIFECYCLE: Final = LIFECYCLES[0]
ENABLED: Final = "ENABLED"
DISABLED: Final = "DISABLED"
STATES: Final = (ENABLED, DISABLED)
FLAG_KEY_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
FLAGD_SCHEMA_URL: Final = "https://flagd.dev/schema/v0/flags.json"

FlagKind = Literal["boolean", "string", "number", "object"]

KEY_RULE: Final = "a letter, then up to 127 letters, digits, '_', '.' or '-'"
MAX_LISTED: Final = 20


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


def kind_of(value: Any) -> FlagKind | None:
    """Return the flagd type of a variant value, None for a value flagd cannot serve."""
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


def listing(names: Iterable[str], limit: int = MAX_LISTED) -> str:
    """Quote names for an error message, the first ``limit`` of them (a document may hold 5,000)."""
    names = list(names)
    shown = ", ".join(repr(name) for name in names[:limit])
    if len(names) > limit:
        shown += f" (and {len(names) - limit} more)"
    return shown or "(none)"


def json_text(value: Any) -> str:
    """Show a value in a message as it is written in the file (JSON, not Python's repr)."""
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
    def policy_lifecycle(self) -> str:
        """Return the lifecycle a stage's ``flags.allow`` judges the flag by.

        A hand-written flag without a lifecycle counts as the strictest one, so that a missing
        label never lets a flag slip ON into production.
        """
        return self.lifecycle or DEFAULT_LIFECYCLE

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
            kind = kind_of(value)
            if kind is not None:
                return kind
        return "object"

    @property
    def enabled(self) -> bool:
        """Tell whether the flag can serve a non-off value."""
        if self.state != ENABLED:
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


def variant_problems(variants: Mapping[str, Any]) -> list[str]:
    """List what is wrong with a flag's variants: shared by ``new_flag`` and the document check."""
    if not variants:
        return ['has no variants; add at least one (a boolean flag has "on": true, "off": false)']
    problems: list[str] = []
    names_by_kind: dict[str, list[str]] = {}
    for name, value in variants.items():
        if not isinstance(name, str) or not name:
            problems.append("has a variant with an empty name; give every variant a name")
            continue
        kind = kind_of(value)
        if kind is None:
            problems.append(
                f"variant {name!r} has the value {json_text(value)}, which flagd cannot serve; "
                "use a boolean, a string, a number or an object"
            )
            continue
        names_by_kind.setdefault(kind, []).append(name)
    if len(names_by_kind) > 1:
        mix = "; ".join(f"{kind}: {listing(names, 5)}" for kind, names in names_by_kind.items())
        problems.append(
            f"has variants of different types ({mix}); give every variant the same type "
            "(boolean, string, number or object)"
        )
    return problems


def _require_key(key: str) -> None:
    if not isinstance(key, str) or not FLAG_KEY_RE.fullmatch(key):
        raise Invalid(
            f"flag key {key!r} is not valid: use {KEY_RULE}",
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
            f"use one of {listing(variants)} or null",
            details={"key": flag_key, "defaultVariant": name, "variants": list(variants)},
        )


def new_flag(
    key: str,
    *,
    description: str | None = None,
    lifecycle: str = DEFAULT_LIFECYCLE,
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
    state = ENABLED
    default: str | None
    if variants is None:
        chosen: dict[str, Any] = {"on": True, "off": False}
        default = "off" if default_variant is None else default_variant
    else:
        if not isinstance(variants, Mapping):
            raise Invalid(f"flag {key!r}: variants must be an object", details={"key": key})
        chosen = dict(variants)
        problems = variant_problems(chosen)
        if problems:
            raise Invalid(f"flag {key!r} {problems[0]}", details={"key": key, "problems": problems})
        flag = Flag(key, state, chosen, None)
        if not flag.is_boolean:
            state = DISABLED
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
            f"flag {flag.key!r} has no variant with the value {json_text(value)}; "
            f'add one (e.g. "{conventional}": {json_text(value)}) to switch it '
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
        return replace(flag, state=ENABLED if enabled else DISABLED)
    variant = _boolean_variant(flag, enabled)
    state = DISABLED if not enabled and flag.targeting else ENABLED
    return replace(flag, state=state, default_variant=variant)


def state_word(flag: Flag | None, *, spell_state: bool = False) -> str:
    """Say where a flag stands in a word or two, as commit messages and promotion plans show it.

    A boolean flag is ``on`` or ``off``; another flag is its default variant, followed by
    ``(disabled)`` when it is not ENABLED, or by its state in any case with ``spell_state``
    (the subject of a flag's own commit says both sides of a state change); a flag that is not
    there is ``absent``.
    """
    if flag is None:
        return "absent"
    if flag.is_boolean:
        return "on" if flag.enabled else "off"
    if spell_state:
        return f"{flag.variant} ({flag.state.lower()})"
    return f"{flag.variant}" + ("" if flag.state == ENABLED else " (disabled)")


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
                f"flag {key!r} does not exist here; known flags: {listing(known)}",
                details={"key": key, "known": known[:MAX_LISTED]},
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
