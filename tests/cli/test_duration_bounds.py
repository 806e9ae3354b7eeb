"""Duration options refuse what would overflow a sleep or poll the server in a busy loop."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stageflow.cli import cli

TOO_LONG = "99999999999999h"  # time.sleep overflows on it (a traceback before the bound)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["events", "--follow", "--interval", TOO_LONG], "--interval"),
        (["events", "--follow", "--interval", "0"], "--interval"),
        (["events", "--follow", "--interval", "5ms"], "--interval"),
        (["events", "--follow", "--for", TOO_LONG], "--for"),
        (["promotions", "wait", "7", "--timeout", TOO_LONG], "--timeout"),
        (["promotions", "wait", "7", "--interval", "0s"], "--interval"),
        (["promote", "demo", "--to", "staging", "--wait", "--interval", TOO_LONG], "--interval"),
    ],
)
def test_a_duration_out_of_bounds_is_a_usage_error_naming_the_option(
    args: list[str], named: str
) -> None:
    result = CliRunner().invoke(cli, args, env={"STAGEFLOW_URL": "http://127.0.0.1:9"})

    assert result.exit_code == 2, result.output
    assert named in result.output and "outside" in result.output, result.output
    assert not isinstance(result.exception, OverflowError)


def test_a_duration_within_bounds_is_taken_in_seconds() -> None:
    from stageflow.cli.options import MAX_DURATION, Duration

    assert Duration().convert("90s", None, None) == 90.0
    assert Duration().convert("1.5m", None, None) == 90.0
    assert Duration().convert(f"{MAX_DURATION}s", None, None) == MAX_DURATION
