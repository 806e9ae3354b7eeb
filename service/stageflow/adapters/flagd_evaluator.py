"""The reference flagd evaluator (``openfeature-flagd-core``), behind the ``FlagEvaluator`` port.

``openfeature-flagd-core`` is the evaluator that flagd's Python in-process provider runs: the same
JSONLogic, the same ``fractional`` (murmur3 of the CBOR-encoded flag key and targeting key),
``sem_ver``, ``starts_with``/``ends_with`` and ``$evaluators``. Evaluating the committed file
with it is what makes an OFREP answer from Stageflow equal the answer a flagd sidecar gives for
the same ConfigMap.

Its resolvers are typed (``resolve_boolean_value`` ...) and check that the resolved value has that
type. OFREP is untyped, so each flag is resolved with the type of its variants; a hand-written
flag whose variants mix types is tried type by type until one fits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode, OpenFeatureError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails

from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.evaluation import (
    ERROR_CODES,
    GENERAL,
    Evaluation,
    EvaluationRequest,
    buckets_by_targeting_key,
)
from stageflow.domain.flags import FlagDocument, render_flag_document

__all__ = ["TRIAL_CONTEXTS", "FlagdEvaluator", "trial_evaluate"]

# What a targeting change is tried with before it is committed: no context at all, a user, and a
# user with a few common attributes.
TRIAL_CONTEXTS: Final[tuple[dict[str, Any], ...]] = (
    {},
    {"targetingKey": "stageflow-trial-user"},
    {"targetingKey": "stageflow-trial-user-2", "email": "trial@example.com", "country": "US"},
)

_Resolver = Callable[[FlagdCore, str, EvaluationContext], FlagResolutionDetails[Any]]
# Defaults only matter for code-default answers, which carry no value; they keep the types right.
_RESOLVERS: Final[dict[str, _Resolver]] = {
    "boolean": lambda core, key, ctx: core.resolve_boolean_value(key, False, ctx),
    "string": lambda core, key, ctx: core.resolve_string_value(key, "", ctx),
    "integer": lambda core, key, ctx: core.resolve_integer_value(key, 0, ctx),
    "float": lambda core, key, ctx: core.resolve_float_value(key, 0.0, ctx),
    "object": lambda core, key, ctx: core.resolve_object_value(key, {}, ctx),
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "object"


def _resolver_order(variants: Any) -> list[str]:
    kinds = {_kind(v) for v in variants.values()} if isinstance(variants, dict) else set()
    if kinds == {"integer", "float"}:
        kinds = {"float"}
    first = [next(iter(kinds))] if len(kinds) == 1 else []
    return first + [kind for kind in _RESOLVERS if kind not in first]


def _reason(details: FlagResolutionDetails[Any]) -> str:
    reason = details.reason
    return str(reason.value if hasattr(reason, "value") else reason or "UNKNOWN")


class FlagdEvaluator:
    """One flagd document (the bytes as committed), loaded into ``FlagdCore``."""

    def __init__(self, text: bytes | str, *, source: str = "the flag document") -> None:
        try:
            decoded = text.decode("utf-8-sig") if isinstance(text, bytes) else text
            raw = json.loads(decoded)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FlagDocumentError(
                f"{source} cannot be read by flagd: it is not valid JSON ({exc})",
                code="flagd_parse_error",
            ) from None
        flags = raw.get("flags") if isinstance(raw, dict) else None
        if not isinstance(flags, dict):
            raise FlagDocumentError(
                f'{source} cannot be read by flagd: it needs a "flags" object',
                code="flagd_parse_error",
            )
        self._core = FlagdCore()
        try:
            self._core.set_flags(decoded)
        except Exception as exc:  # flagd-core raises ParseError, and lets others through
            raise FlagDocumentError(
                f"{source} cannot be read by flagd: {exc or type(exc).__name__}",
                code="flagd_parse_error",
            ) from None
        evaluators = raw.get("$evaluators")
        self._evaluators: Mapping[str, Any] = evaluators if isinstance(evaluators, dict) else {}
        self._order = {
            key: _resolver_order(flag.get("variants") if isinstance(flag, dict) else None)
            for key, flag in flags.items()
        }
        self._targeting = {
            key: flag.get("targeting") if isinstance(flag, dict) else None
            for key, flag in flags.items()
        }
        # flagd answers these without reading the context: DISABLED, or STATIC (no targeting)
        self._static = frozenset(
            key
            for key, flag in flags.items()
            if isinstance(flag, dict)
            and (flag.get("state") == "DISABLED" or not flag.get("targeting"))
        )

    def flag_keys(self) -> Sequence[str]:
        """Return the flag keys in file order."""
        return list(self._order)

    def metadata(self) -> Mapping[str, Any]:
        """Return the flag-set metadata (``flagSetId``, ``version``)."""
        return self._core.get_flag_set_metadata()

    def needs_targeting_key(self, key: str) -> bool:
        """Tell whether the flag's targeting buckets by ``targetingKey``."""
        return buckets_by_targeting_key(self._targeting.get(key), self._evaluators)

    def is_static(self, key: str) -> bool:
        """Tell whether no context can change the flag's answer (flagd's DISABLED or STATIC)."""
        return key in self._static

    def evaluate(self, key: str, request: EvaluationRequest) -> Evaluation:
        """Evaluate one flag as flagd does; errors come back as a failed Evaluation."""
        context = EvaluationContext(request.targeting_key, dict(request.attributes))
        details: FlagResolutionDetails[Any] | None = None
        for kind in self._order.get(key) or list(_RESOLVERS):
            try:
                details = _RESOLVERS[kind](self._core, key, context)
            except TypeMismatchError:
                continue
            except OpenFeatureError as exc:
                code = exc.error_code.value if isinstance(exc.error_code, ErrorCode) else GENERAL
                return Evaluation.failure(
                    key,
                    code if code in ERROR_CODES else GENERAL,
                    exc.error_message or code,
                )
            except Exception as exc:  # JSONLogic of a hand-written file can fail in any way
                return Evaluation.failure(
                    key, GENERAL, f"flagd's evaluator failed on the targeting of {key}: {exc!r}"
                )
            break
        if details is None:
            return Evaluation.failure(
                key, GENERAL, f"flag {key} resolved to a value of no type that flagd serves"
            )
        metadata = dict(details.flag_metadata)
        if details.variant is None:
            # DISABLED, or a null defaultVariant: the client uses its code default.
            return Evaluation(key, reason=_reason(details), metadata=metadata)
        return Evaluation(
            key,
            reason=_reason(details),
            variant=details.variant,
            value=details.value,
            has_value=True,
            metadata=metadata,
        )


