"""The four hot reads, answered in front of Flask when they will succeed.

Under load a read of the flagd document costs ~0.3 ms of CPU, and py-spy put half of it in Flask
and Werkzeug (contexts, routing, hooks, request and response objects) around an answer that is a
cache lookup. ``FastReads`` is WSGI middleware in front of the Flask app. It answers GET app state,
GET flag matrix, GET flagd document and POST OFREP bulk evaluation itself — with the same service
calls and answer builders as the views in ``reads.py`` and ``ofrep.py`` — when it can answer in
full: a bearer token that authenticates and is allowed, an app and stage that exist, a body that
parses. Everything else (no token, any error, another method, a trailing slash, a chunked body)
goes to Flask untouched, which answers as it always has, so every error answer is Flask's. The
tests compare both paths' answers byte for byte.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

from stageflow.api import access, inputs, ofrep, reads
from stageflow.api.telemetry import LATENCY, REQUESTS, request_id
from stageflow.domain.evaluation import read_request
from stageflow.domain.identity import ApiToken
from stageflow.services import evaluation, tokens
from stageflow.services.context import Stageflow

log = logging.getLogger("stageflow.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]

APP_STATE = "/api/v1/apps/<app>"
MATRIX = "/api/v1/apps/<app>/flags"
DOCUMENT = "/api/v1/apps/<app>/stages/<stage>/flags"
BULK = "/ofrep/v1/evaluate/flags"

# (method, path pattern, the Flask rule it stands for): a segment is what Werkzeug's default
# converter takes, ``[^/]+``.
_ROUTES = (
    ("GET", re.compile(r"/api/v1/apps/([^/]+)"), APP_STATE),
    ("GET", re.compile(r"/api/v1/apps/([^/]+)/flags"), MATRIX),
    ("GET", re.compile(r"/api/v1/apps/([^/]+)/stages/([^/]+)/flags"), DOCUMENT),
    ("POST", re.compile(re.escape(BULK)), BULK),
)
_ROUTES_BY_RULE: dict[str, list[tuple[str, re.Pattern[str], str]]] = {}
for _route_entry in _ROUTES:
    _ROUTES_BY_RULE.setdefault(_route_entry[2], []).append(_route_entry)
_STATUS = {200: "200 OK", 304: "304 NOT MODIFIED"}
_BULK_HEADERS: Headers = [*ofrep.CORS_HEADERS, ("Cache-Control", ofrep.BULK_CACHE_CONTROL)]


class Answer:
    """A read's answer before its ETag is compared: the ETag, a body maker, extra headers."""

    __slots__ = ("actor", "body", "etag", "headers")

    def __init__(self, etag: str, body: Callable[[], bytes], headers: Headers) -> None:
        self.etag = etag
        self.body = body
        self.headers = headers
        self.actor: str | None = None


