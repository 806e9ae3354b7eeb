"""Options gathered into records (options.gathered) and the API bodies those records make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
import pytest
from click.testing import CliRunner

from stageflow.cli.flags import FlagSettings, NewFlag
from stageflow.cli.options import gathered
from stageflow.cli.output import Failure
from stageflow.cli.promotions import PromotionRequest, Waiting
from stageflow.cli.reports import CheckResult


@dataclass(frozen=True)
class Window:
    start: str
    end: str | None


def test_gathered_options_arrive_as_one_record_beside_the_others() -> None:
    seen: list[Any] = []

    @click.command()
    @click.argument("name")
    @click.option("--start", required=True)
    @click.option("--end")
    @gathered("window", Window)
    def command(name: str, window: Window) -> None:
        seen.append((name, window))

    result = CliRunner().invoke(command, ["deploy", "--start", "08:00"])

    assert result.exit_code == 0, result.output
    assert seen == [("deploy", Window(start="08:00", end=None))]


def test_a_promotion_request_sends_what_was_given() -> None:
    request = PromotionRequest(
        to="staging", from_=None, dry_run=True, images=False, flags="a,,b", reason=None
    )

    assert request.body() == {
        "to": "staging",
        "images": False,
        "dry_run": True,
        "flags": ["a", "b"],
    }
    named = PromotionRequest("production", "staging", False, True, "none", "release 1.5")
    assert named.body() == {
        "to": "production",
        "images": True,
        "dry_run": False,
        "flags": "none",
        "from": "staging",
        "reason": "release 1.5",
    }


def test_waiting_keeps_the_three_wait_options() -> None:
    assert Waiting(wait=True, timeout=600.0, interval=2.0).timeout == 600.0


def test_a_new_flag_reads_its_variants_as_json() -> None:
    flag = NewFlag("beta", variants='{"red": "#f00"}', default="red", description=None)

    assert flag.body("colour") == {
        "key": "colour",
        "lifecycle": "beta",
        "variants": {"red": "#f00"},
        "defaultVariant": "red",
    }
    with pytest.raises(Failure) as caught:
        NewFlag("beta", variants="{red", default=None, description=None).body("colour")
    assert "--variants is not JSON" in caught.value.line()


def test_flag_settings_must_change_something() -> None:
    assert FlagSettings(targeting="null", default=None).body() == {"targeting": None}
    with pytest.raises(click.UsageError):
        FlagSettings(targeting=None, default=None).body()


def test_a_check_result_leaves_out_what_was_not_given() -> None:
    check = CheckResult("smoke", "passed", revision=None, summary=None, url="https://ci/1")

    assert check.body("3f2a9c1") == {
        "kind": "smoke",
        "revision": "3f2a9c1",
        "status": "passed",
        "url": "https://ci/1",
    }
