"""Controller hooks over HTTP: Argo CD's GitHub-format push event and Flux's ``Receiver``.

``HookDelivery`` is the ``ControllerNotifier`` port. ``pushed`` puts the revision on a queue
and returns; one background thread plans each commit's deliveries (which stages changed,
``services.hooks.plan``) in push order, and a small pool sends them, each with a few retries
and exponential backoff, then records the outcome (``services.hooks.record``: the audit log)
and counts it in ``/metrics``. A receiver that is down or slow holds up only its own delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from stageflow.domain.hooks import HookCall, HookOutcome

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "stageflow_controller_hook_deliveries_total",
    "Controller hook deliveries by outcome (delivered, failed after every retry, unconfigured).",
    ["kind", "stage", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "stageflow_controller_hook_seconds",
    "Time from a commit's push to its controller hook's answer (retries included).",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

USER_AGENT = "Stageflow-Hookshot/1"  # GitHub's own agent starts with GitHub-Hookshot/


@dataclass(frozen=True)
class HookOptions:
    """How hard to try: ``attempts`` in all, waiting ``backoff`` s, then twice as long each time.

    The default (4 attempts, 0.5 + 1 + 2 s apart, 2 s per attempt) gives up within ~10 s at
    worst and within ~3.5 s when the receiver refuses at once.
    """

    attempts: int = 4
    backoff: float = 0.5
    timeout: float = 2.0
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


# --- the requests, as the controllers check them -------------------------------------------------


def _sign(secret: str, body: bytes, digest: Any = hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def argocd_request(call: HookCall, secret: str | None) -> tuple[dict[str, str], bytes]:
    """A GitHub ``push`` event, as Argo CD's ``/api/webhook`` parses it (go-playground/webhooks).

    Argo CD refreshes the Applications whose ``repoURL`` matches ``repository.html_url`` and
    whose target revision is ``ref``; with ``argocd.argoproj.io/manifest-generate-paths`` it
    skips those whose paths none of the commits' added/modified/removed files touch.
    """
    body = json.dumps(_push_event(call), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"{call.revision}-{call.stage}",
    }
    if secret:
        headers["X-Hub-Signature-256"] = "sha256=" + _sign(secret, body)
        headers["X-Hub-Signature"] = "sha1=" + _sign(secret, body, hashlib.sha1)  # older parsers
    return headers, body


def _push_event(call: HookCall) -> dict[str, Any]:
    url = call.repository_url
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "gitops"
    commit = {
        "id": call.revision,
        "distinct": True,
        "message": call.message,
        "timestamp": call.pushed_at.isoformat(),
        "author": {"name": "Stageflow", "email": "stageflow@localhost", "username": "stageflow"},
        "committer": {"name": "Stageflow", "email": "stageflow@localhost", "username": "stageflow"},
        "added": list(call.paths.added),
        "modified": list(call.paths.modified),
        "removed": list(call.paths.removed),
    }
    return {
        "ref": f"refs/heads/{call.branch}",
        "before": call.before or "0" * 40,
        "after": call.revision,
        "created": call.before is None,
        "deleted": False,
        "forced": False,
        "commits": [commit],
        "head_commit": commit,
        "repository": {
            "name": name,
            "full_name": name,
            "html_url": url,
            "clone_url": url,
            "url": url,
            "default_branch": call.branch,
        },
        "pusher": {"name": "stageflow", "email": "stageflow@localhost"},
    }


def flux_request(call: HookCall, secret: str | None) -> tuple[dict[str, str], bytes]:
    """A request to a Flux notification-controller ``Receiver`` (``generic`` or ``generic-hmac``).

    The Receiver only needs the request (and, for generic-hmac, ``X-Signature`` over the raw
    body with its Secret's ``token``) to reconcile its resources; the body says what changed
    and when it was pushed.
    """
    body = json.dumps(
        {
            "source": "stageflow",
            "stage": call.stage,
            "apps": list(call.apps),
            "revision": f"{call.branch}@sha1:{call.revision}",
            "commit": call.revision,
            "before": call.before,
            "paths": list(call.paths.all()),
            "pushed_at": call.pushed_at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if call.hook.flux_type == "generic-hmac" and secret:
        headers["X-Signature"] = "sha256=" + _sign(secret, body)
    return headers, body


_REQUESTS: Mapping[str, Callable[[HookCall, str | None], tuple[dict[str, str], bytes]]] = {
    "argocd": argocd_request,
    "flux": flux_request,
}


# --- delivery ------------------------------------------------------------------------------------

Plan = Callable[[str, datetime], Sequence[HookCall]]
Record = Callable[[HookOutcome], None]


class HookDelivery:
    """The ``ControllerNotifier``: queues pushed revisions, delivers their hooks in the background.

    The threads start with the first push of the process that pushes (a gunicorn worker, not
    the master that may have built this before forking).
    """

    def __init__(self, plan: Plan, record: Record, options: HookOptions | None = None) -> None:
        self.plan = plan
        self.record = record
        self.options = options or HookOptions()
        self._queue: queue.SimpleQueue[tuple[str, datetime] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._planning: threading.Thread | None = None
        self._closed = False

    def pushed(self, revision: str, at: datetime) -> None:
        self._started()
        with self._lock:
            self._pending += 1
        self._queue.put((revision, at))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued delivery is done (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop: nothing more is planned or recorded (the repository and the ledger are closed
        next); the plan under way finishes first, so it does not open the clone again."""
        self._closed = True
        if self._pid == os.getpid():
            self._queue.put(None)
            if self._planning is not None:
                self._planning.join(timeout=10)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def _started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._pending = 0
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stageflow-hook")
            self._planning = threading.Thread(
                target=self._planner, name="stageflow-hooks", daemon=True
            )
            self._planning.start()

    def _planner(self) -> None:
        while (item := self._queue.get()) is not None:
            revision, at = item
            try:
                calls = [] if self._closed else list(self.plan(revision, at))
            except Exception:
                log.exception("cannot plan the controller hooks of %s", revision[:12])
                calls = []
            with self._lock:
                self._pending += len(calls) - 1
                if self._pending == 0:
                    self._idle.notify_all()
            for call in calls:
                assert self._pool is not None
                self._pool.submit(self._deliver, call)

    def _deliver(self, call: HookCall) -> None:
        try:
            outcome = deliver(call, self.options)
            DELIVERIES.labels(call.hook.kind, call.stage, outcome.outcome).inc()
            DELIVERY_SECONDS.labels(call.hook.kind, outcome.outcome).observe(outcome.seconds)
            _log(outcome)
            try:
                if not self._closed:
                    self.record(outcome)
            except Exception:
                log.exception("cannot record the controller hook of %s", call.revision[:12])
        finally:
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()


def deliver(call: HookCall, options: HookOptions) -> HookOutcome:
    """Send one hook, retrying with exponential backoff; say what became of it."""
    url = options.environ.get(call.hook.url_env, "").strip()
    secret_env = call.hook.secret_env
    secret = options.environ.get(secret_env, "").strip() if secret_env else None
    if not url or (secret_env and not secret):
        unset = call.hook.url_env if not url else secret_env
        return _outcome(call, "unconfigured", 0, f"${unset} is not set in Stageflow's environment")
    headers, body = _REQUESTS[call.hook.kind](call, secret)
    detail = ""
    for attempt in range(1, options.attempts + 1):
        detail = _post(url, headers, body, options.timeout)
        if not detail:
            return _outcome(call, "delivered", attempt, "")
        if attempt < options.attempts:
            time.sleep(options.backoff * 2 ** (attempt - 1))
    return _outcome(call, "failed", options.attempts, detail)


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> str:
    """POST once; return "" when the receiver accepted it (2xx), else why not."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(4096)
            return ""
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(exc).__name__}: {reason}"


def _outcome(call: HookCall, outcome: str, attempts: int, detail: str) -> HookOutcome:
    now = datetime.now(UTC)
    return HookOutcome(
        call=call,
        outcome=outcome,
        attempts=attempts,
        seconds=max(0.0, (now - call.pushed_at).total_seconds()),
        at=now,
        detail=detail,
    )


def _log(outcome: HookOutcome) -> None:
    call = outcome.call
    level = logging.INFO if outcome.outcome == "delivered" else logging.WARNING
    log.log(
        level,
        "%s hook of %s for %s: %s after %d attempt(s)%s",
        call.hook.kind,
        call.stage,
        call.revision[:12],
        outcome.outcome,
        outcome.attempts,
        f" ({outcome.detail})" if outcome.detail else "",
    )
