"""flagd's evaluation of a committed flags file, behind the ``FlagEvaluator`` port.

The answers are those of the flagd release the starter deploys (``ghcr.io/open-feature/flagd``
v0.16.1, see ``overlays/apps/demo/base/deployment.yaml``) for the same file: its JSONLogic, its
``fractional`` bucketing (``flagd_targeting``: murmur3 of the bucketing string, or CBOR with
``STAGEFLOW_FLAGD_FRACTIONAL=cbor``), ``sem_ver``, ``starts_with``/``ends_with``, shared
``$evaluators``, and its rules for turning a rule's result into a variant.

The file is parsed by ``openfeature-flagd-core`` (its flag model and ``$evaluators``
substitution) and the rules run on ``panzi-json-logic`` with flagd's operators. The resolution
itself is written here rather than taken from ``FlagdCore``: that one always buckets with CBOR,
and its typed resolvers answer a question OFREP does not ask (OFREP is untyped; the value is the
variant's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from json_logic import jsonLogic
from openfeature.contrib.tools.flagd.core.model.flag import Flag
from openfeature.contrib.tools.flagd.core.model.flag_store import FlagStore

from stageflow.adapters.flagd_targeting import DEFAULT_FRACTIONAL, operators, variant_name
from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.evaluation import (
    FLAG_NOT_FOUND,
    GENERAL,
    PARSE_ERROR,
    Evaluation,
    EvaluationRequest,
    buckets_by_targeting_key,
)
from stageflow.domain.flags import DISABLED, ENABLED, FlagDocument, render_flag_document

__all__ = ["TRIAL_CONTEXTS", "FlagdEvaluator", "trial_evaluate"]

# What a targeting change is tried with before it is committed: no context at all, a user, and a
# user with a few common attributes.
TRIAL_CONTEXTS: Final[tuple[dict[str, Any], ...]] = (
    {},
    {"targetingKey": "stageflow-trial-user"},
    {"targetingKey": "stageflow-trial-user-2", "email": "trial@example.com", "country": "US"},
)

# Flag-set metadata that a flag's own answer carries. The document's ``version`` moves with every
# commit; in each flag's metadata it would make every flag look changed to a client that compares
# answers (the OFREP web provider emits a change event per differing answer) after any toggle.
# It stays in the flag-set metadata of the bulk answer.
_FLAG_SET_KEYS_PER_FLAG: Final = ("flagSetId",)


def _numbers_as_floats(variants: Mapping[str, Any]) -> bool:
    """Tell whether a flag mixes ints and floats: a float flag (1 means 1.0 there)."""
    kinds = {
        type(value)
        for value in variants.values()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return kinds == {int, float} and all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for value in variants.values()
    )


class FlagdEvaluator:
    """One flagd document (the bytes as committed), ready to evaluate as flagd does."""

    def __init__(
        self,
        text: bytes | str,
        *,
        source: str = "the flag document",
        fractional: str = DEFAULT_FRACTIONAL,
    ) -> None:
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
        self._operators = operators(fractional)
        self._store = FlagStore()
        try:
            self._store.update(json.loads(decoded))  # it edits what it is given: a fresh copy
        except Exception as exc:  # flagd-core raises ParseError, and lets others through
            raise FlagDocumentError(
                f"{source} cannot be read by flagd: {exc or type(exc).__name__}",
                code="flagd_parse_error",
            ) from None
        flag_set = dict(self._store.flag_set_metadata)
        per_flag = {k: flag_set[k] for k in _FLAG_SET_KEYS_PER_FLAG if k in flag_set}
        self._flag_set_metadata: Mapping[str, Any] = flag_set
        self._metadata: dict[str, Mapping[str, Any]] = {
            key: {**per_flag, **(flag.metadata or {})} for key, flag in self._store.flags.items()
        }
        self._floats = frozenset(
            key for key, flag in self._store.flags.items() if _numbers_as_floats(flag.variants)
        )
        evaluators = raw.get("$evaluators")
        self._evaluators: Mapping[str, Any] = evaluators if isinstance(evaluators, dict) else {}
        self._keys = list(flags)
        self._targeting = {
            key: flag.get("targeting") if isinstance(flag, dict) else None
            for key, flag in flags.items()
        }
        # flagd answers these without reading the context: DISABLED, or STATIC (no targeting)
        self._static = frozenset(
            key
            for key, flag in self._store.flags.items()
            if flag.state == DISABLED or not flag.targeting
        )

    def flag_keys(self) -> Sequence[str]:
        """Return the flag keys in file order."""
        return self._keys

    def metadata(self) -> Mapping[str, Any]:
        """Return the flag-set metadata (``flagSetId``, ``version``)."""
        return self._flag_set_metadata

    def needs_targeting_key(self, key: str) -> bool:
        """Tell whether the flag's targeting buckets by ``targetingKey``."""
        return buckets_by_targeting_key(self._targeting.get(key), self._evaluators)

    def is_static(self, key: str) -> bool:
        """Tell whether no context can change the flag's answer (flagd's DISABLED or STATIC)."""
        return key in self._static

    def evaluate(self, key: str, request: EvaluationRequest) -> Evaluation:
        """Evaluate one flag as flagd does; errors come back as a failed Evaluation."""
        flag = self._store.get_flag(key)
        if flag is None:
            return Evaluation.failure(key, FLAG_NOT_FOUND, f"flag {key} is not in the document")
        metadata = self._metadata[key]
        if flag.state == DISABLED:
            # the client uses its code default
            return Evaluation(key, reason="DISABLED", metadata=metadata)
        if not flag.targeting:
            return self._default(flag, "STATIC", metadata)
        data: dict[str, Any] = dict(request.attributes)
        data["$flagd"] = {"flagKey": key, "timestamp": int(time.time())}
        data["targetingKey"] = request.targeting_key
        try:
            result = jsonLogic(flag.targeting, data, self._operators)
        except ReferenceError as exc:  # an operator flagd does not know: its PARSE_ERROR
            return Evaluation.failure(
                key, PARSE_ERROR, f"the targeting of {key} cannot be evaluated by flagd: {exc}"
            )
        except Exception as exc:  # JSONLogic of a hand-written file can fail in any way
            return Evaluation.failure(
                key, GENERAL, f"flagd's evaluator failed on the targeting of {key}: {exc!r}"
            )
        if result is None:
            return self._default(flag, "DEFAULT", metadata)
        name = variant_name(result)
        if name not in flag.variants:
            return Evaluation.failure(
                key,
                GENERAL,
                f"the targeting of {key} returned {name!r}, which is not one of its variants",
            )
        return self._answer(flag, name, "TARGETING_MATCH", metadata)

    def _default(self, flag: Flag, reason: str, metadata: Mapping[str, Any]) -> Evaluation:
        variant = flag.default_variant
        if isinstance(variant, bool):
            variant = str(variant).lower()
        if not variant:
            # a null defaultVariant: flagd's FALLBACK, which its OFREP answers as DEFAULT
            # without a value, so the client uses its code default
            return Evaluation(flag.key, reason="DEFAULT", metadata=metadata)
        if variant not in flag.variants:
            return Evaluation.failure(
                flag.key, GENERAL, f"defaultVariant {variant!r} of {flag.key} is not a variant"
            )
        return self._answer(flag, variant, reason, metadata)

    def _answer(
        self, flag: Flag, variant: str, reason: str, metadata: Mapping[str, Any]
    ) -> Evaluation:
        value = flag.variants[variant]
        if flag.key in self._floats and isinstance(value, int):
            value = float(value)
        return Evaluation(
            flag.key,
            reason=reason,
            variant=variant,
            value=value,
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
        {key: replace(flag, state=ENABLED)},
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
