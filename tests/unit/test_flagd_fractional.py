"""`fractional` as flagd v0.16 buckets (`string`) and as openfeature-flagd-core 2 does (`cbor`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from stageflow.adapters.flagd_evaluator import FlagdEvaluator
from stageflow.adapters.flagd_targeting import go_fractional, operators, variant_name
from stageflow.domain.evaluation import EvaluationRequest

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "flagd_fractional_vectors.json").read_text()
)
ROLLOUT = {
    "state": "ENABLED",
    "variants": {"a": "A", "b": "B", "c": "C"},
    "defaultVariant": "a",
    "targeting": {"fractional": [["a", 20], ["b", 30], ["c", 50]]},
}


def _data(targeting_key: Any = None, flag_key: str = "f") -> dict[str, Any]:
    return {"$flagd": {"flagKey": flag_key, "timestamp": 0}, "targetingKey": targeting_key}


def test_string_bucketing_meets_flagds_own_vectors():
    wrong = []
    for document in VECTORS["documents"]:
        evaluator = FlagdEvaluator(json.dumps({"flags": document["flags"]}))
        for case in document["cases"]:
            got = evaluator.evaluate(case["flag"], EvaluationRequest.from_context(case["context"]))
            if (got.variant, got.value, got.reason) != (
                case["variant"],
                case["value"],
                case["reason"],
            ):
                wrong.append((case["name"], got))
    assert not wrong


def test_cbor_bucketing_is_openfeature_flagd_core_2s_and_disagrees_with_flagd():
    text = json.dumps({"flags": {"rollout": ROLLOUT}})
    cbor = FlagdEvaluator(text, fractional="cbor")
    string = FlagdEvaluator(text)
    core = FlagdCore()
    core.set_flags(text)

    differ = 0
    for index in range(2000):
        key = f"user-{index}"
        want = core.resolve_string_value("rollout", "", EvaluationContext(key))
        got = cbor.evaluate("rollout", EvaluationRequest(key))
        assert (got.variant, got.value) == (want.variant, want.value), key
        differ += string.evaluate("rollout", EvaluationRequest(key)).variant != got.variant
    # the two hashings put a large share of users into other buckets (measured: ~60 %)
    assert differ > 500


def test_go_fractional_reads_its_arguments_as_flagd_does():
    assert go_fractional(_data("u"), ["x", 1]) == "x"  # shorthand: flag key + targeting key
    assert go_fractional(_data(None), ["x", 1]) is None  # no targeting key: no bucket
    assert go_fractional(_data(""), ["x", 1]) is None
    assert go_fractional(_data(7), ["x", 1]) is None
    assert go_fractional(_data("u"), None, ["x", 1]) == "x"  # a bucketing value that is null
    assert go_fractional(_data(), "seed", ["x"]) == "x"  # a weight defaults to 1
    assert go_fractional(_data(), "seed", ["x", None]) == "x"
    assert go_fractional(_data(), "seed", ["x", 1, "ignored"]) == "x"
    assert go_fractional(_data(), "seed", [True, 1]) is True  # bool, number and null variants
    assert go_fractional(_data(), "seed", [2.0, 1]) == 2.0
    assert go_fractional(_data(), "seed", ["x", 0], ["y", -5]) is None  # weights sum to 0
    assert go_fractional(_data(), "seed", ["x", -5], ["y", 1]) == "y"  # clamped to 0
    assert go_fractional(_data(), "seed", ["x", 2.0]) == "x"  # a whole float is a weight


@pytest.mark.parametrize(
    "args",
    [
        ("seed", ["x", 1.5]),  # weights are whole numbers
        ("seed", ["x", "1"]),
        ("seed", ["x", True]),
        ("seed", ["x", 2_147_483_648]),  # past MaxInt32
        ("seed", ["x", 2_147_483_647], ["y", 1]),  # summing past MaxInt32
        ("seed", [["nested"], 1]),  # a variant that is no string, bool, number or null
        ("seed", []),
        ("seed", "x"),
        (),
    ],
)
def test_go_fractional_gives_no_bucket_where_flagd_gives_up(args: tuple[Any, ...]):
    assert go_fractional(_data("u"), *args) is None


def test_string_bucketing_hashes_the_utf8_string_with_murmur3_seed_0():
    # flagd maps the hash h of "seed" + value onto the weights as h * total >> 32
    assert go_fractional(_data(), "rachel@faas.com", ["lo", 35], ["hi", 65]) == "hi"
    assert go_fractional(_data(), "rachel@faas.com", ["lo", 36], ["hi", 64]) == "lo"


def test_operators_offer_flagds_set_and_refuse_an_unknown_bucketing():
    assert {"fractional", "sem_ver", "starts_with", "ends_with", "in"} <= set(operators())
    with pytest.raises(ValueError, match="string, cbor"):
        operators("md5")


@pytest.mark.parametrize(
    ("result", "name"),
    [
        ("red", "red"),
        (True, "true"),
        (False, "false"),
        (1, "1"),
        (1.0, "1"),
        (0.5, "0.5"),
        ('say "hi"', "say \\hi\\"),
    ],
)
def test_a_rule_result_names_a_variant_as_flagd_names_it(result: Any, name: str):
    assert variant_name(result) == name
