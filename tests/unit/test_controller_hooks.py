"""Controller hooks: their stageflow.yaml syntax, and the requests Argo CD and Flux are sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from textwrap import dedent, indent
from typing import Any

import pytest

from stageflow.adapters.controller_hooks import (
    HookDelivery,
    HookOptions,
    argocd_request,
    deliver,
    flux_request,
)
from stageflow.adapters.pipeline_file import load_pipeline
from stageflow.domain.errors import PipelineError
from stageflow.domain.hooks import (
    ChangedPaths,
    ControllerHook,
    HookCall,
    HookOutcome,
    Restore,
    missing_variables,
)

PIPELINE = """\
apiVersion: stageflow/v1
apps:
  demo: {{path: apps/demo}}
stages:
  - name: production
    controller_hooks:
{hooks}
"""


def hooks_of(hooks: str) -> tuple[ControllerHook, ...]:
    text = PIPELINE.format(hooks=indent(dedent(hooks), " " * 6))
    return load_pipeline(text).stages[0].controller_hooks


def error_of(hooks: str) -> str:
    with pytest.raises(PipelineError) as caught:
        hooks_of(hooks)
    return caught.value.message


def test_hooks_are_parsed_with_their_defaults() -> None:
    hooks = hooks_of(
        """\
              - kind: argocd
                url_env: PROD_ARGOCD
              - kind: argocd
                url_env: PROD_ARGOCD_2
                secret_env: PROD_ARGOCD_SECRET
                repository_url: https://github.com/acme/gitops
              - kind: flux
                url_env: PROD_FLUX
                secret_env: PROD_FLUX_TOKEN
              - {kind: flux, url_env: PROD_FLUX_OPEN}
        """
    )

    assert hooks == (
        ControllerHook("argocd", "PROD_ARGOCD"),
        ControllerHook(
            "argocd", "PROD_ARGOCD_2", "PROD_ARGOCD_SECRET", "https://github.com/acme/gitops"
        ),
        ControllerHook("flux", "PROD_FLUX", "PROD_FLUX_TOKEN", flux_type="generic-hmac"),
        ControllerHook("flux", "PROD_FLUX_OPEN", flux_type="generic"),
    )


def test_a_stage_without_hooks_has_none() -> None:
    text = PIPELINE.format(hooks="").replace("    controller_hooks:\n", "")
    assert load_pipeline(text).stages[0].controller_hooks == ()


@pytest.mark.parametrize(
    ("hooks", "says"),
    [
        ("- {kind: jenkins, url_env: X}", 'line 7, stages[0].controller_hooks[0].kind: "jenkins"'),
        ("- {url_env: X}", "controller_hooks[0].kind: is missing"),
        ("- {kind: argocd}", "controller_hooks[0].url_env: is missing"),
        (
            "- {kind: argocd, url_env: 'https://argocd.example.com/api/webhook'}",
            "is not an environment variable name",
        ),
        ("- {kind: argocd, url_env: X, type: generic}", 'unknown key "type"'),
        ("- {kind: flux, url_env: X, repository_url: https://x}", 'unknown key "repository_url"'),
        ("- {kind: flux, url_env: X, type: github}", '"github" is not a Receiver type'),
        ("- {kind: flux, url_env: X, type: generic-hmac}", "secret_env: is missing"),
        (
            "- {kind: argocd, url_env: X, repository_url: 'https://u:p@github.com/a/b'}",
            "carries credentials",
        ),
        ("argocd", "expected a list"),
    ],
)
def test_bad_hooks_are_named_like_every_other_stageflow_yaml_error(hooks: str, says: str) -> None:
    message = error_of(hooks)
    assert says in message
    assert message.startswith("stageflow.yaml line")


def test_missing_variables_are_named() -> None:
    hooks = [ControllerHook("argocd", "A", "B"), ControllerHook("flux", "C")]
    assert missing_variables(hooks, {"A": "x", "B": " ", "C": "y"}) == ["B"]


# -- the requests ---------------------------------------------------------------------------------

PUSHED = datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)


def call(hook: ControllerHook, before: str | None = "a" * 40) -> HookCall:
    return HookCall(
        hook=hook,
        stage="production",
        apps=("demo",),
        revision="b" * 40,
        before=before,
        branch="main",
        repository_url="https://github.com/acme/gitops.git",
        paths=ChangedPaths(
            added=("apps/demo/overlays/production/new.yaml",),
            modified=("apps/demo/overlays/production/kustomization.yaml",),
        ),
        message="promotion.apply demo in production",
        pushed_at=PUSHED,
    )


def test_the_argocd_request_is_a_signed_github_push_event() -> None:
    headers, body = argocd_request(call(ControllerHook("argocd", "URL", "SECRET")), "s3cret")

    assert headers["X-GitHub-Event"] == "push"
    assert headers["Content-Type"] == "application/json"
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={digest}"
    push = json.loads(body)
    assert push["ref"] == "refs/heads/main"
    assert (push["before"], push["after"]) == ("a" * 40, "b" * 40)
    assert push["repository"]["html_url"] == "https://github.com/acme/gitops.git"
    assert push["repository"]["default_branch"] == "main"
    assert push["repository"]["name"] == "gitops"
    (commit,) = push["commits"]
    assert commit == push["head_commit"]
    assert commit["id"] == "b" * 40
    assert commit["added"] == ["apps/demo/overlays/production/new.yaml"]
    assert commit["modified"] == ["apps/demo/overlays/production/kustomization.yaml"]
    assert commit["removed"] == []
    assert commit["timestamp"] == "2026-12-01T10:00:00.123000+00:00"


def test_an_unsigned_argocd_request_and_a_first_commit() -> None:
    headers, body = argocd_request(call(ControllerHook("argocd", "URL"), before=None), None)
    assert "X-Hub-Signature-256" not in headers
    assert json.loads(body)["before"] == "0" * 40


def test_the_flux_request_is_signed_for_generic_hmac_only() -> None:
    hmac_hook = ControllerHook("flux", "URL", "TOKEN", flux_type="generic-hmac")
    headers, body = flux_request(call(hmac_hook), "tok")
    digest = hmac.new(b"tok", body, hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == f"sha256={digest}"
    assert json.loads(body) == {
        "source": "stageflow",
        "stage": "production",
        "apps": ["demo"],
        "revision": f"main@sha1:{'b' * 40}",
        "commit": "b" * 40,
        "before": "a" * 40,
        "paths": [
            "apps/demo/overlays/production/new.yaml",
            "apps/demo/overlays/production/kustomization.yaml",
        ],
        "pushed_at": "2026-12-01T10:00:00.123000+00:00",
    }
    headers, _ = flux_request(call(ControllerHook("flux", "URL")), None)
    assert "X-Signature" not in headers


def test_restore_seconds_run_from_push_to_healthy() -> None:
    restore = Restore(1, "demo", "production", "c" * 40, "x", PUSHED)
    assert restore.seconds is None and restore.to_json()["healthy_at"] is None
    later = datetime(2026, 12, 1, 10, 0, 4, 623000, tzinfo=UTC)
    assert Restore(1, "demo", "production", "c" * 40, "x", PUSHED, healthy_at=later).seconds == 4.5


# -- delivery -------------------------------------------------------------------------------------


class Flaky:
    """A receiver that answers 503 to the first ``failures`` requests, then 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.seen.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(503 if len(owner.seen) <= owner.failures else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky():
    servers: list[Flaky] = []

    def make(failures: int) -> Flaky:
        servers.append(Flaky(failures))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def options(url: str, **kwargs: Any) -> HookOptions:
    return HookOptions(attempts=3, backoff=0.01, timeout=1.0, environ={"URL": url}, **kwargs)


def test_a_delivery_retries_with_backoff_until_it_lands(flaky) -> None:
    server = flaky(2)
    outcome = deliver(call(ControllerHook("argocd", "URL")), options(server.url))
    assert (outcome.outcome, outcome.attempts) == ("delivered", 3)
    assert len(server.seen) == 3 and len(set(server.seen)) == 1


def test_a_delivery_gives_up_after_its_attempts_and_says_why(flaky) -> None:
    server = flaky(10)
    outcome = deliver(call(ControllerHook("argocd", "URL")), options(server.url))
    assert (outcome.outcome, outcome.attempts) == ("failed", 3)
    assert "503" in outcome.detail


def test_an_unset_variable_is_not_sent() -> None:
    outcome = deliver(call(ControllerHook("argocd", "URL", "SECRET")), options("http://x"))
    assert outcome.outcome == "unconfigured" and "$SECRET" in outcome.detail


def test_the_notifier_plans_in_the_background_and_records_each_outcome(flaky) -> None:
    server = flaky(0)
    recorded: list[HookOutcome] = []
    hook = ControllerHook("argocd", "URL")
    notifier = HookDelivery(
        plan=lambda revision, at: [call(hook), call(hook)],
        record=recorded.append,
        options=options(server.url),
    )
    try:
        notifier.pushed("b" * 40, PUSHED)
        assert notifier.wait_idle(5)
    finally:
        notifier.close()
    assert [o.outcome for o in recorded] == ["delivered", "delivered"]
    assert len(server.seen) == 2


def test_a_failing_plan_or_record_does_not_stop_the_notifier(flaky) -> None:
    server = flaky(0)
    plans = iter([RuntimeError("no"), [call(ControllerHook("argocd", "URL"))]])

    def plan(revision: str, at: datetime) -> list[HookCall]:
        got = next(plans)
        if isinstance(got, Exception):
            raise got
        return got

    def record(outcome: HookOutcome) -> None:
        raise RuntimeError("the database is down")

    notifier = HookDelivery(plan=plan, record=record, options=options(server.url))
    try:
        notifier.pushed("1" * 40, PUSHED)
        notifier.pushed("2" * 40, PUSHED)
        assert notifier.wait_idle(5)
    finally:
        notifier.close()
    assert len(server.seen) == 1


# The fields of go-playground/webhooks v6's github.PushPayload (what Argo CD unmarshals the body
# into) that Stageflow sends, with their Go types: encoding/json refuses a body whose value has
# another type (a number for a string, a string for a time.Time), and Argo CD then drops the event.
PUSH_PAYLOAD_TYPES: dict[str, Any] = {
    "ref": str,
    "before": str,
    "after": str,
    "created": bool,
    "deleted": bool,
    "forced": bool,
    "commits": [
        {
            "id": str,
            "distinct": bool,
            "message": str,
            "timestamp": str,  # Commit.Timestamp is a string
            "author": {"name": str, "email": str, "username": str},
            "committer": {"name": str, "email": str, "username": str},
            "added": [str],
            "modified": [str],
            "removed": [str],
        }
    ],
    "repository": {
        "name": str,
        "full_name": str,
        "html_url": str,
        "clone_url": str,
        "url": str,
        "default_branch": str,
    },
    "pusher": {"name": str, "email": str},
}


def _typed_like(value: Any, shape: Any, where: str = "") -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        assert set(value) <= set(shape), f"{where}: fields Go does not declare here"
        for key, item in value.items():
            _typed_like(item, shape[key], f"{where}.{key}")
    elif isinstance(shape, list):
        assert isinstance(value, list), where
        for item in value:
            _typed_like(item, shape[0], f"{where}[]")
    else:
        assert type(value) is shape, f"{where}: {type(value).__name__}, Go wants {shape.__name__}"


def test_the_push_event_has_the_types_argo_cds_parser_declares() -> None:
    _, body = argocd_request(call(ControllerHook("argocd", "URL")), None)
    push = json.loads(body)
    head = push.pop("head_commit")
    _typed_like(push, PUSH_PAYLOAD_TYPES)
    _typed_like(head, PUSH_PAYLOAD_TYPES["commits"][0], "head_commit")
