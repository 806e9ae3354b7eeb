"""`stageflow events` and `stageflow notifications` against a real `stageflow serve`: events made
by real writes, deliveries sent by the real notifier to a real receiver, and a follower that
outlives its server."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import pytest

from stageflow.adapters.git import seed_bare_remote
from stageflow.cli.connection import Api
from stageflow.cli.events import Poller
from stageflow.cli.output import UNAVAILABLE, Failure
from tests.cli.conftest import COMMAND_TIMEOUT, Cli, Server, free_port
from tests.conftest import SEED

NOTIFY = """
notify:
  - name: receiver
    kind: webhook
    url_env: STAGEFLOW_NOTIFY_RECEIVER_URL
    secret_env: STAGEFLOW_NOTIFY_SECRET
    on: [state_changed]
  - name: broken
    kind: webhook
    url_env: STAGEFLOW_NOTIFY_BROKEN_URL
    secret_env: STAGEFLOW_NOTIFY_SECRET
    on: [state_changed]
"""


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that takes every POST."""

    got: list[bytes] = []

    def do_POST(self) -> None:
        self.got.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        """Quiet: the test's output is its assertions."""


def notifying_remote(root: Path) -> Path:
    """The starter repo with two `notify:` targets: one that answers, one that nobody serves."""
    work = root / "seed"
    shutil.copytree(SEED, work)
    pipeline = work / "stageflow.yaml"
    pipeline.write_text(pipeline.read_text() + NOTIFY)
    bare = root / "gitops.git"
    seed_bare_remote(work, bare, "main")
    return bare


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}/hook"
    http.shutdown()
    http.server_close()


@pytest.fixture(scope="module")
def notifying(tmp_path_factory: pytest.TempPathFactory, receiver: str) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-events")
    running = Server(
        root / "var",
        root / "serve.log",
        STAGEFLOW_GIT_URL=str(notifying_remote(root)),
        STAGEFLOW_NOTIFY_INTERVAL="0.2",
        STAGEFLOW_NOTIFY_BACKOFF="0.1",
        STAGEFLOW_NOTIFY_MAX_ATTEMPTS="2",
        STAGEFLOW_NOTIFY_RECEIVER_URL=receiver,
        STAGEFLOW_NOTIFY_SECRET="cli-events-test",
        STAGEFLOW_NOTIFY_BROKEN_URL=f"http://127.0.0.1:{free_port()}/nobody",
    )
    yield running
    running.stop()


@pytest.fixture
def client(notifying: Server, tmp_path: Path) -> Cli:
    return Cli(tmp_path, notifying.url)


