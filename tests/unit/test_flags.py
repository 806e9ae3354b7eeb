"""Flags: the flagd document as values, its semantic checks and its stable layout."""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stageflow.domain.errors import FlagDocumentError, Invalid, NotFound
from stageflow.domain.flags import (
    FLAGD_SCHEMA_URL,
    Flag,
    FlagDocument,
    RenderedDocument,
    check_flag_document,
    new_flag,
    parse_flag_document,
    render_flag_document,
    set_enabled,
    with_changes,
)
from stageflow.domain.flags.layout import _splice

DATA = Path(__file__).parent / "data"

SMALL = """\
{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {"flagSetId": "demo", "version": "seed"},
  "flags": {
    "new_ui": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on",
      "metadata": {"lifecycle": "stable", "description": "The redesigned UI"}
    }
  }
}
"""


def small_document() -> FlagDocument:
    flag = new_flag("new_ui", description="The redesigned UI", lifecycle="stable")
    return FlagDocument({}, {"flagSetId": "demo", "version": "seed"}).put(set_enabled(flag, True))


def flag_json(**overrides: Any) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
    }
    flag.update(overrides)
    return flag


def document(flags: dict[str, Any], **top: Any) -> FlagDocument:
    return parse_flag_document(json.dumps({"flags": flags, **top}))


def many_flags(count: int) -> FlagDocument:
    doc = FlagDocument({}, {"flagSetId": "demo", "version": "seed"})
    for index in range(count):
        flag = new_flag(f"flag_{index}", description=f"Flag number {index}", lifecycle="beta")
        if index % 3 == 0:
            flag = with_changes(flag, targeting={"if": [{"var": "beta"}, "on", "off"]})
        doc = doc.put(flag)
    return doc


# --- rendering ---------------------------------------------------------------------------------


def test_render_writes_the_readable_layout() -> None:
    assert render_flag_document(small_document()) == SMALL