def trial_evaluate(doc: FlagDocument, key: str) -> None:
    """Evaluate one flag's targeting with ``TRIAL_CONTEXTS``; FlagDocumentError when it fails.

    The flag is tried as ENABLED whatever its state: a disabled flag's rules are not evaluated by
    flagd, but they will be the moment someone switches it on.
    """
    flag = doc.flags[key]
    trial = FlagDocument(
        {key: replace(flag, state="ENABLED")},
        metadata=doc.metadata,
        evaluators=doc.evaluators,
        schema=doc.schema,
    )
    evaluator = FlagdEvaluator(render_flag_document(trial), source=f"flag {key!r}")
    problems: list[str] = []
    for context in TRIAL_CONTEXTS:
        answer = evaluator.evaluate(key, EvaluationRequest.from_context(context))
        if answer.failed:
            problems.append(
                f"with the context {json.dumps(context)} flagd answers "
                f"{answer.error_code}: {answer.error_details}"
            )
    if problems:
        variants = ", ".join(repr(name) for name in flag.variants)
        more = f" (and {len(problems) - 1} more; see details.problems)" if len(problems) > 1 else ""
        raise FlagDocumentError(
            f"flag {key!r}: the new targeting fails in flagd's evaluator — {problems[0]}{more}; "
            f"make every result of the rule one of the variants ({variants}) or null",
            code="invalid_targeting",
            details={"flag": key, "problems": problems},
        )
