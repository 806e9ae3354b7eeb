from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.domain.errors import NotFound, PipelineError
from stageflow.domain.pipeline import (
    LIFECYCLES,
    App,
    FreezeWindow,
    MetricGate,
    Pipeline,
    Stage,
    format_duration,
    parse_duration,
    parse_pipeline,
)

STARTER = Path(__file__).resolve().parents[2] / "overlays" / "stageflow.yaml"

# Line numbers matter in these tests: keep the text of MINIMAL as it is.
MINIMAL = """\
apiVersion: stageflow/v1
apps:
  demo:
    path: apps/demo
stages:
  - name: development
  - name: staging
    flags: {allow: [beta, stable]}
    gates:
      checks: [smoke]
      soak: 10m
  - name: production
    approvals: 1
"""


def load(text: str) -> Pipeline:
    return load_pipeline(dedent(text))


def error_of(text: str) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        load(text)
    return caught.value


def with_line(line_no: int, replacement: str, text: str = MINIMAL) -> str:
    """Return ``text`` with its (1-based) line ``line_no`` replaced."""
    lines = text.splitlines()
    lines[line_no - 1] = replacement
    return "\n".join(lines) + "\n"


# --- the starter file --------------------------------------------------------------------------


def test_starter_file_parses_into_the_expected_pipeline() -> None:
    pipeline = load_pipeline(STARTER.read_text(), source=str(STARTER))

    assert pipeline.stage_names == ("development", "staging", "production")
    assert pipeline.app("demo") == App(name="demo", path="apps/demo")
    development, staging, production = pipeline.stages
    assert development.namespace == "development"
    assert development.allow == frozenset(LIFECYCLES)
    assert development.gates.checks == ("smoke",)
    assert development.gates.soak is None
    assert [gate.name for gate in development.gates.metrics] == ["error-rate", "p95-latency-ms"]
    error_rate, latency = development.gates.metrics
    assert error_rate.max == 0.01 and error_rate.min is None
    assert 'namespace="development"' in error_rate.query
    assert latency.max == 500
    # shipped switched off: they wait for STAGEFLOW_PROMETHEUS_URL and `enabled: true`
    assert not any(gate.enabled for stage in pipeline.stages for gate in stage.gates.metrics)
    assert staging.allow == frozenset({"beta", "stable"})
    assert staging.gates.checks == ("smoke", "load")
    assert staging.gates.soak == timedelta(minutes=1)
    assert all('namespace="staging"' in gate.query for gate in staging.gates.metrics)
    assert production.allow == frozenset({"stable"})
    assert production.approvals == 1
    assert production.auto_rollback is True
    assert production.gates.checks == ()
    assert not development.auto_rollback and development.approvals == 0
    assert not any(stage.auto_promote for stage in pipeline.stages)  # a person opts in


def test_minimal_file_uses_defaults() -> None:
    pipeline = load(MINIMAL)

    development = pipeline.stage("development")
    assert development == Stage(
        name="development",
        namespace="development",
        allow=frozenset(LIFECYCLES),
        gates=development.gates,
    )
    assert development.gates.checks == () and development.gates.metrics == ()
    assert pipeline.stage("staging").gates.soak == timedelta(minutes=10)
    assert pipeline.stage("production").approvals == 1


def test_stage_allows_only_listed_lifecycles() -> None:
    staging = load(MINIMAL).stage("staging")

    assert staging.allows("beta")
    assert staging.allows("stable")
    assert not staging.allows("experimental")


def test_app_paths_and_tool_maps() -> None:
    pipeline = load(
        """\
        apiVersion: stageflow/v1
        apps:
          demo:
            path: apps/demo/
            flux: {staging: apps-staging}
            argocd: {production: demo-prod}
        stages:
          - name: staging
          - name: production
        """
    )

    demo = pipeline.app("demo")
    assert demo.path == "apps/demo"
    assert demo.base_path == "apps/demo/base"
    assert demo.overlay_path("staging") == "apps/demo/overlays/staging"
    assert dict(demo.flux) == {"staging": "apps-staging"}
    assert dict(demo.argocd) == {"production": "demo-prod"}