def test_render_expands_targeting_and_evaluators_and_keeps_non_ascii() -> None:
    doc = FlagDocument(
        {
            "greeting": Flag(
                "greeting",
                "ENABLED",
                {"hi": "Grüß Gott", "yo": "¡Hola!"},
                None,
                {"if": [{"$ref": "staff"}, "hi", None]},
            )
        },
        evaluators={"staff": {"in": ["@example.com", {"var": "email"}]}},
    )

    assert render_flag_document(doc) == (
        "{\n"
        '  "$schema": "https://flagd.dev/schema/v0/flags.json",\n'
        '  "$evaluators": {\n'
        '    "staff": {\n'
        '      "in": [\n'
        '        "@example.com",\n'
        "        {\n"
        '          "var": "email"\n'
        "        }\n"
        "      ]\n"
        "    }\n"
        "  },\n"
        '  "flags": {\n'
        '    "greeting": {\n'
        '      "state": "ENABLED",\n'
        '      "variants": {"hi": "Grüß Gott", "yo": "¡Hola!"},\n'
        '      "defaultVariant": null,\n'
        '      "targeting": {\n'
        '        "if": [\n'
        "          {\n"
        '            "$ref": "staff"\n'
        "          },\n"
        '          "hi",\n'
        "          null\n"
        "        ]\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def test_render_keeps_a_small_map_on_one_line_up_to_100_columns() -> None:
    prefix = '      "metadata": {"lifecycle": "beta", "description": "'
    fits = "x" * (100 - len(prefix) - len('"}'))
    doc = FlagDocument({}).put(new_flag("a", lifecycle="beta", description=fits))
    lines = render_flag_document(doc).splitlines()
    assert f'{prefix}{fits}"}}' in lines
    assert max(len(line) for line in lines) == 100

    longer = with_changes(doc.get("a"), description=fits + "x")
    text = render_flag_document(doc.put(longer))
    assert (
        '      "metadata": {\n'
        '        "lifecycle": "beta",\n'
        f'        "description": "{fits}x"\n'
        "      }\n"
    ) in text


def test_render_counts_the_comma_after_variants_in_the_width() -> None:
    # '      "variants": {"v": "..."},' is exactly 100 columns with the comma.
    value = "x" * (100 - len('      "variants": {"v": ""},'))
    flag = Flag("a", "ENABLED", {"v": value}, "v")
    assert f'      "variants": {{"v": "{value}"}},' in render_flag_document(
        FlagDocument({"a": flag})
    )

    wider = Flag("a", "ENABLED", {"v": value + "x"}, "v")
    assert '      "variants": {\n        "v": ' in render_flag_document(FlagDocument({"a": wider}))


def test_render_an_empty_document() -> None:
    assert render_flag_document(FlagDocument({})) == (
        '{\n  "$schema": "https://flagd.dev/schema/v0/flags.json",\n  "flags": {}\n}\n'
    )


def test_render_is_the_json_of_to_json_in_the_same_key_order() -> None:
    doc = parse_flag_document((DATA / "flagd-example-full.json").read_bytes())
    rendered = json.loads(render_flag_document(doc))
    assert rendered == doc.to_json()
    assert json.dumps(rendered) == json.dumps(doc.to_json())


@pytest.mark.parametrize(
    "doc",
    [
        small_document(),
        parse_flag_document((DATA / "flagd-example-full.json").read_text("utf-8")),
        parse_flag_document((DATA / "flagd-example-minimal.json").read_text("utf-8")),
        many_flags(30),
        FlagDocument({}),
        FlagDocument(
            {"cfg": Flag("cfg", "DISABLED", {"a": {"x": [1, 2.5, None]}, "b": {}}, None)},
            {"flagSetId": "s", "version": "v" * 120},
            {"rule": {"==": [{"var": "tier"}, "gold"]}},
        ),
    ],
    ids=["small", "full-example", "minimal-example", "30-flags", "empty", "objects-and-long"],
)
def test_parse_of_render_is_the_same_document(doc: FlagDocument) -> None:
    assert parse_flag_document(render_flag_document(doc)) == doc


def test_toggling_one_flag_changes_exactly_one_line() -> None:
    doc = many_flags(50)
    before = render_flag_document(doc).splitlines()
    toggled = doc.put(set_enabled(doc.get("flag_7"), True))
    after = render_flag_document(toggled).splitlines()

    changes = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changes == ['-      "defaultVariant": "off",', '+      "defaultVariant": "on",']


def test_toggling_a_string_flag_changes_exactly_one_line() -> None:
    doc = many_flags(5).put(new_flag("theme", variants={"light": "#fff", "dark": "#000"}))
    before = render_flag_document(doc).splitlines()
    after = render_flag_document(doc.put(set_enabled(doc.get("theme"), True))).splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [('      "state": "DISABLED",', '      "state": "ENABLED",')]


# --- splicing: a write edits the previous text instead of rendering every flag --------------


def varied_document() -> FlagDocument:
    """Flags of every shape the layout knows, between plain ones (first, middle and last)."""
    doc = many_flags(30).with_metadata(version="0" * 40)
    doc = doc.put(
        Flag(
            "theme",
            "DISABLED",
            {"light": "#ffffff", "dark": "#000000", "contrast": "#ffff00"},
            "light",
            metadata={"lifecycle": "beta"},
        )
    )
    doc = doc.put(Flag("limits", "ENABLED", {"low": 10, "high": 1.5, "none": 0}, "low"))
    doc = doc.put(
        Flag("config", "ENABLED", {"a": {"depth": [1, {"x": None}]}, "b": {}}, "a", metadata={})
    )
    doc = doc.put(Flag("greeting", "ENABLED", {"hi": "Grüß Gott", "yo": "¡Hola!\n"}, None))
    doc = doc.put(
        Flag(
            "wide",
            "ENABLED",
            {f"variant_{i}": f"a rather long value number {i}" for i in range(6)},
            "variant_0",
            metadata={"lifecycle": "stable", "description": "d" * 120},
        )
    )
    doc = doc.put(new_flag("flag_last", description="The last one", lifecycle="stable"))
    return replace_evaluators(doc, {"staff": {"in": ["@example.com", {"var": "email"}]}})


def replace_evaluators(doc: FlagDocument, evaluators: dict[str, Any]) -> FlagDocument:
    return FlagDocument(dict(doc.flags), dict(doc.metadata), evaluators, doc.schema)


def toggled(doc: FlagDocument, key: str) -> FlagDocument:
    flag = doc.get(key)
    return doc.put(set_enabled(flag, not flag.enabled))


EDITS: dict[str, Callable[[FlagDocument], FlagDocument]] = {
    "toggle the first flag": lambda d: toggled(d, "flag_0"),
    "toggle a middle flag": lambda d: toggled(d, "flag_7"),
    "toggle the last flag": lambda d: toggled(d, "flag_last"),
    "toggle a targeted flag (state too)": lambda d: toggled(d, "flag_3"),
    "toggle a string flag": lambda d: toggled(d, "theme"),
    "change the default variant": lambda d: d.put(
        with_changes(d.get("theme"), default_variant="dark")
    ),
    "set the default variant to null": lambda d: d.put(
        with_changes(d.get("limits"), default_variant=None)
    ),
    "change the state": lambda d: d.put(with_changes(d.get("config"), state="DISABLED")),
    "add targeting": lambda d: d.put(
        with_changes(d.get("flag_1"), targeting={"if": [{"$ref": "staff"}, "on", "off"]})
    ),
    "change targeting": lambda d: d.put(
        with_changes(d.get("flag_3"), targeting={"fractional": [["on", 10], ["off", 90]]})
    ),
    "remove targeting": lambda d: d.put(with_changes(d.get("flag_6"), targeting=None)),
    "change lifecycle and description": lambda d: d.put(
        with_changes(d.get("flag_2"), lifecycle="stable", description="Now with a longer text")
    ),
    "make metadata too wide for one line": lambda d: d.put(
        with_changes(d.get("flag_4"), description="x" * 90)
    ),
    "remove the description": lambda d: d.put(with_changes(d.get("wide"), description=None)),
    "add a flag": lambda d: d.put(new_flag("brand_new", description="Fresh")),
    "add two flags": lambda d: d.put(new_flag("one")).put(new_flag("two", lifecycle="beta")),
    "remove the first flag": lambda d: d.remove("flag_0"),
    "remove a middle flag": lambda d: d.remove("flag_15"),
    "remove the last flag": lambda d: d.remove("flag_last"),
    "remove the last two flags": lambda d: d.remove("flag_last").remove("wide"),
    "remove the last flag, change the one before": lambda d: toggled(d.remove("flag_last"), "wide"),
    "remove two neighbours": lambda d: d.remove("flag_8").remove("flag_9"),
    "remove one, add one": lambda d: d.remove("flag_11").put(new_flag("flag_11_again")),
    "remove the last, add one": lambda d: d.remove("flag_last").put(new_flag("after")),
    "toggle, add and remove": lambda d: toggled(d, "flag_5").remove("flag_20").put(new_flag("z")),
    "only the version": lambda d: d.with_metadata(version="f" * 40),
    "new metadata entry": lambda d: d.with_metadata(owner="team-a"),
    "change the evaluators": lambda d: replace_evaluators(d, {"staff": {"var": "staff"}}),
    "drop the evaluators": lambda d: replace_evaluators(d, {}),
    "an equal copy of a flag": lambda d: d.put(Flag(**vars(d.get("flag_12")))),
    "a variant equal but not identical (1 for true)": lambda d: d.put(
        Flag("flag_13", "ENABLED", {"on": 1, "off": False}, "off")
    ),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=list(EDITS))
def test_splice_gives_the_full_render_byte_for_byte(edit: Callable[[FlagDocument], FlagDocument]):
    before = varied_document()
    after = edit(before).with_metadata(version="1" * 40)
    spliced = RenderedDocument.render(before).splice(after)
    assert spliced is not None
    assert spliced.text == render_flag_document(after)
    assert spliced.document is after


def test_splice_of_a_toggle_is_a_two_line_diff() -> None:
    before = many_flags(50).with_metadata(version="a" * 40)
    after = toggled(before, "flag_10").with_metadata(version="b" * 40)
    spliced = RenderedDocument.render(before).splice(after)
    assert spliced is not None
    assert spliced.text == render_flag_document(after)
    diff = [
        line
        for line in difflib.unified_diff(
            render_flag_document(before).splitlines(), spliced.text.splitlines(), lineterm="", n=0
        )
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert len(diff) == 4  # the version line and the defaultVariant line, each out and in


def test_splice_matches_the_full_render_over_a_long_run_of_random_edits() -> None:
    chance = random.Random(20261127)
    doc = varied_document()
    held = RenderedDocument.render(doc)
    spliced_count = 0
    for step in range(400):
        keys = list(doc.flags)
        roll = chance.random()
        key = chance.choice(keys)
        flag = doc.get(key)
        if roll < 0.4 and flag.is_boolean:
            changed = toggled(doc, key)
        elif roll < 0.5:
            changed = doc.put(with_changes(flag, state=chance.choice(["ENABLED", "DISABLED"])))
        elif roll < 0.6:
            changed = doc.put(
                with_changes(flag, default_variant=chance.choice([*flag.variants, None]))
            )
        elif roll < 0.7:
            rule = chance.choice([None, {"if": [{"var": "beta"}, *list(flag.variants)[:2]]}])
            changed = doc.put(with_changes(flag, targeting=rule))
        elif roll < 0.8:
            changed = doc.put(with_changes(flag, description=chance.choice([None, "d" * step])))
        elif roll < 0.9 and len(keys) > 1:
            changed = doc.remove(key)
        else:
            changed = doc.put(new_flag(f"added_{step}", lifecycle="beta"))
        changed = changed.with_metadata(version=f"{step:040x}")
        spliced = held.splice(changed)
        expected = render_flag_document(changed)
        assert spliced is None or spliced.text == expected, f"step {step}"
        spliced_count += spliced is not None
        # each step splices from the text the previous splice made
        doc, held = changed, spliced or RenderedDocument.render(changed)
    assert spliced_count == 400  # every one of these edits is spliced, none falls back


def test_splice_gives_way_to_the_full_render_when_it_cannot_prove_the_layout() -> None:
    before = many_flags(20)
    held = RenderedDocument.render(before)
    text = held.text
    after = toggled(before, "flag_5")
    # flags in another order
    reordered = FlagDocument(dict(reversed(list(after.flags.items()))), dict(after.metadata))
    assert held.splice(reordered) is None
    # a new flag anywhere but at the end
    inserted = FlagDocument({"first": new_flag("first"), **after.flags}, dict(after.metadata))
    assert held.splice(inserted) is None
    # a text that is not the render of the previous document where it matters: the block of the
    # changed flag, the head, the end (a RenderedDocument cannot hold one: the splice itself is
    # asked)
    at = text.index('"flag_5"')
    tampered = text[:at] + text[at:].replace('"defaultVariant": "off"', '"defaultVariant": "on"', 1)
    assert _splice(before, tampered, after) is None
    assert _splice(before, text.replace('"flag_5"', '"flag_55"'), after) is None
    assert _splice(before, text.replace("seed", "other"), after) is None
    assert _splice(before, text.rstrip("\n"), after) is None
    # empty documents, before or after
    assert RenderedDocument.render(FlagDocument({})).splice(after) is None
    emptied = FlagDocument({}, dict(before.metadata))
    assert held.splice(emptied) is None
    # many changes at once: rendering the whole document is as cheap
    everything = FlagDocument(
        {key: set_enabled(flag, True) for key, flag in before.flags.items()}, dict(before.metadata)
    )
    assert RenderedDocument.render(many_flags(100)).splice(everything) is None


def test_a_rendered_document_is_made_only_by_rendering_or_splicing() -> None:
    doc = many_flags(3)
    with pytest.raises(TypeError, match=r"RenderedDocument\.render"):
        RenderedDocument(doc, render_flag_document(toggled(doc, "flag_1")), object())
    held = RenderedDocument.render(doc)
    assert held.document is doc and held.text == render_flag_document(doc)
    with pytest.raises(AttributeError):
        held.text = "{}"  # frozen: the pair cannot be taken apart


def _random_edit(chance: random.Random, doc: FlagDocument, step: int) -> FlagDocument:
    """One edit of any kind a write makes, and some a splice cannot make (it must fall back)."""
    keys = list(doc.flags)
    key = chance.choice(keys)
    flag = doc.get(key)
    roll = chance.random()
    if roll < 0.3 and flag.is_boolean:
        return toggled(doc, key)
    if roll < 0.4:
        return doc.put(with_changes(flag, default_variant=chance.choice([*flag.variants, None])))
    if roll < 0.5:
        rule = chance.choice([None, {"fractional": [[name, 50] for name in flag.variants]}])
        return doc.put(with_changes(flag, targeting=rule))
    if roll < 0.6 and len(keys) > 1:
        return doc.remove(key)
    if roll < 0.7:
        return doc.put(new_flag(f"added_{step}", variants={"a": step, "b": -step}))
    if roll < 0.75:  # a flag moved: the layout cannot be spliced
        return FlagDocument({key: flag, **doc.flags}, dict(doc.metadata), dict(doc.evaluators))
    if roll < 0.8:  # everything changed at once: rendered whole
        return FlagDocument(
            {k: with_changes(f, description=f"step {step}") for k, f in doc.flags.items()},
            dict(doc.metadata),
        )
    if roll < 0.85:  # the same content, parsed again: no flag object shared
        return parse_flag_document(render_flag_document(doc))
    return doc.put(with_changes(flag, description=chance.choice([None, "d" * (step % 150)])))


def test_rewrite_equals_the_full_render_for_many_random_edits() -> None:
    chance = random.Random(20261201)
    doc = varied_document()
    held = RenderedDocument.render(doc)
    spliced = 0
    for step in range(600):
        changed = _random_edit(chance, doc, step).with_metadata(version=f"{step:040x}")
        spliced += held.splice(changed) is not None
        held = held.rewrite(changed)
        assert held.document is changed, f"step {step}"
        assert held.text == render_flag_document(changed), f"step {step}"
        doc = changed
    # both ways were taken: most edits spliced, the moves and mass changes rendered whole
    assert 300 < spliced < 600


# --- parsing -----------------------------------------------------------------------------------


def test_parse_reads_a_hand_written_document_without_lifecycles() -> None:
    doc = parse_flag_document((DATA / "flagd-example-minimal.json").read_bytes())
    flag = doc.get("myFlag")
    assert doc.schema == FLAGD_SCHEMA_URL
    assert flag == Flag("myFlag", "ENABLED", {"on": True, "off": False}, "on")
    assert flag.lifecycle is None
    assert flag.description is None
    assert flag.enabled


def test_parse_keeps_flag_order_metadata_evaluators_and_schema() -> None:
    text = json.dumps(
        {
            "$schema": "../flags.json",
            "metadata": {"flagSetId": "x"},
            "$evaluators": {"r": {"var": "a"}},
            "flags": {"zeta": flag_json(), "alpha": flag_json(), "mid": flag_json()},
        }
    )
    doc = parse_flag_document(text)
    assert list(doc.flags) == ["zeta", "alpha", "mid"]
    assert doc.schema == "../flags.json"
    assert doc.metadata == {"flagSetId": "x"}
    assert doc.evaluators == {"r": {"var": "a"}}


def test_parse_accepts_bytes_with_a_byte_order_mark() -> None:
    doc = parse_flag_document(b"\xef\xbb\xbf" + json.dumps({"flags": {}}).encode())
    assert doc == FlagDocument({})


def test_parse_treats_empty_targeting_as_none() -> None:
    doc = document({"a": flag_json(targeting={})})
    assert doc.get("a").targeting is None


def test_parse_names_line_and_column_of_a_json_error() -> None:
    text = '{\n  "flags": {\n    "a": {"state": "ENABLED" "variants": {}}\n  }\n}\n'
    with pytest.raises(FlagDocumentError) as caught:
        parse_flag_document(text)
    assert "line 3, column 30" in caught.value.message
    assert caught.value.details["line"] == 3
    assert caught.value.details["column"] == 30
    assert caught.value.details["problems"] == [caught.value.message]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"flags": {"a": {"state": "ENABLED", "variants": {"x": NaN}}}}', "NaN"),
        ('{"flags": {"a": {}, "a": {}}}', "the key 'a' twice"),
        ("[]", "must be a JSON object, not an array"),
        ('{"flags": []}', "flags: must be an object keyed by flag key, not an array"),
        ("{}", "flags: missing"),
        ('{"flags": {"a": true}}', "flags.a: a flag must be an object, not a boolean"),
        ('{"flags": {"a": {"variants": {}}}}', "flags.a.state: missing"),
        ('{"flags": {"a": {"state": 1, "variants": {}}}}', "flags.a.state: must be"),
        ('{"flags": {"a": {"state": "ENABLED"}}}', "flags.a.variants: missing"),
        ('{"flags": {"a": {"state": "ENABLED", "variants": []}}}', "flags.a.variants: must be"),
        (
            '{"flags": {"a": {"state": "ENABLED", "variants": {}, "defaultVariant": 1}}}',
            "flags.a.defaultVariant: must be a variant name or null, not a number",
        ),
        (
            '{"flags": {"a": {"state": "ENABLED", "variants": {}, "targeting": "x"}}}',
            "flags.a.targeting: must be a JSONLogic object, not a string",
        ),
        (
            '{"flags": {"a": {"state": "ENABLED", "variants": {}, "metadata": 1}}}',
            "flags.a.metadata: must be an object",
        ),
        (
            '{"flags": {"a": {"state": "ENABLED", "variants": {}, "key": "a"}}}',
            "flags.a.key: unknown flag property",
        ),
        ('{"flags": {}, "flagz": {}}', "flagz: unknown top-level property"),
        ('{"flags": {}, "metadata": []}', "metadata: must be an object"),
        ('{"flags": {}, "$evaluators": 1}', "$evaluators: must be an object"),
        ('{"flags": {}, "$schema": 1}', "$schema: must be a string"),
    ],
)
def test_parse_refuses_a_wrong_shape(text: str | bytes, expected: str) -> None:
    with pytest.raises(FlagDocumentError) as caught:
        parse_flag_document(text)
    assert expected in caught.value.message


