"""Flag evaluation: OFREP requests and answers, the flagd evaluator adapter, the rate limiter."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from stageflow.adapters.flagd_evaluator import FlagdEvaluator, trial_evaluate
from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.evaluation import (
    Evaluation,
    EvaluationRequest,
    EvaluationRequestError,
    buckets_by_targeting_key,
    read_request,
)
from stageflow.domain.flags import FlagDocument, new_flag, with_changes
from stageflow.services.evaluation import (
    BulkEvaluation,
    FlagSet,
    evaluate_flag,
    evaluate_flags,
)
from stageflow.services.limits import RateLimiter


def document(**flags: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "metadata": {"flagSetId": "demo", "version": "abc123"},
            "$evaluators": {"acme": {"ends_with": [{"var": "email"}, "@acme.com"]}},
            "flags": flags,
        }
    ).encode()


def flag(variants: dict[str, Any], default: str | None, targeting: Any = None, **extra: Any):
    out: dict[str, Any] = {"state": "ENABLED", "variants": variants, "defaultVariant": default}
    if targeting is not None:
        out["targeting"] = targeting
    return {**out, **extra}


BOOL = {"on": True, "off": False}


# -- requests -------------------------------------------------------------------------------------


def test_read_request_splits_the_targeting_key_from_the_attributes():
    request = read_request(b'{"context": {"targetingKey": "u-1", "plan": "pro"}, "future": 1}')

    assert request == EvaluationRequest("u-1", {"plan": "pro"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "PARSE_ERROR"),
        (b"  ", "PARSE_ERROR"),
        (b"{", "PARSE_ERROR"),
        (b"\xff\xfe", "PARSE_ERROR"),
        (b'"context"', "PARSE_ERROR"),
        (b"{}", "INVALID_CONTEXT"),
        (b'{"context": null}', "INVALID_CONTEXT"),
        (b'{"context": []}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": ["a"]}}', "INVALID_CONTEXT"),
    ],
)
def test_read_request_refuses_with_the_ofrep_error_code(body: bytes, code: str):
    with pytest.raises(EvaluationRequestError) as caught:
        read_request(body)

    assert caught.value.error_code == code
    assert '{"context"' in caught.value.message or "targetingKey" in caught.value.message


def test_an_empty_targeting_key_counts_as_none():
    assert read_request(b'{"context": {"targetingKey": ""}}').targeting_key is None


# -- answers --------------------------------------------------------------------------------------


def test_answer_json_follows_ofrep():
    success = Evaluation("f", "STATIC", "on", True, True, {"flagSetId": "demo"})
    code_default = Evaluation("f", "DISABLED", metadata={"flagSetId": "demo"})
    failure = Evaluation.failure("f", "FLAG_NOT_FOUND", "flag 'f' is not defined")

    assert list(success.to_json()) == ["key", "value", "reason", "variant", "metadata"]
    # OFREP's codeDefaultFlag: no value; an empty variant, which the Python provider needs
    assert code_default.to_json() == {
        "key": "f",
        "reason": "DISABLED",
        "variant": "",
        "metadata": {"flagSetId": "demo"},
    }
    assert failure.to_json() == {
        "key": "f",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "flag 'f' is not defined",
    }


def test_bulk_etag_is_the_answers_own():
    one = BulkEvaluation([Evaluation("f", "STATIC", "on", True, True)], {"version": "a"})
    same = BulkEvaluation([Evaluation("f", "STATIC", "on", True, True)], {"version": "a"})
    other = BulkEvaluation([Evaluation("f", "STATIC", "off", False, True)], {"version": "a"})

    assert one.etag == same.etag != other.etag
    assert one.etag.startswith('"') and one.etag.endswith('"')


@pytest.mark.parametrize(
    ("targeting", "expected"),
    [
        ({"fractional": [["on", 50], ["off", 50]]}, True),
        ({"fractional": [{"var": "email"}, ["on", 50], ["off", 50]]}, False),
        ({"if": [{"var": "beta"}, "on", {"fractional": [["on", 1], ["off", 1]]}]}, True),
        ({"if": [{"$ref": "rollout"}, "on", "off"]}, True),
        ({"$ref": "loop"}, False),
        ({"in": [{"var": "country"}, ["DE"]]}, False),
        (None, False),
    ],
)
def test_which_rules_bucket_by_targeting_key(targeting: Any, expected: bool):
    evaluators = {"rollout": {"fractional": [["a", 1]]}, "loop": {"$ref": "loop"}}

    assert buckets_by_targeting_key(targeting, evaluators) is expected


# -- the flagd evaluator --------------------------------------------------------------------------


def test_flagd_evaluator_answers_values_variants_and_reasons():
    evaluator = FlagdEvaluator(
        document(
            static=flag(BOOL, "on", metadata={"lifecycle": "stable"}),
            theme=flag(
                {"blue": "b", "green": "g"}, "blue", {"if": [{"$ref": "acme"}, "green", None]}
            ),
            limit=flag({"low": 1, "high": 100}, "low"),
            ratio=flag({"low": 1, "high": 2.5}, "high"),
            layout=flag({"a": {"cols": 1}, "b": {"cols": 3}}, "b"),
            disabled=flag(BOOL, "on", state="DISABLED"),
            unset=flag(BOOL, None),
        )
    )
    acme = EvaluationRequest("u", {"email": "x@acme.com"})
    other = EvaluationRequest("u", {"email": "x@example.com"})

    assert evaluator.flag_keys() == [
        "static",
        "theme",
        "limit",
        "ratio",
        "layout",
        "disabled",
        "unset",
    ]
    assert evaluator.metadata() == {"flagSetId": "demo", "version": "abc123"}
    static = evaluator.evaluate("static", other)
    assert (static.value, static.variant, static.reason) == (True, "on", "STATIC")
    # the document's version moves with every commit: it is the flag set's, not each flag's
    assert static.metadata == {"flagSetId": "demo", "lifecycle": "stable"}
    assert evaluator.evaluate("theme", acme).to_json()["value"] == "g"
    assert evaluator.evaluate("theme", acme).reason == "TARGETING_MATCH"
    assert (
        evaluator.evaluate("theme", other).variant,
        evaluator.evaluate("theme", other).reason,
    ) == (
        "blue",
        "DEFAULT",
    )
    limit = evaluator.evaluate("limit", other).value
    assert limit == 1 and type(limit) is int
    ratio = evaluator.evaluate("ratio", other).value
    assert ratio == 2.5 and type(ratio) is float
    assert evaluator.evaluate("layout", other).value == {"cols": 3}
    assert evaluator.evaluate("disabled", other).to_json() == {
        "key": "disabled",
        "reason": "DISABLED",
        "variant": "",
        "metadata": {"flagSetId": "demo"},
    }
    unset = evaluator.evaluate("unset", other)
    assert (unset.has_value, unset.variant, unset.reason) == (False, None, "DEFAULT")


def test_flagd_evaluator_reports_errors_as_ofrep_failures():
    evaluator = FlagdEvaluator(
        document(
            bad_variant=flag(BOOL, "off", {"cat": ["o", "x"]}),
            bad_rule=flag(BOOL, "off", {"no_such_operator": [1]}),
        )
    )
    request = EvaluationRequest("u")

    assert evaluator.evaluate("missing", request).error_code == "FLAG_NOT_FOUND"
    wrong = evaluator.evaluate("bad_variant", request)
    assert (wrong.error_code, "ox" in (wrong.error_details or "")) == ("GENERAL", True)
    assert evaluator.evaluate("bad_rule", request).error_code == "PARSE_ERROR"


def test_flagd_evaluator_serves_a_hand_written_flag_with_mixed_variant_types():
    evaluator = FlagdEvaluator(
        document(
            mixed=flag({"yes": True, "word": "w"}, "yes", {"if": [{"var": "w"}, "word", None]})
        )
    )

    assert evaluator.evaluate("mixed", EvaluationRequest("u")).value is True
    assert evaluator.evaluate("mixed", EvaluationRequest("u", {"w": 1})).value == "w"


@pytest.mark.parametrize(
    "text",
    [b"{", b"[]", b'{"flags": []}', json.dumps({"flags": {"f": {"state": "ON"}}}).encode()],
)
def test_flagd_evaluator_refuses_what_flagd_cannot_load(text: bytes):
    with pytest.raises(FlagDocumentError) as caught:
        FlagdEvaluator(text)

    assert "cannot be read by flagd" in caught.value.message


# -- trial evaluation of targeting ----------------------------------------------------------------


def _doc(targeting: Any, *, enabled: bool = True) -> FlagDocument:
    base = with_changes(new_flag("checkout"), targeting=targeting)
    if not enabled:
        base = with_changes(base, state="DISABLED")
    return FlagDocument({"checkout": base}, metadata={"flagSetId": "demo"})


def test_trial_evaluation_accepts_rules_that_answer_variants():
    trial_evaluate(_doc({"fractional": [["on", 10], ["off", 90]]}), "checkout")
    trial_evaluate(_doc({"if": [{"==": [{"var": "plan"}, "pro"]}, "on", None]}), "checkout")


@pytest.mark.parametrize(
    ("targeting", "words"),
    [
        ({"cat": ["o", "x"]}, "ox"),
        ({"var": "targetingKey"}, "stageflow-trial-user"),
        ({"no_such_operator": [1]}, "PARSE_ERROR"),
    ],
)
def test_trial_evaluation_names_the_flag_and_what_flagd_answered(targeting: Any, words: str):
    with pytest.raises(FlagDocumentError) as caught:
        trial_evaluate(_doc(targeting), "checkout")

    error = caught.value
    assert error.code == "invalid_targeting"
    assert "'checkout'" in error.message and words in error.message
    assert error.details["flag"] == "checkout"
    assert error.details["problems"]


def test_trial_evaluation_tries_the_rules_of_a_disabled_flag_too():
    with pytest.raises(FlagDocumentError):
        trial_evaluate(_doc({"cat": ["o", "x"]}, enabled=False), "checkout")


# -- rate limit -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_bursts_then_asks_to_wait_whole_seconds():
    clock = FakeClock()
    limiter = RateLimiter(2, clock)

    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 1]
    assert limiter.acquire("b") == 0  # one bucket per token
    clock.now += 0.5
    assert limiter.acquire("a") == 0  # half a second refills one request at 2/s
    assert limiter.acquire("a") == 1


def test_slow_rate_limits_ask_for_longer_waits():
    clock = FakeClock()
    limiter = RateLimiter(0.1, clock)  # one request every ten seconds

    assert [limiter.acquire("a"), limiter.acquire("a")] == [0, 10]
    clock.now += 10
    assert limiter.acquire("a") == 0


def test_rate_limiter_off_allows_everything():
    limiter = RateLimiter(0, FakeClock())

    assert all(limiter.acquire("a") == 0 for _ in range(1000))


def test_bulk_answer_is_serialized_once_and_its_etag_hashes_those_bytes():
    answer = BulkEvaluation([Evaluation("f", "STATIC", "on", True, True)], {"version": "a"})

    assert json.loads(answer.body) == answer.to_json()
    assert answer.body is answer.body  # built once
    assert answer.etag == '"' + hashlib.sha256(answer.body).hexdigest()[:32] + '"'


def _bulk_by_evaluating_every_flag(flags: FlagSet, request: EvaluationRequest) -> BulkEvaluation:
    keys = flags.evaluator.flag_keys()
    return BulkEvaluation(
        [evaluate_flag(flags, key, request) for key in keys], flags.evaluator.metadata()
    )


def test_bulk_evaluation_evaluates_only_targeted_flags_per_request_and_answers_the_same():
    evaluator = FlagdEvaluator(
        document(
            static=flag(BOOL, "on"),
            empty_rules=flag(BOOL, "off", {}),
            disabled=flag(BOOL, "on", {"if": [{"$ref": "acme"}, "off", None]}, state="DISABLED"),
            theme=flag(
                {"blue": "b", "green": "g"}, "blue", {"if": [{"$ref": "acme"}, "green", None]}
            ),
            rollout=flag(BOOL, "off", {"fractional": [["on", 50], ["off", 50]]}),
        )
    )
    flags = FlagSet("demo", "development", "abc123", "apps/demo/flags.json", evaluator)

    assert set(flags.static_answers) == {"static", "empty_rules", "disabled"}
    assert flags.static_bulk is None  # two flags read the context
    for request in (
        EvaluationRequest(),
        EvaluationRequest("u-1", {"email": "x@acme.com"}),
        EvaluationRequest("u-2", {"email": "x@example.com"}),
    ):
        answer = evaluate_flags(flags, request)
        expected = _bulk_by_evaluating_every_flag(flags, request)
        assert answer.body == expected.body and answer.etag == expected.etag
    acme = evaluate_flags(flags, EvaluationRequest("u-1", {"email": "x@acme.com"}))
    assert [a.variant for a in acme.flags if a.key == "theme"] == ["green"]
    missing_key = evaluate_flags(flags, EvaluationRequest())
    assert [a.error_code for a in missing_key.flags if a.key == "rollout"] == [
        "TARGETING_KEY_MISSING"
    ]


def test_bulk_evaluation_of_static_flags_is_one_answer_for_every_context():
    evaluator = FlagdEvaluator(
        document(a=flag(BOOL, "on"), b=flag(BOOL, "off", state="DISABLED"), c=flag(BOOL, None))
    )
    flags = FlagSet("demo", "development", "abc123", "apps/demo/flags.json", evaluator)

    first = evaluate_flags(flags, EvaluationRequest("u-1", {"plan": "pro"}))
    second = evaluate_flags(flags, EvaluationRequest())

    assert first is second  # made once for the flag set
    assert first.body == _bulk_by_evaluating_every_flag(flags, EvaluationRequest("x")).body
    assert [(a.key, a.reason) for a in first.flags] == [
        ("a", "STATIC"),
        ("b", "DISABLED"),
        ("c", "DEFAULT"),  # a null defaultVariant: the client's code default
    ]
