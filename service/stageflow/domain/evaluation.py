"""Flag evaluation as OFREP carries it: the request, one flag's answer, and their rules.

The evaluation itself is flagd's (the reference evaluator is an adapter); this module holds what
is Stageflow's own: reading an OFREP request body, the answer values and their JSON, and which
targeting rules bucket by ``targetingKey`` (so that a missing key is reported rather than
silently serving the default variant).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stageflow.domain.errors import Invalid, Malformed
from stageflow.domain.inputs import check_json

__all__ = [
    "ERROR_CODES",
    "FLAG_NOT_FOUND",
    "GENERAL",
    "INVALID_CONTEXT",
    "PARSE_ERROR",
    "TARGETING_KEY_MISSING",
    "Evaluation",
    "EvaluationRequest",
    "EvaluationRequestError",
    "buckets_by_targeting_key",
    "read_request",
]

# OpenFeature error codes that OFREP answers carry.
FLAG_NOT_FOUND: Final = "FLAG_NOT_FOUND"
PARSE_ERROR: Final = "PARSE_ERROR"
TARGETING_KEY_MISSING: Final = "TARGETING_KEY_MISSING"
INVALID_CONTEXT: Final = "INVALID_CONTEXT"
GENERAL: Final = "GENERAL"
ERROR_CODES: Final = (FLAG_NOT_FOUND, PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT, GENERAL)

_BODY_HINT = 'send a JSON object like {"context": {"targetingKey": "user-123", "plan": "pro"}}'


class EvaluationRequestError(Invalid):
    """An evaluation request that cannot be answered; ``error_code`` is the OFREP error code."""

    code = "invalid_evaluation_request"

    def __init__(
        self, message: str, *, error_code: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.error_code = error_code


@dataclass(frozen=True)
class EvaluationRequest:
    """The evaluation context of one OFREP request: ``targetingKey`` and the other attributes."""

    targeting_key: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> EvaluationRequest:
        """Split an OFREP context; INVALID_CONTEXT when ``targetingKey`` is not a string."""
        targeting_key = context.get("targetingKey")
        if targeting_key is not None and not isinstance(targeting_key, str):
            raise EvaluationRequestError(
                f"context.targetingKey must be a string, not {json.dumps(targeting_key)}; "
                "send the id of the user or session as a string",
                error_code=INVALID_CONTEXT,
            )
        attributes = {name: value for name, value in context.items() if name != "targetingKey"}
        return cls(targeting_key or None, attributes)


def read_request(body: bytes) -> EvaluationRequest:
    """Read an OFREP request body ``{"context": {...}}``.

    PARSE_ERROR when the body is not JSON, INVALID_CONTEXT when it has no context object.
    Other top-level members are ignored, as later protocol versions may add some.
    """
    if not body.strip():
        raise EvaluationRequestError(
            f"the request has no body; {_BODY_HINT}", error_code=PARSE_ERROR
        )
    try:
        check_json(body)
        raw = json.loads(body)
    except Malformed as exc:
        raise EvaluationRequestError(
            f"{exc.message}; {_BODY_HINT}", error_code=PARSE_ERROR, details=exc.details
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise EvaluationRequestError(
            f"the body is not valid JSON{where}; {_BODY_HINT}", error_code=PARSE_ERROR
        ) from None
    if not isinstance(raw, dict):
        raise EvaluationRequestError(
            f"the body must be a JSON object; {_BODY_HINT}", error_code=PARSE_ERROR
        )
    if "context" not in raw:
        raise EvaluationRequestError(
            f"the body has no context; {_BODY_HINT} (an empty context is {{}})",
            error_code=INVALID_CONTEXT,
        )
    context = raw["context"]
    if not isinstance(context, dict):
        raise EvaluationRequestError(
            f"context must be a JSON object, not {json.dumps(context)}; {_BODY_HINT}",
            error_code=INVALID_CONTEXT,
        )
    return EvaluationRequest.from_context(context)


@dataclass(frozen=True)
class Evaluation:
    """One flag's answer: a value with its variant and reason, a code default, or an error.

    ``has_value`` is False when the client is to use its code default (a disabled flag, or a
    flag whose ``defaultVariant`` is null): OFREP then sends no ``value`` and an empty
    ``variant``.
    """

    key: str
    reason: str | None = None
    variant: str | None = None
    value: Any = None
    has_value: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_details: str | None = None

    @classmethod
    def failure(cls, key: str, error_code: str, details: str) -> Evaluation:
        return cls(key, error_code=error_code, error_details=details)

    @property
    def failed(self) -> bool:
        return self.error_code is not None

    def to_json(self) -> dict[str, Any]:
        """Return the OFREP ``evaluationSuccess`` or ``evaluationFailure`` object."""
        if self.error_code is not None:
            return {
                "key": self.key,
                "errorCode": self.error_code,
                "errorDetails": self.error_details or self.error_code,
            }
        out: dict[str, Any] = {"key": self.key}
        if self.has_value:
            out["value"] = self.value
        out["reason"] = self.reason
        if self.variant is not None:
            out["variant"] = self.variant
        elif not self.has_value:
            # OFREP's codeDefaultFlag (ADR-0006): no value, so the provider uses the code
            # default. An empty variant (a string, as OFREP types it) names no variant; without
            # the member the Python provider (openfeature-provider-ofrep 0.3) fails on
            # data["variant"] and reports a GENERAL error instead of the code default.
            out["variant"] = ""
        out["metadata"] = dict(self.metadata)
        return out


def buckets_by_targeting_key(targeting: Any, evaluators: Mapping[str, Any]) -> bool:
    """Tell whether the rule has a ``fractional`` that buckets by ``targetingKey``.

    flagd's shorthand ``{"fractional": [["a", 50], ["b", 50]]}`` (no bucketing expression in
    front) hashes the flag key with the targeting key; without one, flagd logs an error and
    falls back to the default variant.
    """
    seen: set[str] = set()

    def walk(node: Any) -> bool:
        if isinstance(node, list):
            return any(walk(item) for item in node)
        if not isinstance(node, dict):
            return False
        for operator, args in node.items():
            if operator == "$ref":
                if isinstance(args, str) and args in evaluators and args not in seen:
                    seen.add(args)
                    if walk(evaluators[args]):
                        return True
                continue
            shorthand = isinstance(args, list) and bool(args) and isinstance(args[0], list)
            if operator == "fractional" and shorthand:
                return True
            if walk(args):
                return True
        return False

    return walk(targeting)