class Lines:
    """A running command's stdout and stderr, line by line as it prints them (threads read the
    pipes, so a test waits for a line with a bound instead of blocking on a read)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((process.stdout, self.out), (process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *_exc: object) -> None:
        """End the command if a failed assertion left it running; close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(COMMAND_TIMEOUT)
        for reader in self.readers:
            reader.join(COMMAND_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    @staticmethod
    def _read(stream: IO[str] | None, into: queue.Queue[str]) -> None:
        assert stream is not None
        for line in stream:
            into.put(line)

    def wait_for(self, into: queue.Queue[str], wanted: Callable[[str], bool]) -> str:
        """The first line from ``into`` that ``wanted`` accepts (the lines before are kept)."""
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = into.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.said.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"no such line in {COMMAND_TIMEOUT}s; got {self.said}")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as a terminal sends it; the exit status and the rest of stderr."""
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(COMMAND_TIMEOUT)
        for reader in self.readers:
            reader.join(COMMAND_TIMEOUT)  # the pipes' ends are read: the queues hold the rest
        rest = []
        while not self.err.empty():
            rest.append(self.err.get())
        return status, "".join(rest)


def event_of(kind: str) -> Callable[[str], bool]:
    return lambda line: json.loads(line)["kind"] == kind


def last_event_id(cli: Cli) -> int:
    after = 0
    while True:
        page = cli("events", "--after", str(after), "--limit", "1000", "-o", "json").json()
        if page["items"]:
            after = page["items"][-1]["id"]
        if page["next"] is None:
            return after
        after = page["next"]


def test_events_show_a_flag_toggle_and_a_promotion(client: Cli):
    after = last_event_id(client)
    toggled = client("flags", "disable", "demo", "beta_api", "--stage", "development", "-o", "json")
    assert toggled.status == 0, toggled.err
    revision = toggled.json()["revision"]
    promoted = client("promote", "demo", "--to", "staging", "-o", "json")
    assert promoted.status == 1, promoted.err  # blocked: development has no smoke check yet
    promotion = promoted.json()

    answer = client("events", "--app", "demo", "--after", str(after), "-o", "json")
    assert answer.status == 0, answer.err
    items = answer.json()["items"]
    assert answer.json()["next"] is None
    kinds = [e["kind"] for e in items]
    assert kinds[0] == "state_changed" and "promotion_blocked" in kinds, kinds
    assert [e["id"] for e in items] == sorted(e["id"] for e in items)  # oldest first
    changed = items[0]
    assert (changed["app"], changed["stage"], changed["revision"]) == (
        "demo",
        "development",
        revision,
    )
    assert changed["actor"] == "admin"
    opened = next(e for e in items if e["kind"] == "promotion_blocked")
    assert opened["stage"] == "staging" and str(promotion["id"]) in str(opened["subject"])

    only = client("events", "--after", str(after), "--kind", "promotion_blocked", "-o", "json")
    assert [e["kind"] for e in only.json()["items"]] == ["promotion_blocked"]
    paged = client("events", "--after", str(after), "--limit", "1", "-o", "json").json()
    assert len(paged["items"]) == 1 and paged["next"] == changed["id"]

    table = client("events", "--after", str(after))
    assert table.status == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "ID", "TIME", "KIND", "APP", "STAGE", "SUBJECT", "REVISION", "ACTOR",
    ]  # fmt: skip
    first = lines[1].split()
    assert first[0] == str(changed["id"]) and first[2:4] == ["state_changed", "demo"]
    assert revision[:8] in lines[1] and lines[1].rstrip().endswith("admin")
    more = client("events", "--after", str(after), "--limit", "1")
    assert f"stageflow events --after {changed['id']}" in more.err
    wrong = client("events", "--kind", "nonsense")
    assert wrong.status == 2 and "nonsense" in wrong.err


def test_notifications_show_delivered_and_failed_deliveries(client: Cli):
    toggled = client("flags", "enable", "demo", "beta_api", "--stage", "development", "-o", "json")
    assert toggled.status == 0, toggled.err
    event = client("events", "--kind", "state_changed", "--limit", "1000", "-o", "json")
    ident = event.json()["items"][-1]["id"]
    deadline = time.monotonic() + COMMAND_TIMEOUT
    settled: dict[str, dict] = {}
    while time.monotonic() < deadline and len(settled) < 2:  # the notifier runs every 0.2s
        found = client("notifications", "-o", "json").json()["items"]
        settled = {
            d["target"]: d for d in found if d["event_id"] == ident and d["status"] != "pending"
        }
        time.sleep(0.2)
    assert settled["receiver"]["status"] == "delivered"
    assert settled["receiver"]["attempts"] == 1 and settled["receiver"]["last_error"] is None
    broken = settled["broken"]
    assert broken["status"] == "failed" and broken["attempts"] == 2 and broken["last_error"]
    assert any(str(ident).encode() in body for body in Receiver.got)

    only = client("notifications", "--status", "failed", "--target", "broken", "-o", "json")
    assert only.status == 0, only.err
    assert only.json()["items"] and {(d["target"], d["status"]) for d in only.json()["items"]} == {
        ("broken", "failed")
    }

    table = client("notifications", "--target", "broken")
    assert table.status == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "ID", "EVENT", "TARGET", "KIND", "STATUS", "ATTEMPTS", "LAST", "ERROR", "NEXT",
    ]  # fmt: skip
    row = next(line for line in lines if line.split()[0] == str(broken["id"]))
    assert row.split()[1:6] == [str(ident), "broken", "state_changed", "failed", "2"]
    shown = " ".join(broken["last_error"].split())
    assert (shown if len(shown) <= 60 else shown[:59] + "…") in row
    yaml = client("notifications", "--status", "delivered", "-o", "yaml")
    assert yaml.status == 0 and "status: delivered" in yaml.out


def test_follow_prints_an_event_made_after_it_started_until_ctrl_c(client: Cli):
    after = last_event_id(client)
    started = client.start(
        "events", "--follow", "--after", str(after), "--interval", "0.2", "-o", "json"
    )
    with Lines(started) as follower:
        held = client("hold", "demo", "--stage", "staging", "--reason", "watch me")
        assert held.status == 0, held.err
        shown = json.loads(follower.wait_for(follower.out, event_of("stage_held")))
        assert shown["id"] > after and (shown["app"], shown["stage"]) == ("demo", "staging")
        released = client("release", "demo", "--stage", "staging")
        assert released.status == 0, released.err
        follower.wait_for(follower.out, event_of("stage_released"))
        status, err = follower.interrupt()
    assert status == 0
    assert "stopped following" in err and "Traceback" not in err


def test_follow_for_a_while_pages_through_and_ends_by_itself(client: Cli):
    for reason in ("one", "two"):
        client("freeze", "production", "--reason", reason)
        client("unfreeze", "production")
    after = last_event_id(client) - 4
    # two events a page: --follow asks again at once until it has read them all
    done = client("events", "--follow", "--after", str(after), "--limit", "2", "--for", "0.5s")
    assert done.status == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "TIME", "KIND"]
    kinds = [line.split()[2] for line in lines[1:]]
    assert kinds == ["stage_frozen", "stage_thawed", "stage_frozen", "stage_thawed"]
    assert [line for line in lines if line.startswith("ID ")] == [lines[0]]  # one header


def test_a_token_that_may_not_read_is_refused(client: Cli):
    made = client(
        "tokens", "create", "--name", "gone", "--owner", "olga", "--role", "viewer", "-o", "json"
    )
    assert made.status == 0, made.err
    secret = made.json()["token"]
    assert client("events", token=secret).status == 0
    assert client("tokens", "revoke", made.json()["id"]).status == 0
    for command in (["events"], ["events", "--follow"], ["notifications"]):
        refused = client(*command, token=secret)
        assert refused.status == 4, (command, refused.err)
        assert refused.out == "" and refused.err.count("\n") == 1
        assert refused.err.startswith("stageflow: error [token_")
        assert "check the token" in refused.err and secret not in refused.err


def test_follow_survives_its_server_going_away(tmp_path: Path):
    root = tmp_path / "server"
    root.mkdir()
    settings = {"STAGEFLOW_GIT_URL": str(notifying_remote(root)), "STAGEFLOW_NOTIFY_INTERVAL": "0"}
    first = Server(root / "var", root / "serve.log", **settings)
    cli = Cli(tmp_path, first.url)
    try:
        assert cli("freeze", "production", "--reason", "before").status == 0
        after = last_event_id(cli)
        started = cli.start(
            "events", "--follow", "--after", str(after - 1), "--interval", "0.2", "-o", "json"
        )
        with Lines(started) as follower:
            follower.wait_for(follower.out, event_of("stage_frozen"))  # it is following now
            first.stop()
            lost = follower.wait_for(follower.err, lambda line: "still following" in line)
            assert lost.startswith("stageflow: ") and first.url in lost, lost
            again = Server(root / "var", root / "serve.log", port=first.port, **settings)
            try:
                assert cli("unfreeze", "production").status == 0
                thawed = json.loads(follower.wait_for(follower.out, event_of("stage_thawed")))
                assert thawed["id"] == after + 1  # nothing lost, nothing printed twice
                follower.wait_for(follower.err, lambda line: "answers again" in line)
                status, err = follower.interrupt()
            finally:
                again.stop()
        assert status == 0 and "Traceback" not in err
        assert [line for line in follower.said if "still following" in line] == [lost]
        printed = [json.loads(line)["id"] for line in follower.said if line.startswith("{")]
        assert printed == [after, after + 1]
    finally:
        first.stop()


def test_an_unreachable_server_is_said_once_and_asked_less_often(capsys):
    api = Api(f"http://127.0.0.1:{free_port()}", "sf_any")  # nothing listens there
    poller = Poller(api, {"limit": 10}, after=7, interval=0.1)
    waits = []
    try:
        for _ in range(6):
            poller.drain(lambda _items: None, retry=True)
            waits.append(round(poller.wait, 3))
        with pytest.raises(Failure) as refused:
            poller.drain(lambda _items: None, retry=False)  # the first request: no retries
    finally:
        api.close()
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # doubling, at most 10 x --interval
    assert refused.value.status == UNAVAILABLE and poller.after == 7
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and "cannot reach" in said[0] and "still following" in said[0]
