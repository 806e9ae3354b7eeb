"""Sends notifications over HTTP: Slack incoming webhooks, signed JSON webhooks, CloudEvents.

URLs and secrets are read from the environment by the names stageflow.yaml gives
(``url_env``, ``secret_env``) at each send, so a rotated secret needs no restart and none is
ever in Git. A webhook's body is signed like Flux's generic-hmac receivers expect:
``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping

import httpx
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent
from prometheus_client import Counter, Histogram

from stageflow.domain.events import Event
from stageflow.domain.notify import DeliveryFailed, NotifyTarget, slack_message, webhook_body

DELIVERIES = Counter(
    "stageflow_notification_deliveries_total",
    "Notification sends, by target and outcome (delivered, failed).",
    ["target", "outcome"],
)
SECONDS = Histogram(
    "stageflow_notification_send_seconds", "Time one notification send took.", ["target"]
)
EVENT_TYPE_PREFIX = "dev.stageflow."


class HttpSender:
    """The `NotificationSender` port over HTTP (one pooled client, bounded timeouts)."""

    def __init__(self, *, timeout: float = 10.0, environ: Mapping[str, str] | None = None) -> None:
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)
        self.environ = environ if environ is not None else os.environ

    def close(self) -> None:
        self.client.close()

    def send(self, target: NotifyTarget, event: Event, link: str) -> None:
        url = self._env(target.url_env, target, "URL")
        body, headers = self._message(target, event, link)
        started = time.perf_counter()
        try:
            answer = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            DELIVERIES.labels(target.name, "failed").inc()
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            SECONDS.labels(target.name).observe(time.perf_counter() - started)
        if answer.status_code >= 300:
            DELIVERIES.labels(target.name, "failed").inc()
            raise DeliveryFailed(f"the receiver answered HTTP {answer.status_code}")
        DELIVERIES.labels(target.name, "delivered").inc()

    def _message(
        self, target: NotifyTarget, event: Event, link: str
    ) -> tuple[bytes, dict[str, str]]:
        headers = {"User-Agent": "stageflow", "X-Stageflow-Event-Id": str(event.id)}
        if target.kind == "slack":
            return _json(slack_message(event, link)), {
                **headers,
                "Content-Type": "application/json",
            }
        if target.kind == "cloudevents":
            attributes = {
                "id": str(event.id),
                "source": "/stageflow" + (f"/apps/{event.app}" if event.app else ""),
                "type": EVENT_TYPE_PREFIX + event.kind,
                "time": event.at,
                "datacontenttype": "application/json",
            }
            subject = "/".join(part for part in (event.app, event.stage) if part)
            if subject:
                attributes["subject"] = subject
            message = to_structured_event(
                CloudEvent(attributes=attributes, data=webhook_body(event, link))
            )
            return message.body, {**headers, **message.headers}
        body = _json(webhook_body(event, link))
        secret = self._env(target.secret_env or "", target, "secret")
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            **headers,
            "Content-Type": "application/json",
            "X-Stageflow-Event": event.kind,
            "X-Signature": f"sha256={signature}",
        }

    def _env(self, name: str, target: NotifyTarget, what: str) -> str:
        value = self.environ.get(name, "").strip()
        if not value:
            DELIVERIES.labels(target.name, "failed").inc()
            raise DeliveryFailed(
                f"{name} is not set: the {what} of notification target {target.name} comes from "
                "that environment variable"
            )
        return value


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
