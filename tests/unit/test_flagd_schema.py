"""The vendored flagd JSON schema, checked offline with jsonschema."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from stageflow.adapters.flagd_schema import FlagdSchema, validate_flag_document
from stageflow.domain.errors import FlagDocumentError
from stageflow.domain.flags import (
    Flag,
    FlagDocument,
    new_flag,
    parse_flag_document,
    render_flag_document,
    set_enabled,
    with_changes,
)

DATA = Path(__file__).parent / "data"

# flagd's own example carries two rules that its schema rejects on purpose: they guard a "fail"
# result behind a condition that can never be evaluated cleanly.
UPSTREAM_INVALID = {"starts-ends-flag", "equal-greater-lesser-version-flag"}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"flagd-example-{name}.json").read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
def flagd_schema() -> FlagdSchema:
    return FlagdSchema()


def test_the_schema_loads_and_validates_without_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the flagd schema must not be fetched over the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    schema = FlagdSchema()
    assert schema.problems(example("full"))  # walks flags.json -> targeting.json
    assert schema.problems(example("minimal")) == []


def test_the_minimal_example_is_valid(flagd_schema: FlagdSchema) -> None:
    assert flagd_schema.problems(example("minimal")) == []


def test_the_full_example_is_valid_but_for_its_deliberately_broken_rules(
    flagd_schema: FlagdSchema,
) -> None:
    full = example("full")
    assert flagd_schema.problems(full) == [
        "flags.equal-greater-lesser-version-flag.targeting.if[2].if[2].if[2].if[0].sem_ver[2]: "
        "'2.0.0.0' does not match "
        + repr(
            "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)"
            "(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)"
            "(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
            "(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$"
        ),
        "flags.starts-ends-flag.targeting.if[2].if[2].if[0].ends_with[1]: 3 is not of type "
        "'string'",
    ]
    for key in UPSTREAM_INVALID:
        del full["flags"][key]
    assert flagd_schema.problems(full) == []


def test_a_rendered_stageflow_document_is_valid(flagd_schema: FlagdSchema) -> None:
    doc = FlagDocument({}, {"flagSetId": "demo", "version": "seed"}, {"beta": {"var": "beta"}})
    doc = doc.put(set_enabled(new_flag("new_ui", description="The redesigned UI"), True))
    doc = doc.put(new_flag("theme", variants={"light": "#fff", "dark": "#000"}))
    doc = doc.put(
        with_changes(
            new_flag("checkout"),
            targeting={"if": [{"$ref": "beta"}, "on", {"fractional": [["on", 10], ["off", 90]]}]},
        )
    )
    rendered = json.loads(render_flag_document(doc))
    assert flagd_schema.problems(rendered) == []
    validate_flag_document(doc, flagd_schema)


def test_a_bad_state_is_reported_with_its_path(flagd_schema: FlagdSchema) -> None:
    document = example("minimal")
    document["flags"]["myFlag"]["state"] = "ON"
    assert flagd_schema.problems(document) == [
        "flags.myFlag.state: 'ON' is not one of ['ENABLED', 'DISABLED']"
    ]


def test_missing_variants_are_reported_with_their_path(flagd_schema: FlagdSchema) -> None:
    document = example("minimal")
    del document["flags"]["myFlag"]["variants"]
    assert flagd_schema.problems(document) == [
        "flags.myFlag.variants: required property 'variants' is missing"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"variants": {"on": True, "off": "no"}},
            "flags.myFlag.variants.off: 'no' is not of type 'boolean'",
        ),
        ({"variants": {}}, "flags.myFlag.variants: {} should be non-empty"),
        ({"defaultVariant": 1}, "flags.myFlag.defaultVariant: 1 is not of type 'string', 'null'"),
        ({"metadata": {"tags": ["a"]}}, "flags.myFlag.metadata.tags: ['a'] is not of type"),
        (
            {"targeting": {"fractional": [["on", "x"], ["off", 1]]}},
            "flags.myFlag.targeting.fractional[0][1]: 'x' is not of type 'number'",
        ),
    ],
)
def test_the_schema_explains_the_closest_flag_type(
    flagd_schema: FlagdSchema, change: dict[str, Any], expected: str
) -> None:
    document = example("minimal")
    document["flags"]["myFlag"].update(change)
    problems = flagd_schema.problems(document)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_document_level_problems_have_paths(flagd_schema: FlagdSchema) -> None:
    assert flagd_schema.problems({}) == ["flags: required property 'flags' is missing"]
    assert flagd_schema.problems({"flags": {}, "metadata": {"tags": ["a"]}}) == [
        "metadata.tags: ['a'] is not of type 'string', 'number', 'boolean'"
    ]
    assert flagd_schema.problems({"flags": {}, "$evaluators": {"r": []}}) == [
        "$evaluators.r: [] is not of type 'object'"
    ]
    # Draft 7 ignores keywords beside "$ref", so the schema's "version must be a string" is not
    # enforced; any scalar passes.
    assert flagd_schema.problems({"flags": {}, "metadata": {"version": 3}}) == []
    assert flagd_schema.problems([]) == ["(document): [] is not of type 'object'"]  # type: ignore[arg-type]


def test_problems_are_sorted_by_path(flagd_schema: FlagdSchema) -> None:
    document = example("minimal")
    flag = document["flags"]["myFlag"]
    document["flags"] = {"zz": {**flag, "state": "X"}, "aa": {**flag, "state": "Y"}}
    problems = flagd_schema.problems(document)
    assert [problem.split(":")[0] for problem in problems] == ["flags.aa.state", "flags.zz.state"]


def test_problems_for_flags_match_the_whole_document(flagd_schema: FlagdSchema) -> None:
    document = example("full")
    document["flags"]["myBoolFlag"]["state"] = "ON"
    whole = flagd_schema.problems(document)
    per_flag = flagd_schema.problems_for_flags(document["flags"])
    assert per_flag == whole
    assert flagd_schema.problems_for_flags({"myBoolFlag": document["flags"]["myBoolFlag"]}) == [
        "flags.myBoolFlag.state: 'ON' is not one of ['ENABLED', 'DISABLED']"
    ]
    assert flagd_schema.problems_for_flags({"": document["flags"]["myStringFlag"]}) == [
        "flags: a flag key must not be empty"
    ]


def broken_document() -> FlagDocument:
    document = example("minimal")
    document["flags"]["bad"] = {**document["flags"]["myFlag"], "state": "ON", "defaultVariant": "x"}
    return parse_flag_document(json.dumps(document))


def test_validate_combines_schema_and_semantic_problems(flagd_schema: FlagdSchema) -> None:
    with pytest.raises(FlagDocumentError) as caught:
        validate_flag_document(broken_document(), flagd_schema)
    problems = caught.value.details["problems"]
    assert problems == [
        "flags.bad.state: 'ON' is not one of ['ENABLED', 'DISABLED']",
        "flag 'bad': state 'ON' is not valid; use \"ENABLED\" or \"DISABLED\"",
        "flag 'bad': defaultVariant 'x' names no variant; use one of 'on', 'off' or null",
    ]
    assert caught.value.message == (f"{problems[0]} (and 2 more problems; see details.problems)")
    assert caught.value.code == "invalid_flag_document"


def test_validate_with_only_checks_the_named_flags(flagd_schema: FlagdSchema) -> None:
    doc = broken_document()
    validate_flag_document(doc, flagd_schema, only=["myFlag"])
    with pytest.raises(FlagDocumentError) as caught:
        validate_flag_document(doc, flagd_schema, only=["bad"])
    assert len(caught.value.details["problems"]) == 3


def test_validate_with_only_still_checks_the_document_level_parts(
    flagd_schema: FlagdSchema,
) -> None:
    doc = parse_flag_document(json.dumps(example("minimal"))).with_metadata(tags=["a"])
    with pytest.raises(FlagDocumentError, match=r"^metadata\.tags: \['a'\] is not of type"):
        validate_flag_document(doc, flagd_schema, only=["myFlag"])


def test_validate_with_only_converts_only_the_named_flags(
    flagd_schema: FlagdSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A toggle in a stage of 5,000 flags must not turn the other 4,999 into JSON.
    doc = FlagDocument({}, {"flagSetId": "demo"})
    for index in range(50):
        doc = doc.put(new_flag(f"flag{index}"))
    converted: list[str] = []
    to_json = Flag.to_json

    def counting(flag: Flag) -> dict[str, Any]:
        converted.append(flag.key)
        return to_json(flag)

    monkeypatch.setattr(Flag, "to_json", counting)
    validate_flag_document(doc, flagd_schema, only=["flag7"])
    assert converted == ["flag7"]


def test_the_schema_is_reused_not_mutated(flagd_schema: FlagdSchema) -> None:
    document = example("full")
    snapshot = copy.deepcopy(document)
    flagd_schema.problems(document)
    flagd_schema.problems(document)
    assert document == snapshot
