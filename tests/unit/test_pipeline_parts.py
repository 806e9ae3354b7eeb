"""The parts of the pipeline package on their own: cron, the reader's wording, the parse order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stageflow.domain.errors import PipelineError
from stageflow.domain.pipeline import (
    LIFECYCLES,
    format_duration,
    parse_duration,
    parse_pipeline,
)
from stageflow.domain.pipeline.cron import parse_cron
from stageflow.domain.pipeline.reader import Reader, optional, quoted


def stage_document(**stage: object) -> dict[str, object]:
    return {
        "apiVersion": "stageflow/v1",
        "apps": {"demo": {"path": "apps/demo"}},
        "stages": [{"name": "development", **stage}],
    }


def problem(data: object) -> str:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(data)
    return caught.value.message


# --- cron ---------------------------------------------------------------------------------------


def test_cron_reads_names_ranges_steps_and_sunday_as_seven() -> None:
    minutes, hours, days, months, weekdays = parse_cron("*/20 9-11 1,15 jan-mar 7")

    assert minutes == {0, 20, 40}
    assert hours == {9, 10, 11}
    assert days == {1, 15}
    assert months == {1, 2, 3}
    assert weekdays == {0}


def test_cron_reads_a_start_with_a_step_as_up_to_the_end() -> None:
    assert parse_cron("5/20 * * * *")[0] == {5, 25, 45}


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("* * * *", "has 4 fields, not 5"),
        ("60 * * * *", "minute field: 60 is outside 0-59"),
        ("* * * * 5-1", "day of week field: range '5-1' runs backwards"),
        ("*/0 * * * *", "step '0' in '*/0' must be 1 or more"),
        ("x * * * *", "minute field: 'x' is not a number"),
        ("1,,2 * * * *", "minute field: '' is empty"),
    ],
)
def test_cron_errors_name_the_field_and_the_problem(cron: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(cron)

    assert says in str(caught.value)


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["0s", "45s", "10m", "1h30m", "2d", "1d2h3m4s"])
def test_durations_round_trip(written: str) -> None:
    assert format_duration(parse_duration(written)) == written


def test_a_whole_number_of_seconds_is_a_duration() -> None:
    assert parse_duration(90) == parse_duration("90") == timedelta(seconds=90)


# --- the reader ---------------------------------------------------------------------------------


def test_reader_messages_name_source_line_and_dotted_path() -> None:
    reader = Reader("gitops/stageflow.yaml", lambda path: 7 if path[-1] == "soak" else None)

    with pytest.raises(PipelineError) as caught:
        reader.fail(("stages", 1, "gates", "soak"), "is wrong", "fix it")

    assert (
        caught.value.message
        == "gitops/stageflow.yaml line 7, stages[1].gates.soak: is wrong; fix it"
    )
    assert caught.value.details == {"path": "stages[1].gates.soak", "line": 7}


def test_reader_quotes_keys_that_are_not_plain_words() -> None:
    reader = Reader("stageflow.yaml", lambda path: None)

    with pytest.raises(PipelineError) as caught:
        reader.fail(("apps", "my app"), "is wrong", "fix it")

    assert 'apps["my app"]' in caught.value.message


def test_quoted_shows_strings_as_json_and_describes_other_values() -> None:
    assert quoted("beta") == '"beta"'
    assert quoted(3) == "the number 3"
    assert quoted(None) == "null (an empty value)"


def test_an_empty_value_reads_as_absent() -> None:
    assert optional({"gates": None}, "gates") is None
    assert optional({}, "gates") is None


# --- stage parsing ------------------------------------------------------------------------------


def test_flags_without_allow_allow_every_lifecycle() -> None:
    pipeline = parse_pipeline(stage_document(flags={"allow": None}))

    assert pipeline.stage("development").allow == frozenset(LIFECYCLES)


def test_a_stage_with_several_problems_reports_the_first_key_in_file_order() -> None:
    # flags comes before gates, approvals and freeze_windows in the stage's keys
    said = problem(
        stage_document(
            flags={"allow": ["stabel"]},
            approvals=-1,
            auto_rollback="yes",
            freeze_windows=[{"name": "x"}],
        )
    )

    assert "stages[0].flags.allow[0]" in said
    assert "did you mean 'stable'?" in said


def test_approvals_are_read_before_auto_rollback() -> None:
    said = problem(stage_document(approvals=-1, auto_rollback="yes"))

    assert "stages[0].approvals: -1 is negative" in said


# --- apps ---------------------------------------------------------------------------------------


def with_app(**app: object) -> dict[str, object]:
    document = stage_document()
    document["apps"] = {"demo": {"path": "apps/demo", **app}}
    return document


def test_argocd_names_must_be_dns_subdomains() -> None:
    said = problem(with_app(argocd={"development": "Demo_Dev"}))

    assert "apps.demo.argocd.development" in said
    assert '"Demo_Dev" is not a valid Argo CD Application name' in said


def test_flux_stages_must_be_known_stages() -> None:
    said = problem(with_app(flux={"develop": "demo"}))

    assert 'there is no stage "develop"' in said
    assert "did you mean 'development'?" in said


def test_deploying_objects_are_read_per_tool() -> None:
    pipeline = parse_pipeline(
        with_app(flux={"development": "demo-dev"}, argocd={"development": "demo.dev"})
    )

    assert dict(pipeline.app("demo").flux) == {"development": "demo-dev"}
    assert dict(pipeline.app("demo").argocd) == {"development": "demo.dev"}
