"""Notifications over real HTTP to a receiver on loopback: Slack-shaped, signed webhook,
CloudEvents; at least once, in order, through a receiver outage and a restart of Stageflow."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stageflow import bootstrap
from stageflow.adapters.notifications import HttpSender
from stageflow.services.notifier import Notifier, Options
from tests.builders import remote_head, third_party_commit
from tests.conftest import SEED
from tests.e2e.test_evidence import _to_production
from tests.e2e.test_promotions import Clock

SECRET = "webhook-secret-0123"
NOTIFY = """notify:
  - name: team-slack
    kind: slack
    url_env: SF_TEST_SLACK_URL
    on: [check_failed, rollback]
  - name: audit-hook
    kind: webhook
    url_env: SF_TEST_HOOK_URL
    secret_env: SF_TEST_HOOK_SECRET
    on: [check_failed, rollback, promotion_applied]
stages:
"""
PROD_NOTIFY = """  - name: production
    namespace: production
    notify:
      - {name: prod-events, kind: cloudevents, url_env: SF_TEST_CE_URL, on: [rollback]}
"""


class Receiver:
    """An HTTP receiver on 127.0.0.1 that keeps every request; ``down`` answers 503."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for p, headers, body in self.received if p == path]


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    made = Receiver()
    monkeypatch.setenv("SF_TEST_SLACK_URL", made.url + "/slack")
    monkeypatch.setenv("SF_TEST_HOOK_URL", made.url + "/hook")
    monkeypatch.setenv("SF_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("SF_TEST_CE_URL", made.url + "/ce")
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture
def clock(stageflow):
    sf, _ = stageflow
    return Clock(sf)


def _configure(remote: Path) -> None:
    text = (SEED / "stageflow.yaml").read_text().replace("stages:\n", NOTIFY, 1)
    text = text.replace("  - name: production\n    namespace: production\n", PROD_NOTIFY, 1)
    third_party_commit(remote, "stageflow.yaml", text, "notify the team")


def _notifier(sf) -> Notifier:
    return Notifier(sf, HttpSender(timeout=5), Options(base_url="https://sf.example", backoff=0.01))


def _until_quiet(notifier: Notifier, clock: Clock, rounds: int = 20) -> None:
    for _ in range(rounds):
        done = notifier.round()
        clock.advance(seconds=1)  # past any backoff
        if not (done.enqueued or done.delivered or done.retried):
            return


def _event_ids(receiver: Receiver, path: str) -> list[int]:
    return [int(headers["x-stageflow-event-id"]) for headers, _ in receiver.at(path)]


def test_a_failed_smoke_check_and_its_rollback_reach_slack_and_a_signed_webhook(
    client, anonymous, clock, stageflow, gitops_remote, receiver
):
    sf, _ = stageflow
    _configure(gitops_remote)
    _, production = _to_production(client, anonymous, clock)
    failed = client.post(
        "/api/v1/apps/demo/stages/production/checks",
        json={"kind": "smoke", "revision": production["revision"], "status": "failed"},
    )
    assert failed.get_json()["rollback"] is not None
    _until_quiet(_notifier(sf), clock)

    slack = [json.loads(body) for _, body in receiver.at("/slack")]
    assert len(slack) == 2
    assert "check failed in demo/production" in slack[0]["text"]
    assert "rollback in demo/production" in slack[1]["text"]
    assert (
        f"<https://sf.example/promotions/{production['id']}|open in Stageflow>" in slack[1]["text"]
    )

    hooks = receiver.at("/hook")
    kinds = []
    for headers, body in hooks:
        # as the receiver checks it: HMAC-SHA256 of the raw body with the shared secret
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-signature"], f"sha256={expected}")
        message = json.loads(body)
        assert headers["x-stageflow-event"] == message["kind"]
        kinds.append(message["kind"])
    assert kinds == ["promotion_applied", "promotion_applied", "check_failed", "rollback"]
    assert _event_ids(receiver, "/hook") == sorted(_event_ids(receiver, "/hook"))

    ((ce_headers, ce_body),) = receiver.at("/ce")  # only production's own rollback
    cloud = json.loads(ce_body)
    assert ce_headers["content-type"].startswith("application/cloudevents+json")
    assert cloud["specversion"] == "1.0" and cloud["type"] == "dev.stageflow.rollback"
    assert cloud["subject"] == "demo/production" and cloud["data"]["kind"] == "rollback"

    listed = client.get("/api/v1/notifications?limit=100").get_json()["items"]
    assert {n["status"] for n in listed} == {"delivered"}
    assert len(listed) == 2 + 4 + 1


def test_a_receiver_down_gets_everything_after_it_comes_back_even_across_a_restart(
    client, anonymous, clock, stageflow, settings, gitops_remote, receiver
):
    sf, _ = stageflow
    _configure(gitops_remote)
    receiver.down = True
    _, production = _to_production(client, anonymous, clock)
    client.post(
        "/api/v1/apps/demo/stages/production/checks",
        json={"kind": "smoke", "revision": production["revision"], "status": "failed"},
    )
    notifier = _notifier(sf)
    for _ in range(3):
        notifier.round()
        clock.advance(seconds=1)
    pending = client.get("/api/v1/notifications?status=pending").get_json()["items"]
    hook = sorted((n for n in pending if n["target"] == "audit-hook"), key=lambda n: n["id"])
    assert [n["attempts"] for n in hook] == [3, 0, 0, 0]  # the rest wait behind the first
    assert hook[0]["last_error"] == "the receiver answered HTTP 503"
    assert receiver.received == []
    # the shape API.md names: {id, event, target, status, attempts, last_error, next_attempt_at}
    first = hook[0]
    assert first["event"] == first["event_id"] and isinstance(first["event"], int)
    assert first["next_attempt_at"] is not None and first["next_attempt_at"] == first["next_at"]
    assert first["status"] == "pending" and first["target"] == "audit-hook"

    # Stageflow restarts (a new process: nothing in memory), then the receiver comes back
    restarted, _ = bootstrap.build(settings)
    try:
        restarted.clock = lambda: clock.now
        receiver.down = False
        _until_quiet(_notifier(restarted), clock)
    finally:
        restarted.close()
    ids = _event_ids(receiver, "/hook")
    assert ids == sorted(set(ids))  # in order, each once
    assert [json.loads(b)["kind"] for _, b in receiver.at("/hook")][-2:] == [
        "check_failed",
        "rollback",
    ]
    assert len(receiver.at("/slack")) == 2
    assert client.get("/api/v1/notifications?status=pending").get_json()["items"] == []


def test_a_missing_variable_is_a_visible_failure_and_never_blocks_a_write(
    client, clock, stageflow, gitops_remote, receiver, monkeypatch
):
    sf, _ = stageflow
    _configure(gitops_remote)
    monkeypatch.delenv("SF_TEST_HOOK_SECRET")
    checked = client.post(
        "/api/v1/apps/demo/stages/development/checks",
        json={"kind": "smoke", "revision": remote_head(gitops_remote), "status": "failed"},
    )
    assert checked.status_code == 201  # the write does not wait for any receiver
    notifier = Notifier(sf, HttpSender(timeout=5), Options(backoff=0.01, max_attempts=2))
    for _ in range(3):
        notifier.round()
        clock.advance(seconds=1)
    hook = client.get("/api/v1/notifications?target=audit-hook").get_json()["items"]
    assert [n["status"] for n in hook] == ["failed"]
    assert "SF_TEST_HOOK_SECRET is not set" in hook[0]["last_error"]
    assert len(receiver.at("/slack")) == 1  # the other target is not held up
