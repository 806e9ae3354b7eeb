"""The hot reads, answered in front of Flask when they will succeed.

Under load a read of the flagd document costs ~0.3 ms of CPU, and py-spy put half of it in Flask
and Werkzeug (contexts, hooks, request and response objects) around an answer that is a cache
lookup. ``FastReads`` is WSGI middleware in front of the Flask app that answers such reads itself.

Nothing about a read is copied here, so the two paths cannot drift apart:

- a view opts in with ``@fast_read(builder)`` next to its ``@requires(...)``; the table of fast
  reads is read off ``app.url_map`` (the rules whose view, for the method, carries both marks);
- a request is routed by Flask's own URL adapter (Werkzeug's ``Map.match``), so the path
  arguments are the converters' and a path Flask would not route here is not answered here;
- who may ask is decided by ``access.decide`` with the view's own mark and resolvers;
- the answer is made by the builder the view itself uses (``reads.py``, ``ofrep.py``).

A builder returns None, or raises one of the domain's errors, when it will not answer in full
(no body length, over the rate, no such app...): Flask then runs the request as always, so every
error answer is Flask's. Anything else raised here is a bug; it is handed to Flask, which raises it
again before the view (``raise_failure``) and answers it as it answers a failing view: logged
with its traceback, a 500 that names the request id.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from flask.wrappers import Request as FlaskRequest
from werkzeug.datastructures import ETags
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_etags
from werkzeug.wrappers import Request

from stageflow.api import access, inputs, telemetry
from stageflow.api.auth import current_token
from stageflow.domain.errors import StageflowError
from stageflow.domain.identity import ApiToken
from stageflow.domain.inputs import check_url
from stageflow.services.context import Stageflow

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]
F = TypeVar("F", bound=Callable[..., Any])

MARK = "_stageflow_fast_read"
FAILURE = "stageflow.fast_path_failure"  # the environ key of an error handed to Flask
_STATUS = {200: "200 OK", 304: "304 NOT MODIFIED"}
_MATCHES_KEPT = 1024  # routed paths remembered (cleared when full: paths could be endless)


@dataclass(frozen=True)
class Answer:
    """A read's answer before its ETag is compared: the ETag, a body maker, extra headers.

    The body is made only when sent: a 304 never serializes it.
    """

    etag: str
    body: Callable[[], bytes]
    headers: Headers

    def unchanged(self, if_none_match: ETags) -> bool:
        """Whether ``If-None-Match`` names this answer (weakly, as RFC 9110 says for GET)."""
        return if_none_match.contains_weak(self.etag.strip('"'))


@dataclass(frozen=True)
class Read:
    """What a builder answers from: the app, the request, its URL arguments and its token.

    The fast path makes one from the WSGI environ; a view makes one with ``from_flask``, so that
    both paths run the same builder.
    """

    app: Flask
    request: Request
    args: dict[str, Any]
    token: ApiToken

    @classmethod
    def from_flask(cls) -> Read:
        """The read of the request Flask is answering (its view has already been authorized)."""
        return cls(current_app, request, dict(request.view_args or {}), current_token())

    @property
    def stageflow(self) -> Stageflow:
        sf: Stageflow = self.app.extensions["stageflow"]
        return sf

    def json_body(self) -> bytes | None:
        """The body when it is JSON with a length within the limit, else None (Flask reads it:
        a chunked body, or the 413 and 415 answers). The body stays readable for Flask."""
        environ = self.request.environ
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        limit = int(self.app.config.get("MAX_CONTENT_LENGTH") or 1024 * 1024)
        if not 0 <= length <= limit or not inputs.is_json(environ.get("CONTENT_TYPE", "")):
            return None
        body: bytes = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # should Flask answer after all, it reads it
        return body


Builder = Callable[[Read], "Answer | None"]


def fast_read(builder: Builder) -> Callable[[F], F]:
    """Mark a view as a hot read that ``builder`` may answer in front of Flask.

    The view must also carry ``@requires`` (with the bearer token): the fast path decides who
    may ask from that mark.
    """

    def mark(view: F) -> F:
        setattr(view, MARK, builder)
        return view

    return mark


def conditional_response(answer: Answer) -> Response:
    """Flask's rendering of an answer: 304 when If-None-Match names its ETag, else 200."""
    headers = [("ETag", answer.etag), *answer.headers]
    if answer.unchanged(request.if_none_match):
        return Response(status=304, headers=headers)
    return Response(answer.body(), mimetype="application/json", headers=headers)


def raise_failure(environ: dict[str, Any]) -> None:
    """Raise the error the fast path failed with on this request, if any (before the view)."""
    failure = environ.pop(FAILURE, None)
    if failure is not None:
        raise failure


@dataclass(frozen=True)
class Route:
    """A fast read: the Flask rule it is (the metrics' label), its access mark, its builder."""

    rule: str
    access: access.Access
    builder: Builder