def test_freeze_windows_are_parsed() -> None:
    pipeline = load(
        MINIMAL
        + """\
    freeze_windows:
      - {name: weekend, cron: "0 18 * * 5", duration: 62h, timezone: Europe/Berlin}
      - {name: nightly, cron: "*/30 0-5 * jan-mar,dec mon-fri", duration: 30m}
"""
    )

    weekend, nightly = pipeline.stage("production").freeze_windows
    assert weekend == FreezeWindow(
        name="weekend", cron="0 18 * * 5", duration=timedelta(hours=62), timezone="Europe/Berlin"
    )
    assert nightly.timezone == "UTC"


def test_freeze_window_covers_its_duration_from_each_cron_match() -> None:
    weekend = FreezeWindow(
        name="weekend", cron="0 18 * * 5", duration=timedelta(hours=62), timezone="Europe/Berlin"
    )

    friday_evening = datetime(2025, 6, 6, 16, 0, tzinfo=UTC)  # 18:00 in Berlin (CEST)
    assert weekend.active_at(friday_evening)
    assert not weekend.active_at(friday_evening - timedelta(minutes=1))
    assert weekend.active_at(friday_evening + timedelta(hours=61, minutes=59))
    assert not weekend.active_at(friday_evening + timedelta(hours=62))
    start, end = weekend.occurrence_at(friday_evening + timedelta(days=1)) or (None, None)
    assert start == friday_evening and end == friday_evening + timedelta(hours=62)
    with pytest.raises(ValueError, match="timezone-aware"):
        weekend.active_at(datetime(2025, 6, 6, 18, 0))