class FastReads:
    """WSGI middleware: the hot reads answered here, every other request passed to ``wsgi_app``."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.enabled = True
        self.served = 0  # answers given here (for tests; not exact under concurrent requests)
        self._max_body = int(app.config.get("MAX_CONTENT_LENGTH") or 1024 * 1024)
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # The role each route needs, read off the marks of the Flask views it stands for (the
        # one rule, access.py), never copied here.
        self._roles: dict[str, str] = {}
        for url_rule in app.url_map.iter_rules():
            for method, _, rule in _ROUTES_BY_RULE.get(url_rule.rule, ()):
                if method in (url_rule.methods or ()):
                    found = access.access_of(app.view_functions[url_rule.endpoint], method)
                    if found is not None:
                        self._roles[rule] = found.role

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.enabled:
            started = time.perf_counter()
            route = _route(environ)
            if route is not None:
                answer = self._answer(environ, *route)
                if answer is not None:
                    return self._send(environ, start_response, route[0], answer, started)
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ: dict[str, Any], rule: str, args: tuple[str, ...]) -> Answer | None:
        scheme, _, secret = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        sf: Stageflow = self.app.extensions["stageflow"]
        role = self._roles.get(rule)
        if role is None:
            return None
        try:
            token = tokens.authenticate(sf, secret.strip(), client=environ.get("REMOTE_ADDR"))
            if rule == BULK:
                token.require(role)
                answer = self._bulk(sf, environ, token)
            else:
                token.require(role, app=args[0], stage=args[1] if len(args) > 1 else None)
                if rule == APP_STATE:
                    made = reads.app_state_answer(
                        sf, self.app.json.dumps, args[0], token.scope.stages
                    )
                elif rule == MATRIX:
                    made = reads.matrix_answer(sf, self.app.json.dumps, args[0], token.scope.stages)
                else:
                    made = reads.document_answer(sf, args[0], args[1])
                answer = Answer(*made)
        except Exception:  # Flask runs the same checks, and gives its error answer
            return None
        if answer is not None:
            answer.actor = token.owner
        return answer

    def _bulk(self, sf: Stageflow, environ: dict[str, Any], token: ApiToken) -> Answer | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None  # chunked or no length: Werkzeug knows how to read those
        if not 0 <= length <= self._max_body or not inputs.is_json(environ.get("CONTENT_TYPE", "")):
            return None  # Flask answers 413 / 415
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # should Flask answer after all, it reads it
        flags = evaluation.flag_set(
            sf,
            token,
            app=environ.get("HTTP_X_STAGEFLOW_APP") or None,
            stage=environ.get("HTTP_X_STAGEFLOW_STAGE") or None,
        )
        context = read_request(body)
        # Taken last, once the request is known to be good: a request Flask answers after all
        # would take a second one there.
        if self.app.extensions[ofrep.LIMITER].acquire(token.id):
            return None  # over the rate: Flask answers the 429
        answer = evaluation.evaluate_flags(flags, context)
        stale = reads.stale_headers(evaluation.flag_set_notes(sf, flags))
        return Answer(
            answer.etag, lambda: answer.body, [*_BULK_HEADERS, *stale] if stale else _BULK_HEADERS
        )

    def _send(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        rule: str,
        answer: Answer,
        started: float,
    ) -> list[bytes]:
        headers: Headers = []
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and parse_etags(inm).contains_weak(answer.etag.strip('"')):
            status, chunks = 304, []
        else:
            data = answer.body()
            status, chunks = 200, [data]
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        headers += [
            ("ETag", answer.etag),
            *answer.headers,
            (
                "X-Request-Id",
                inputs.client_request_id(environ.get("HTTP_X_REQUEST_ID")) or request_id(),
            ),
        ]
        start_response(_STATUS[status], headers)
        self.served += 1
        method = environ["REQUEST_METHOD"]
        count, latency = self._metric(method, rule, status)
        count.inc()
        latency.observe(time.perf_counter() - started)
        if method == "POST" and log.isEnabledFor(logging.DEBUG):  # as create_app's _finish
            log.debug(
                "%s %s %s",
                method,
                environ.get("PATH_INFO"),
                status,
                extra={
                    "request_id": headers[-1][1],
                    "status": status,
                    "seconds": round(time.perf_counter() - started, 4),
                    "actor": answer.actor,
                },
            )
        return chunks

    def _metric(self, method: str, rule: str, status: int) -> tuple[Any, Any]:
        found = self._metrics.get((method, rule, status))
        if found is None:
            found = (REQUESTS.labels(method, rule, status), LATENCY.labels(method, rule))
            self._metrics[(method, rule, status)] = found
        return found


def _route(environ: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """Return the rule and path arguments of a request the fast path may answer, else None."""
    path: str = environ.get("PATH_INFO", "")
    if not path.isascii():  # Werkzeug decodes other bytes (WSGI's latin-1) as UTF-8; leave it that
        return None
    if "flagConfigEtag" in environ.get("QUERY_STRING", ""):
        return None  # an event stream's re-fetch: Flask reads the remote's head afresh
    method = environ.get("REQUEST_METHOD")
    for verb, pattern, rule in _ROUTES:
        if verb == method:
            found = pattern.fullmatch(path)
            if found is not None:
                return rule, found.groups()
    return None