def test_parse_reports_every_shape_problem() -> None:
    text = json.dumps({"flags": {"a": {"state": 1}, "b": 2, "c": flag_json()}, "extra": 1})
    with pytest.raises(FlagDocumentError) as caught:
        parse_flag_document(text)
    problems = caught.value.details["problems"]
    assert len(problems) == 4
    assert caught.value.message.startswith(problems[0])
    assert "(and 3 more problems; see details.problems)" in caught.value.message


# --- flags -------------------------------------------------------------------------------------


def test_new_flag_defaults_to_an_off_boolean_flag() -> None:
    flag = new_flag("new_ui", description="The redesigned UI")
    assert flag == Flag(
        "new_ui",
        "ENABLED",
        {"on": True, "off": False},
        "off",
        None,
        {"lifecycle": "experimental", "description": "The redesigned UI"},
    )
    assert flag.to_json() == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "metadata": {"lifecycle": "experimental", "description": "The redesigned UI"},
    }
    assert list(flag.to_json()) == ["state", "variants", "defaultVariant", "metadata"]
    assert (flag.kind, flag.is_boolean, flag.enabled, flag.variant) == (
        "boolean",
        True,
        False,
        "off",
    )
    assert (flag.lifecycle, flag.description) == ("experimental", "The redesigned UI")


