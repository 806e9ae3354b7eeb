"""What flagd would misread in a flag document that its JSON schema lets through.

A ``defaultVariant`` that names no variant, targeting that returns a variant that does not exist,
an evaluator that references itself, fractional weights flagd cannot bucket by, ...
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from stageflow.domain.flags.model import (
    FLAG_KEY_RE,
    KEY_RULE,
    LIFECYCLES,
    STATES,
    Flag,
    FlagDocument,
    json_text,
    listing,
    variant_problems,
)

__all__ = ["check_flag_document"]


def check_flag_document(doc: FlagDocument, *, only: Collection[str] | None = None) -> list[str]:
    """List what flagd would misread that the JSON schema lets through; [] when all is well.

    ``only`` restricts the checks to these flag keys (the ones a write changed).
    """
    problems: list[str] = []
    for key in _keys_to_check(doc, only):
        problems.extend(_flag_problems(doc.flags[key], doc.evaluators))
    return problems


def _keys_to_check(doc: FlagDocument, only: Collection[str] | None) -> Iterable[str]:
    if only is None:
        return doc.flags
    if len(only) == 1:
        return [key for key in only if key in doc.flags]  # a toggle: no walk through all flags
    wanted = set(only)
    return [key for key in doc.flags if key in wanted]  # in document order


def _flag_problems(flag: Flag, evaluators: Mapping[str, Any]) -> list[str]:
    name = f"flag {flag.key!r}"
    problems: list[str] = []
    if not FLAG_KEY_RE.fullmatch(flag.key):
        problems.append(f"{name}: the key is not valid; rename it to {KEY_RULE}")
    if flag.state not in STATES:
        problems.append(f'{name}: state {flag.state!r} is not valid; use "ENABLED" or "DISABLED"')
    problems.extend(f"{name} {problem}" for problem in variant_problems(flag.variants))
    if flag.default_variant is not None and flag.default_variant not in flag.variants:
        problems.append(
            f"{name}: defaultVariant {flag.default_variant!r} names no variant; "
            f"use one of {listing(flag.variants)} or null"
        )
    if "lifecycle" in flag.metadata and flag.metadata["lifecycle"] not in LIFECYCLES:
        problems.append(
            f"{name}: metadata.lifecycle {flag.metadata['lifecycle']!r} is not a lifecycle; "
            f"use one of {', '.join(LIFECYCLES)}"
        )
    if flag.targeting:
        _TargetingCheck(name, flag.variants, evaluators, problems).walk(
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
                f"define it or use one of {listing(self.evaluators)}",
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
                        f"of {listing(self.variants)} or add the variant",
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
                f"gives the fractional bucket {bucket!r} the weight {json_text(weight)}; "
                "weights are non-negative numbers",
            )
        elif isinstance(weight, float) and not weight.is_integer():
            # The schema flagd v0.16.1 compiles in types weights as numbers, but its evaluator
            # then buckets nobody (every user gets the default variant).
            self.report(
                via,
                f"gives the fractional bucket {bucket!r} the weight {json_text(weight)}; flagd "
                "takes whole numbers only: scale every weight of the rule (x10, x100)",
            )

    def literal_result(self, value: Any, *, via: str) -> None:
        if isinstance(value, str):
            if value not in self.variants:
                self.report(
                    via,
                    f"returns {value!r}, which is not a variant; use one of "
                    f"{listing(self.variants)} or add the variant",
                )
        elif isinstance(value, bool):
            # flagd turns a boolean result into the variant name "true"/"false".
            name = "true" if value else "false"
            if name not in self.variants:
                self.report(
                    via,
                    f"returns {name}, which flagd looks up as the variant {name!r}; there is "
                    f"none: return a variant name ({listing(self.variants)}) instead",
                )