def routes_of(app: Flask) -> dict[tuple[str, str], Route]:
    """The fast reads of an app by (endpoint, method), read off its URL map and views' marks."""
    found: dict[tuple[str, str], Route] = {}
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            view = access.view_for(app.view_functions[rule.endpoint], method)
            builder = getattr(view, MARK, None)
            if builder is None:
                continue
            mark = access.access_of(view, method)
            if mark is None or mark.principal is not None:
                raise TypeError(
                    f"{method} {rule.rule} is marked @fast_read without @requires(...) for a "
                    "bearer token: the fast path cannot decide who may ask"
                )
            found[(rule.endpoint, method)] = Route(rule.rule, mark, builder)
    return found


class FastReads:
    """WSGI middleware: the hot reads answered here, every other request passed to ``wsgi_app``."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.routes = routes_of(app)
        self._matched: dict[tuple[str, str], tuple[Route | None, dict[str, Any]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        if access.bearer_secret(environ.get("HTTP_AUTHORIZATION", "")) is not None:
            asking = self.app.request_class(environ)
            route, args = self._route(asking)
            if route is not None:
                read, answer = self._try(asking, route, args)
                if read is not None and answer is not None:
                    return self._send(read, start_response, route, answer, started)
        # No bearer token (Flask answers the 401), not a fast read, or not answered in full.
        return self.wsgi_app(environ, start_response)

    def _route(self, asking: FlaskRequest) -> tuple[Route | None, dict[str, Any]]:
        """The fast read Flask's own URL adapter routes the request to, with its arguments.

        Binding an adapter and matching costs a fifth of a fast answer, and clients read the
        same few paths over and over: the adapter's answers are kept per (method, path), unless
        Flask checks the host (``TRUSTED_HOSTS``), which the path alone cannot tell.
        """
        key = (asking.method, asking.environ.get("PATH_INFO", ""))
        found = self._matched.get(key)
        if found is None:
            found = self._match(asking)
            if self.app.config.get("TRUSTED_HOSTS") is None:
                if len(self._matched) >= _MATCHES_KEPT:
                    self._matched.clear()
                self._matched[key] = found
        return found[0], dict(found[1])  # a copy: the views must not share one

    def _match(self, asking: FlaskRequest) -> tuple[Route | None, dict[str, Any]]:
        try:
            adapter = self.app.create_url_adapter(asking)
            if adapter is None:
                return None, {}
            rule, args = adapter.match(return_rule=True)
        except HTTPException:
            return None, {}  # 404, 405, a redirect or a bad host: Flask routes it and answers
        return self.routes.get((rule.endpoint or "", asking.method)), dict(args)

    def _try(
        self, asking: FlaskRequest, route: Route, args: dict[str, Any]
    ) -> tuple[Read | None, Answer | None]:
        """The read and its answer; (None, None) when Flask is to answer the request."""
        try:
            read = self._read(asking, route, args)
            return read, route.builder(read)
        except StageflowError:
            return None, None  # Flask runs the same checks, and gives its error answer
        except Exception as failure:  # a bug: handed to Flask, which answers it (raise_failure)
            asking.environ[FAILURE] = failure
            return None, None

    def _read(self, asking: FlaskRequest, route: Route, args: dict[str, Any]) -> Read:
        """Check what Flask's ``before_request`` checks: the URL, the token, the access mark."""
        environ = asking.environ
        check_url(environ.get("PATH_INFO", "").encode("latin-1"), environ.get("QUERY_STRING", ""))
        sf: Stageflow = self.app.extensions["stageflow"]
        token = access.bearer_token_of(sf, asking)
        access.decide(sf, route.access, access.Asked(args, asking, token))
        return Read(self.app, asking, args, token)

    def _send(
        self,
        read: Read,
        start_response: Callable[..., Any],
        route: Route,
        answer: Answer,
        started: float,
    ) -> list[bytes]:
        """Send the answer as Flask's ``conditional_response`` and ``after_request`` would."""
        asking = read.request
        given = asking.headers.get("If-None-Match")
        headers: Headers = []
        chunks: list[bytes] = []
        if given and answer.unchanged(parse_etags(given)):
            status = 304
        else:
            data = answer.body()
            status, chunks = 200, [data]
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        request_id = telemetry.answer_request_id(asking.headers.get("X-Request-Id"))
        headers += [("ETag", answer.etag), *answer.headers, ("X-Request-Id", request_id)]
        start_response(_STATUS[status], headers)
        telemetry.record(
            telemetry.Answered(
                method=asking.method,
                endpoint=route.rule,
                path=asking.path,
                status=status,
                request_id=request_id,
                seconds=time.perf_counter() - started,
                actor=read.token.owner,
            )
        )
        return chunks