def test_new_flag_with_boolean_variants_defaults_to_the_false_one() -> None:
    flag = new_flag("a", variants={"yes": True, "no": False})
    assert (flag.state, flag.default_variant, flag.enabled) == ("ENABLED", "no", False)
    assert new_flag("b", variants={"yes": True, "no": False}, default_variant="yes").enabled


def test_new_flag_of_another_kind_starts_disabled() -> None:
    flag = new_flag("theme", variants={"light": "#fff", "dark": "#000"})
    assert (flag.kind, flag.state, flag.default_variant, flag.enabled) == (
        "string",
        "DISABLED",
        "light",
        False,
    )
    chosen = new_flag("limit", variants={"low": 10, "high": 2.5}, default_variant="high")
    assert (chosen.kind, chosen.state, chosen.default_variant) == ("number", "DISABLED", "high")
    assert "description" not in chosen.metadata


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"key": "1st"}, "flag key '1st' is not valid"),
        ({"key": "new_ui\n"}, "is not valid"),
        ({"key": "a" * 129}, "is not valid"),
        ({"key": "has space"}, "is not valid"),
        ({"key": "ok", "lifecycle": "ga"}, "lifecycle 'ga' is not one of experimental, beta"),
        ({"key": "ok", "variants": {}}, "flag 'ok' has no variants"),
        ({"key": "ok", "variants": {"a": True, "b": 1}}, "has variants of different types"),
        ({"key": "ok", "variants": {"a": [1]}}, "variant 'a' has the value [1]"),
        ({"key": "ok", "variants": {"a": float("inf")}}, "variant 'a' has the value"),
        ({"key": "ok", "default_variant": "maybe"}, "defaultVariant 'maybe' names no variant"),
        ({"key": "ok", "description": 3}, "description must be a string"),
    ],
)
def test_new_flag_refuses_invalid_input(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(Invalid) as caught:
        new_flag(**kwargs)
    assert expected in caught.value.message


def test_new_flag_accepts_the_longest_key() -> None:
    assert new_flag("A" + "b.-_9" * 25 + "zz").key.startswith("A")


def test_set_enabled_switches_a_boolean_flag_by_its_default_variant() -> None:
    off = new_flag("a")
    on = set_enabled(off, True)
    assert (on.state, on.default_variant, on.enabled) == ("ENABLED", "on", True)
    again = set_enabled(on, False)
    assert (again.state, again.default_variant, again.enabled) == ("ENABLED", "off", False)
    assert again == off


def test_set_enabled_finds_boolean_variants_by_value() -> None:
    flag = Flag("a", "DISABLED", {"yes": True, "no": False}, "no")
    assert set_enabled(flag, True).default_variant == "yes"
    assert set_enabled(flag, True).state == "ENABLED"
    assert set_enabled(flag, False).default_variant == "no"


def test_set_enabled_refuses_a_boolean_flag_without_the_needed_value() -> None:
    with pytest.raises(Invalid, match="has no variant with the value true"):
        set_enabled(Flag("a", "ENABLED", {"off": False}, "off"), True)


def test_set_enabled_switches_a_string_flag_by_its_state() -> None:
    flag = new_flag("theme", variants={"light": "#fff", "dark": "#000"})
    on = set_enabled(flag, True)
    assert (on.state, on.default_variant, on.enabled) == ("ENABLED", "light", True)
    off = set_enabled(on, False)
    assert (off.state, off.default_variant, off.enabled) == ("DISABLED", "light", False)


def test_switching_off_a_targeted_boolean_flag_disables_it_and_keeps_the_rules() -> None:
    rules = {"if": [{"var": "beta"}, "on", "off"]}
    flag = with_changes(new_flag("a"), targeting=rules)
    assert flag.enabled  # the rules can serve "on" even though the default is "off"

    off = set_enabled(flag, False)
    assert (off.state, off.default_variant, off.targeting, off.enabled) == (
        "DISABLED",
        "off",
        rules,
        False,
    )
    on = set_enabled(off, True)
    assert (on.state, on.default_variant, on.targeting, on.enabled) == (
        "ENABLED",
        "on",
        rules,
        True,
    )


@pytest.mark.parametrize(
    ("flag", "enabled"),
    [
        (Flag("a", "ENABLED", {"on": True, "off": False}, "on"), True),
        (Flag("a", "ENABLED", {"on": True, "off": False}, "off"), False),
        (Flag("a", "DISABLED", {"on": True, "off": False}, "on"), False),
        (Flag("a", "ENABLED", {"on": True, "off": False}, None), False),
        (Flag("a", "ENABLED", {"on": True, "off": False}, "off", {"var": "x"}), True),
        (Flag("a", "DISABLED", {"on": True, "off": False}, "off", {"var": "x"}), False),
        (Flag("a", "ENABLED", {"on": True, "off": False}, "off", {}), False),
        (Flag("a", "ENABLED", {"x": "1", "y": "2"}, "x"), True),
        (Flag("a", "ENABLED", {"x": "1", "y": "2"}, None), True),
        (Flag("a", "DISABLED", {"x": "1", "y": "2"}, "x"), False),
        (Flag("a", "ENABLED", {"n": 0}, "n"), True),
    ],
)
def test_enabled_means_the_flag_can_serve_a_non_off_value(flag: Flag, enabled: bool) -> None:
    assert flag.enabled is enabled


@pytest.mark.parametrize(
    ("variants", "kind"),
    [
        ({"on": True, "off": False}, "boolean"),
        ({"a": "x"}, "string"),
        ({"a": 1, "b": 2.5}, "number"),
        ({"a": {"k": 1}}, "object"),
        ({"a": 1, "b": True}, "number"),
        ({"a": None, "b": "x"}, "string"),
        ({}, "object"),
    ],
)
def test_kind_is_the_type_of_the_variant_values(variants: dict[str, Any], kind: str) -> None:
    flag = Flag("a", "ENABLED", variants, None)
    assert flag.kind == kind
    assert flag.is_boolean is (kind == "boolean")


def test_with_changes_changes_only_what_is_given() -> None:
    flag = new_flag("a", description="old")
    assert with_changes(flag) is flag
    changed = with_changes(
        flag,
        default_variant="on",
        state="DISABLED",
        targeting={"var": "x"},
        lifecycle="beta",
        description="new",
    )
    assert changed == Flag(
        "a",
        "DISABLED",
        {"on": True, "off": False},
        "on",
        {"var": "x"},
        {"lifecycle": "beta", "description": "new"},
    )
    assert with_changes(changed, targeting=None).targeting is None
    assert with_changes(changed, targeting={}).targeting is None
    assert with_changes(changed, description=None).metadata == {"lifecycle": "beta"}
    assert with_changes(changed, default_variant=None).default_variant is None


def test_with_changes_keeps_other_metadata() -> None:
    flag = Flag("a", "ENABLED", {"on": True}, "on", None, {"owner": "team-x"})
    assert with_changes(flag, lifecycle="stable").metadata == {
        "owner": "team-x",
        "lifecycle": "stable",
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"default_variant": "maybe"}, "defaultVariant 'maybe' names no variant; use one of 'on'"),
        ({"state": "ON"}, "state 'ON' is not valid"),
        ({"targeting": ["x"]}, "targeting must be a JSONLogic object"),
        ({"lifecycle": "ga"}, "lifecycle 'ga' is not one of"),
        ({"description": 1}, "description must be a string"),
    ],
)
def test_with_changes_refuses_invalid_values(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(Invalid) as caught:
        with_changes(new_flag("a"), **kwargs)
    assert expected in caught.value.message


# --- documents ---------------------------------------------------------------------------------


def test_get_names_the_missing_key_and_lists_known_ones() -> None:
    doc = many_flags(25)
    with pytest.raises(NotFound) as caught:
        doc.get("nope")
    message = caught.value.message
    assert message.startswith("flag 'nope' does not exist here; known flags: 'flag_0', 'flag_1'")
    assert "'flag_19' (and 5 more)" in message
    assert "flag_20" not in message
    assert caught.value.details["known"] == [f"flag_{i}" for i in range(20)]


def test_put_appends_new_flags_and_replaces_in_place() -> None:
    doc = FlagDocument({}).put(new_flag("b")).put(new_flag("a")).put(new_flag("c"))
    assert list(doc.flags) == ["b", "a", "c"]
    replaced = doc.put(set_enabled(doc.get("a"), True))
    assert list(replaced.flags) == ["b", "a", "c"]
    assert replaced.get("a").enabled
    assert not doc.get("a").enabled  # the original is untouched


def test_remove_drops_a_flag_and_refuses_a_missing_one() -> None:
    doc = FlagDocument({}).put(new_flag("a")).put(new_flag("b"))
    assert list(doc.remove("a").flags) == ["b"]
    with pytest.raises(NotFound, match="flag 'zzz' does not exist"):
        doc.remove("zzz")


def test_with_metadata_sets_and_removes_entries() -> None:
    doc = FlagDocument({}, {"flagSetId": "demo", "version": "1"})
    updated = doc.with_metadata(version="abc123", owner="team")
    assert updated.metadata == {"flagSetId": "demo", "version": "abc123", "owner": "team"}
    assert updated.with_metadata(owner=None).metadata == {"flagSetId": "demo", "version": "abc123"}


def test_document_to_json_has_the_fixed_key_order_and_skips_empty_parts() -> None:
    doc = FlagDocument({}, evaluators={"r": {"var": "x"}}).with_metadata(flagSetId="s")
    assert list(doc.to_json()) == ["$schema", "metadata", "$evaluators", "flags"]
    assert FlagDocument({}).to_json() == {"$schema": FLAGD_SCHEMA_URL, "flags": {}}


def test_a_flag_must_be_stored_under_its_own_key() -> None:
    with pytest.raises(ValueError, match="has the key"):
        FlagDocument({"a": new_flag("b")})


# --- semantic checks ---------------------------------------------------------------------------


def test_a_sound_document_has_no_problems() -> None:
    doc = document(
        {
            "new_ui": flag_json(
                metadata={"lifecycle": "beta"},
                targeting={
                    "if": [
                        {"starts_with": [{"var": "email"}, "abc"]},
                        "on",
                        {"in": ["x", {"$ref": "staff"}]},
                        {"fractional": [{"var": "id"}, ["on", 10], ["off", {"var": "w"}]]},
                        None,
                    ]
                },
            ),
            "theme": flag_json(
                variants={"light": "#fff", "dark": "#000"},
                defaultVariant=None,
                targeting={"fractional": [["light"], ["dark", 0]]},
            ),
        },
        **{"$evaluators": {"staff": {"var": "groups"}}},
    )
    assert check_flag_document(doc) == []


@pytest.mark.parametrize(
    ("key", "flag", "expected"),
    [
        ("1bad", flag_json(), "flag '1bad': the key is not valid; rename it to a letter"),
        ("a", flag_json(state="ON"), "flag 'a': state 'ON' is not valid; use \"ENABLED\""),
        ("a", flag_json(variants={}, defaultVariant=None), "flag 'a' has no variants; add"),
        (
            "a",
            flag_json(variants={"on": True, "one": 1}, defaultVariant="on"),
            "flag 'a' has variants of different types (boolean: 'on'; number: 'one')",
        ),
        (
            "a",
            flag_json(variants={"x": "s", "o": {}}, defaultVariant="x"),
            "flag 'a' has variants of different types (string: 'x'; object: 'o')",
        ),
        (
            "a",
            flag_json(variants={"x": None}, defaultVariant="x"),
            "flag 'a' variant 'x' has the value null, which flagd cannot serve",
        ),
        (
            "a",
            flag_json(variants={"": True}, defaultVariant=None),
            "flag 'a' has a variant with an empty name",
        ),
        (
            "a",
            flag_json(defaultVariant="maybe"),
            "flag 'a': defaultVariant 'maybe' names no variant; use one of 'on', 'off' or null",
        ),
        (
            "a",
            flag_json(metadata={"lifecycle": "ga"}),
            "flag 'a': metadata.lifecycle 'ga' is not a lifecycle; use one of experimental, beta",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"and": [True, {"or": [{"$ref": "gone"}]}]}, "on", "off"]}),
            "flag 'a': targeting references the evaluator 'gone', which $evaluators does not "
            "define; define it or use one of 'known'",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"var": "x"}, "yes", "off"]}),
            "flag 'a': targeting returns 'yes', which is not a variant; use one of 'on', 'off'",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"var": "x"}, "on", {"var": "y"}, "off", "nah"]}),
            "flag 'a': targeting returns 'nah', which is not a variant",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"var": "x"}, "on", {"if": [{"var": "y"}, "off", "no"]}]}),
            "flag 'a': targeting returns 'no', which is not a variant",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"var": "x"}, True, False]}),
            "flag 'a': targeting returns true, which flagd looks up as the variant 'true'",
        ),
        (
            "a",
            flag_json(targeting={"fractional": [{"var": "id"}, ["on", 50], ["of", 50]]}),
            "flag 'a': targeting has the fractional bucket 'of', which is not a variant",
        ),
        (
            "a",
            flag_json(targeting={"fractional": [["on", -1], ["off", 50]]}),
            "flag 'a': targeting gives the fractional bucket 'on' the weight -1; weights are "
            "non-negative numbers",
        ),
        (
            "a",
            flag_json(targeting={"fractional": [["on", True], ["off", "50"]]}),
            "flag 'a': targeting gives the fractional bucket 'on' the weight true",
        ),
        (
            "a",
            flag_json(targeting={"fractional": [["on", 12.5], ["off", 87.5]]}),
            "flag 'a': targeting gives the fractional bucket 'on' the weight 12.5; flagd takes "
            "whole numbers only",
        ),
        (
            "a",
            flag_json(targeting={"if": [{"var": "x"}, {"$ref": "known"}, "off"]}),
            "flag 'a': targeting (via $evaluators.known) returns 'gold', which is not a variant",
        ),
    ],
)
def test_check_reports_each_problem_naming_the_flag(
    key: str, flag: dict[str, Any], expected: str
) -> None:
    evaluators = {"known": {"if": [{"var": "tier"}, "gold", None]}}
    doc = document({key: flag}, **{"$evaluators": evaluators})
    problems = check_flag_document(doc)
    assert any(expected in problem for problem in problems), problems


