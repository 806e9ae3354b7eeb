"""flagd's targeting operators, with the ``fractional`` bucketing of the flagd that users deploy.

Two bucketings of ``fractional`` exist in 2026, and they put the same user in different buckets:

- ``string``: the flagd daemon (Go, v0.16.1 and ``main``), ``@openfeature/flagd-core`` 4.x and the
  Python in-process evaluator 1.x. The bucketing value is a string (the first argument when it is
  one, else the flag key followed by the ``targetingKey``), hashed with murmur3 (x86, 32 bit,
  seed 0) over its UTF-8 bytes.
- ``cbor``: ``openfeature-flagd-core`` 2.x, after a flagd ADR accepted in 2025 that no flagd
  release implements yet: murmur3 of the canonical CBOR encoding of the bucketing value (the
  shorthand hashes the array ``[flagKey, targetingKey]``).

Both map the 32-bit hash onto the summed weights the same way: ``bucket = hash * total >> 32``,
then the first variant whose running sum of weights exceeds the bucket.

``go_fractional`` is ``string`` written from flagd's ``core/pkg/evaluator/fractional.go`` at
v0.16.1, rule for rule (which first argument is a bucketing value, nil arguments, weights that
default to 1, clamp below 0, must be whole and may not sum past MaxInt32), so that an OFREP answer
from Stageflow equals the answer of the flagd sidecar that reads the same committed file.
``tests/data/flagd_fractional_vectors.json`` holds flagd's own test vectors for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import mmh3
from json_logic import builtins
from openfeature.contrib.tools.flagd.core.targeting import custom_ops

__all__ = [
    "DEFAULT_FRACTIONAL",
    "FRACTIONAL_MODES",
    "go_fractional",
    "operators",
    "variant_name",
]

log = logging.getLogger(__name__)

# The bucketing of the flagd release the starter deploys (overlays/apps/demo/base/deployment.yaml).
DEFAULT_FRACTIONAL: Final = "string"
FRACTIONAL_MODES: Final = ("string", "cbor")

_MAX_WEIGHT_SUM: Final = 2_147_483_647  # flagd's math.MaxInt32


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _distributions(values: list[Any], key: str) -> list[tuple[Any, int]] | None:
    """Return (variant, weight) pairs as flagd parses them, or None where flagd gives up."""
    parsed: list[tuple[Any, int]] = []
    total = 0
    for item in values:
        if not isinstance(item, list) or not item:
            log.debug("flag %r: a fractional distribution is not a non-empty array", key)
            return None
        variant = item[0]
        if not (variant is None or isinstance(variant, str | bool) or _number(variant)):
            log.debug("flag %r: a fractional variant is not a string, bool, number or null", key)
            return None
        weight = 1
        if len(item) >= 2 and item[1] is not None:
            raw = item[1]
            if not _number(raw):
                log.debug("flag %r: a fractional weight is not a number", key)
                return None
            if isinstance(raw, float) and not raw.is_integer():
                log.debug("flag %r: a fractional weight is not a whole number", key)
                return None
            weight = int(raw)
            if weight > _MAX_WEIGHT_SUM:
                return None
            weight = max(weight, 0)  # a rollout computed below 0 is 0, not an error
        total += weight
        parsed.append((variant, weight))
    if total > _MAX_WEIGHT_SUM:
        log.debug("flag %r: the fractional weights sum past %d", key, _MAX_WEIGHT_SUM)
        return None
    return parsed


def go_fractional(data: Any, *args: Any) -> Any:
    """Bucket as flagd (Go) v0.16 does: murmur3 of the bucketing string; None for no bucket."""
    values = list(args)
    if not values or not isinstance(data, dict):
        return None
    flagd = data.get("$flagd")
    flag_key = flagd.get("flagKey", "") if isinstance(flagd, dict) else ""
    flag_key = flag_key if isinstance(flag_key, str) else ""
    first = values[0]
    if isinstance(first, str):
        bucket_by = first
        values = values[1:]
    else:
        if first is None:  # a bucketing expression that found nothing: use the targeting key
            values = values[1:]
        targeting_key = data.get("targetingKey")
        if not isinstance(targeting_key, str) or not targeting_key:
            return None
        bucket_by = flag_key + targeting_key
    distributions = _distributions(values, flag_key)
    if not distributions:
        return None
    total = sum(weight for _, weight in distributions)
    if total == 0:
        return None
    bucket = (mmh3.hash(bucket_by.encode("utf-8"), 0, signed=False) * total) >> 32
    end = 0
    for variant, weight in distributions:
        end += weight
        if bucket < end:
            return variant
    return None


_Operator = Callable[..., Any]


def operators(fractional: str = DEFAULT_FRACTIONAL) -> Mapping[str, _Operator]:
    """Return the JSONLogic operators flagd adds, with the named ``fractional`` bucketing."""
    if fractional not in FRACTIONAL_MODES:
        raise ValueError(f"fractional must be one of {', '.join(FRACTIONAL_MODES)}")
    return {
        **builtins.BUILTINS,
        "fractional": go_fractional if fractional == "string" else custom_ops.fractional,
        "starts_with": custom_ops.starts_with,
        "ends_with": custom_ops.ends_with,
        "sem_ver": custom_ops.sem_ver,
    }


def variant_name(result: Any) -> str:
    """Name the variant a rule returned, as flagd does: its JSON text without quotes.

    flagd serializes the JSONLogic result and strips every double quote, so ``true`` names the
    variant ``"true"`` and ``1.0`` (a float64 in Go) the variant ``"1"``.
    """
    if isinstance(result, str):
        return json.dumps(result, ensure_ascii=False).replace('"', "")
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e21:
        return str(int(result))
    return json.dumps(result, ensure_ascii=False, separators=(",", ":")).replace('"', "")
