"""The command line's parts without a server: help, parsing, errors, config, following."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from rich.console import Console

from stageflow.cli import cli, main, promotions
from stageflow.cli.connection import Config, Connection, failure_from
from stageflow.cli.options import parse_duration
from stageflow.cli.output import FORBIDDEN, REFUSED, UNAVAILABLE, Failure


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("command", every_command(cli), ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example:" in text and "stageflow " in text.split("Example:")[1]


def test_usage_errors_exit_2(capsys):
    assert main(["promote", "demo"]) == 2
    assert "Missing option '--to'" in capsys.readouterr().err
    assert main(["images", "set", "demo", "no-tag-here", "--token", "t"]) == 2
    assert main(["promote", "demo", "--to", "x", "--timeout", "soon"]) == 2
    assert main(["status", "--server", "stageflow.example", "--token", "t"]) == 2
    assert "invalid_server" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("250ms", 0.25)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def response(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "code", "exit_status"),
    [
        (409, "nothing_to_promote", REFUSED),
        (422, "policy_violation", REFUSED),
        (404, "not_found", REFUSED),
        (401, "token_invalid", FORBIDDEN),
        (403, "self_approval", FORBIDDEN),
        (429, "rate_limited", UNAVAILABLE),
        (503, "git_unavailable", UNAVAILABLE),
    ],
)
def test_server_errors_map_to_exit_statuses(status, code, exit_status):
    body = {"error": {"code": code, "message": "what and how to fix", "details": {}}}
    failure = failure_from(response(status, body), "http://sf")
    assert failure.status == exit_status
    assert failure.code == code
    assert failure.line().startswith(f"stageflow: error [{code}]: ")
    assert "what and how to fix" in failure.line()
    assert "\n" not in failure.line()


def test_a_policy_violation_names_the_policies():
    body = {
        "error": {
            "code": "policy_violation",
            "message": "refused by policy",
            "details": {"violations": [{"policy": "pinned-images", "message": "no :latest"}]},
        }
    }
    assert "pinned-images: no :latest" in failure_from(response(422, body), "x").message


def test_contexts_are_saved_private_and_chosen(tmp_path: Path, monkeypatch):
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(path))
    for name in ("STAGEFLOW_URL", "STAGEFLOW_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    Config(
        current="prod",
        contexts={
            "prod": {"server": "https://sf.example", "token": 'sf_"quoted"\\'},
            "local": {"server": "http://127.0.0.1:8080", "token": "sf_local"},
        },
    ).save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Connection().resolve() == ("https://sf.example", 'sf_"quoted"\\')
    assert Connection(context="local").resolve() == ("http://127.0.0.1:8080", "sf_local")
    assert Connection(token="sf_flag").resolve() == ("https://sf.example", "sf_flag")
    monkeypatch.setenv("STAGEFLOW_URL", "http://env:1")
    assert Connection().resolve()[0] == "http://env:1"
    with pytest.raises(Failure) as refused:
        Connection(context="nope").resolve()
    assert refused.value.status == 2


class FakeApi:
    """Answers a promotion's states in turn; records the calls."""

    def __init__(self, states: list[str], evaluate_error: Failure | None = None) -> None:
        self.states = states
        self.calls: list[tuple[str, str]] = []
        self.evaluate_error = evaluate_error

    def _next(self) -> dict[str, Any]:
        status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        gate = {"name": "soak", "kind": "soak", "status": "passed", "message": "ok"}
        return {"id": 7, "app": "demo", "from": "staging", "to": "production", "status": status,
                "gates": [gate]}  # fmt: skip

    def get(self, path: str, **_: Any) -> dict[str, Any]:
        self.calls.append(("GET", path))
        return self._next()

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        self.calls.append(("POST", path))
        if self.evaluate_error is not None:
            raise self.evaluate_error
        return self._next()


def test_following_re_evaluates_a_blocked_promotion_until_it_settles(capsys):
    api = FakeApi(["blocked", "blocked", "applied"])
    start = {"id": 7, "status": "blocked", "gates": [], "app": "demo", "from": "a", "to": "b"}
    done = promotions.follow(api, start, timeout=5, interval=0.01)  # type: ignore[arg-type]
    assert done["status"] == "applied"
    assert api.calls == [("POST", "/promotions/7/evaluate")] * 3
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["promotion #7: blocked", "promotion #7: blocked (soak=passed)",
                     "promotion #7: applied (soak=passed)"]  # fmt: skip


def test_a_follower_that_may_not_evaluate_polls(capsys):
    denied = Failure(FORBIDDEN, "no", code="missing_role")
    api = FakeApi(["blocked", "pending_approval", "cancelled"], evaluate_error=denied)
    start = {"id": 7, "status": "blocked", "gates": [], "app": "demo", "from": "a", "to": "b"}
    done = promotions.follow(api, start, timeout=5, interval=0.01)  # type: ignore[arg-type]
    assert done["status"] == "cancelled"
    assert api.calls[0] == ("POST", "/promotions/7/evaluate")
    assert all(method == "GET" for method, _ in api.calls[1:])


def test_following_runs_out_of_time_with_exit_3(monkeypatch):
    api = FakeApi(["pending_approval"])
    start = {"id": 7, "status": "pending_approval", "gates": [], "app": "d", "from": "a", "to": "b"}
    with pytest.raises(Failure) as late:
        promotions.follow(api, start, timeout=0.05, interval=0.01)  # type: ignore[arg-type]
    assert late.value.status == UNAVAILABLE and late.value.code == "wait_timeout"


def test_on_a_terminal_the_gates_show_live(monkeypatch):
    screen = Console(force_terminal=True, width=100, record=True)
    monkeypatch.setattr(promotions, "stderr", lambda: screen)
    api = FakeApi(["blocked", "applied"])
    start = {"id": 7, "status": "blocked", "gates": [], "app": "demo", "from": "a", "to": "b"}
    promotions.follow(api, start, timeout=5, interval=0.01)  # type: ignore[arg-type]
    shown = screen.export_text()
    assert "promotion #7" in shown and "soak" in shown and "applied" in shown


def test_local_commands_answer_json_too(tmp_path: Path, capsys):
    assert main(["settings", "-o", "json"]) == 0
    names = [row["variable"] for row in json.loads(capsys.readouterr().out)]
    assert "STAGEFLOW_DATA_DIR" in names
    assert main(["init", str(tmp_path / "gitops"), "-o", "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["action"] == "created" and "stageflow.yaml" in made["files"]