def test_check_ignores_strings_that_are_not_results() -> None:
    doc = document(
        {
            "a": flag_json(
                targeting={
                    "if": [
                        {"==": [{"if": [{"var": "x"}, "abc", "def"]}, "abc"]},
                        "on",
                        {"fractional": [["anything", 1]]},
                    ]
                }
            )
        }
    )
    assert check_flag_document(doc) == [
        "flag 'a': targeting has the fractional bucket 'anything', which is not a variant; use "
        "one of 'on', 'off' or add the variant"
    ]


def test_check_reports_an_evaluator_cycle() -> None:
    doc = document(
        {"a": flag_json(targeting={"if": [{"var": "x"}, {"$ref": "loop"}, "off"]})},
        **{"$evaluators": {"loop": {"if": [{"var": "y"}, {"$ref": "loop"}, "on"]}}},
    )
    assert check_flag_document(doc) == [
        "flag 'a': targeting (via $evaluators.loop) references the evaluator 'loop' from inside "
        "itself; flagd cannot expand a cycle"
    ]


def test_check_only_looks_at_the_named_flags() -> None:
    doc = document({"good": flag_json(), "bad": flag_json(state="ON")})
    assert len(check_flag_document(doc)) == 1
    assert check_flag_document(doc, only=["good"]) == []
    assert check_flag_document(doc, only={"bad"}) == [
        "flag 'bad': state 'ON' is not valid; use \"ENABLED\" or \"DISABLED\""
    ]


def test_check_finds_the_unreachable_fail_branches_of_the_flagd_example() -> None:
    # flagd's own example guards a "fail" result behind conditions that never hold; flagd would
    # still answer an error if one did, so the check reports it.
    doc = parse_flag_document((DATA / "flagd-example-full.json").read_bytes())
    problems = check_flag_document(doc)
    assert [problem.split(":")[0] for problem in problems] == [
        "flag 'starts-ends-flag'",
        "flag 'equal-greater-lesser-version-flag'",
    ]
    assert all("returns 'fail', which is not a variant" in problem for problem in problems)