def test_metric_gate_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="min, max or both"):
        MetricGate(name="x", query="up", min=None, max=None)


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        (600, timedelta(minutes=10)),
        ("600", timedelta(minutes=10)),
        (0, timedelta(0)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10 minutes", "m", "1m1h", "-5m", -1, "1.5h", "10M", True])
def test_parse_duration_refuses_bad_input(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(minutes=10), "10m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2), "2d"),
        (timedelta(0), "0s"),
        (timedelta(seconds=3661), "1h1m1s"),
    ],
)
def test_format_duration(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected
    assert parse_duration(expected) == td


# --- stage order and lookups -------------------------------------------------------------------


def test_stage_order() -> None:
    pipeline = load(MINIMAL)

    assert pipeline.first_stage.name == "development"
    assert pipeline.index("staging") == 1
    next_stage = pipeline.next_stage("development")
    assert next_stage is not None and next_stage.name == "staging"
    assert pipeline.next_stage("production") is None
    previous = pipeline.previous_stage("production")
    assert previous is not None and previous.name == "staging"
    assert pipeline.previous_stage("development") is None


def test_unknown_stage_is_not_found_and_lists_known_stages() -> None:
    pipeline = load(MINIMAL)

    with pytest.raises(NotFound) as caught:
        pipeline.stage("stagin")
    assert "development, staging, production" in caught.value.message
    assert "did you mean 'staging'" in caught.value.message
    with pytest.raises(NotFound):
        pipeline.next_stage("qa")
    with pytest.raises(NotFound):
        pipeline.index("qa")


def test_unknown_app_is_not_found_and_lists_known_apps() -> None:
    with pytest.raises(NotFound) as caught:
        load(MINIMAL).app("shop")

    assert "known apps: demo" in caught.value.message
    assert caught.value.code == "not_found"


# --- mistakes: every one names the key path and the line -------------------------------------


def assert_points_at(error: PipelineError, path: str, line: int) -> None:
    assert f"line {line}," in error.message
    assert f", {path}:" in error.message
    assert error.details == {"path": path, "line": line}
    assert error.code == "invalid_pipeline"


def test_unknown_key_suggests_the_closest_known_key() -> None:
    error = error_of(with_line(9, "    gate:"))

    assert_points_at(error, "stages[1].gate", 9)
    assert 'unknown key "gate"' in error.message
    assert "did you mean 'gates'?" in error.message


def test_unknown_top_level_key() -> None:
    error = error_of(with_line(1, "apiversion: stageflow/v1"))

    assert_points_at(error, "apiversion", 1)
    assert "did you mean 'apiVersion'?" in error.message


def test_bad_lifecycle() -> None:
    error = error_of(with_line(8, "    flags: {allow: [beta, stabel]}"))

    assert_points_at(error, "stages[1].flags.allow[1]", 8)
    assert '"stabel" is not a lifecycle' in error.message
    assert "experimental, beta or stable" in error.message


def test_duplicate_stage_name() -> None:
    error = error_of(with_line(12, "  - name: staging"))

    assert_points_at(error, "stages[2].name", 12)
    assert "already the name of stages[1]" in error.message


def test_bad_duration() -> None:
    error = error_of(with_line(11, "      soak: 10 minutes"))

    assert error.message == (
        'stageflow.yaml line 11, stages[1].gates.soak: "10 minutes" is not a duration; '
        "write it like 30s, 10m or 1h30m"
    )
    assert error.details == {"path": "stages[1].gates.soak", "line": 11}


def test_wrong_type_says_what_was_expected_and_found() -> None:
    error = error_of(with_line(13, "    approvals: one"))

    assert_points_at(error, "stages[2].approvals", 13)
    assert 'expected a whole number, found the string "one"' in error.message


def test_wrong_container_type() -> None:
    error = error_of(with_line(10, "      checks: smoke"))

    assert_points_at(error, "stages[1].gates.checks", 10)
    assert 'expected a list, found the string "smoke"' in error.message


def test_missing_api_version_points_at_the_document() -> None:
    error = error_of("\n".join(MINIMAL.splitlines()[1:]) + "\n")

    assert_points_at(error, "apiVersion", 1)
    assert "add apiVersion: stageflow/v1" in error.message


def test_wrong_api_version() -> None:
    error = error_of(with_line(1, "apiVersion: stageflow/v2"))

    assert_points_at(error, "apiVersion", 1)
    assert '"stageflow/v2" is not a supported apiVersion' in error.message


def test_missing_required_key_points_at_its_parent() -> None:
    error = error_of(with_line(4, "    flux: {}"))

    assert_points_at(error, "apps.demo.path", 3)
    assert "is missing" in error.message


def test_yaml_syntax_error_names_the_line() -> None:
    error = error_of(with_line(8, "    flags: {allow: [beta, stable}"))

    assert "stageflow.yaml line 8" in error.message
    assert "YAML syntax error" in error.message
    assert error.details["line"] == 8


def test_duplicate_yaml_key_is_a_pipeline_error() -> None:
    error = error_of(with_line(2, "apiVersion: stageflow/v1\napps:"))

    assert "stageflow.yaml line 2" in error.message
    assert 'duplicate key "apiVersion"' in error.message
    assert "keep only one" in error.message


@pytest.mark.parametrize("text", ["", "# nothing here yet\n"])
def test_empty_file(text: str) -> None:
    error = error_of(text)

    assert "stageflow.yaml: the file is empty" in error.message
    assert "apiVersion: stageflow/v1" in error.message


@pytest.mark.parametrize(
    ("line_no", "replacement", "path", "fragment"),
    [
        (3, "  Demo:", "apps.Demo", "is not a valid app name"),
        (4, "    path: /srv/demo", "apps.demo.path", "is not a relative path"),
        (4, "    path: apps/../../etc", "apps.demo.path", "leaves the repository"),
        (6, "  - name: Development", "stages[0].name", "is not a valid stage name"),
        (6, "  - {name: dev, namespace: dev_ns}", "stages[0].namespace", "valid namespace name"),
        (10, "      checks: [Smoke]", "stages[1].gates.checks[0]", "not a valid check kind"),
        (10, "      checks: [smoke, smoke]", "stages[1].gates.checks[1]", "listed twice"),
        (13, "    approvals: -1", "stages[2].approvals", "is negative"),
        (13, "    auto_rollback: yes", "stages[2].auto_rollback", "expected true or false"),
        (13, "    auto_promote: 1", "stages[2].auto_promote", "expected true or false"),
        (13, "    approvals: true", "stages[2].approvals", "found the boolean true"),
    ],
)
def test_value_mistakes(line_no: int, replacement: str, path: str, fragment: str) -> None:
    error = error_of(with_line(line_no, replacement))

    assert_points_at(error, path, line_no)
    assert fragment in error.message


def test_metric_gate_mistakes_under_gates() -> None:
    lines = MINIMAL.splitlines()
    # Put the metrics under staging's gates (after line 11, soak).
    head, tail = lines[:11], lines[11:]

    def with_metrics(*entries: str) -> str:
        return "\n".join([*head, "      metrics:", *entries, *tail]) + "\n"

    no_bound = error_of(with_metrics("        - {name: error-rate, query: up}"))
    assert_points_at(no_bound, "stages[1].gates.metrics[0]", 13)
    assert "neither min nor max" in no_bound.message

    duplicate = error_of(
        with_metrics(
            "        - {name: error-rate, query: up, max: 1}",
            "        - {name: error-rate, query: up, max: 2}",
        )
    )
    assert_points_at(duplicate, "stages[1].gates.metrics[1].name", 14)
    assert "already the name of stages[1].gates.metrics[0]" in duplicate.message

    inverted = error_of(with_metrics("        - {name: e, query: up, min: 2, max: 1}"))
    assert_points_at(inverted, "stages[1].gates.metrics[0].min", 13)

    not_a_number = error_of(with_metrics("        - {name: e, query: up, max: lots}"))
    assert_points_at(not_a_number, "stages[1].gates.metrics[0].max", 13)
    assert 'expected a number, found the string "lots"' in not_a_number.message


@pytest.mark.parametrize(
    ("window", "path", "fragment"),
    [
        ('{name: w, cron: "0 18 * *", duration: 1h}', "cron", "has 4 fields, not 5"),
        ('{name: w, cron: "61 * * * *", duration: 1h}', "cron", "outside 0-59"),
        ('{name: w, cron: "0 5-2 * * *", duration: 1h}', "cron", "runs backwards"),
        ('{name: w, cron: "*/0 * * * *", duration: 1h}', "cron", "must be 1 or more"),
        ('{name: w, cron: "0 0 * * *", duration: soon}', "duration", "is not a duration"),
        ('{name: w, cron: "0 0 * * *", duration: 0}', "duration", "longer than 0s"),
        (
            '{name: w, cron: "0 0 * * *", duration: 1h, timezone: Mars/Base}',
            "timezone",
            "time zone",
        ),
        (
            '{name: w, cron: "0 0 * * *", duration: 1h, timezon: UTC}',
            "timezon",
            "did you mean 'timezone'",
        ),
    ],
)
def test_freeze_window_mistakes(window: str, path: str, fragment: str) -> None:
    error = error_of(MINIMAL + "    freeze_windows:\n      - " + window + "\n")

    assert_points_at(error, f"stages[2].freeze_windows[0].{path}", 15)
    assert fragment in error.message


def test_tool_maps_must_name_known_stages() -> None:
    error = error_of(with_line(4, "    path: apps/demo\n    flux: {stagin: apps-staging}"))

    assert_points_at(error, "apps.demo.flux.stagin", 5)
    assert "did you mean 'staging'?" in error.message


def test_parse_pipeline_without_line_information() -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline({"apiVersion": "stageflow/v1", "apps": {}, "stages": []}, source="x.yaml")

    assert caught.value.message.startswith("x.yaml, stages: lists no stages;")
    assert caught.value.details == {"path": "stages", "line": None}


def test_parse_pipeline_accepts_plain_data() -> None:
    pipeline = parse_pipeline(
        {
            "apiVersion": "stageflow/v1",
            "apps": {"demo": {"path": "apps/demo"}},
            "stages": [{"name": "dev", "gates": {"soak": 30}}],
        }
    )

    assert pipeline.first_stage.gates.soak == timedelta(seconds=30)
