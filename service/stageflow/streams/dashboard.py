"""The dashboard's event stream: ``GET /dashboard/v1/event-stream``, signed in by the session.

Why here and not a Flask streaming view: gunicorn runs ``workers x threads`` gthread threads, and
a Flask view that streams holds one of them for as long as the page stays open — a dozen open
tabs would take every thread the API has. Here a connection is a coroutine of the event-stream
server, as OFREP's are, and one read of the event log serves them all.

The session is the API token itself in the ``stageflow_session`` cookie (``web/session.py``: no
signed session, no secret key to share), so this server authenticates it exactly as the dashboard
does, with ``tokens.authenticate``, and asks for the dashboard's sign-in role (viewer). The token's
scope filters what is sent (``Watch.sees``); a page narrows it further with ``app`` and
``stage``. Each event is sent as a notice — ``{id, kind, app, stage, subject, revision}``, its
event-log id as the SSE ``id`` — and the page asks the dashboard for its part again, where the
page's own access check applies. ``Last-Event-ID`` (or ``after``, the last id the page was
rendered with) replays what the page missed.

The dashboard is another origin (another port) unless a proxy serves both under one: the browser
opens the stream with credentials, and this server answers CORS for an ``Origin`` of the same
host name (such a page receives the cookie on every request anyway: cookies ignore ports) or of
``STAGEFLOW_PUBLIC_URL``; others get 403.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stageflow.api.errors import status_of
from stageflow.domain.errors import Forbidden, StageflowError
from stageflow.domain.events import Event, Watch, event_id, page_notice
from stageflow.domain.identity import ApiToken
from stageflow.services import tokens
from stageflow.services.context import Stageflow
from stageflow.streams.hub import Hub, replay_watch
from stageflow.streams.recheck import TokenRecheck
from stageflow.streams.sse import END, EventStream
from stageflow.web.live import STREAM_PATH
from stageflow.web.session import SESSION_COOKIE

ROLE = "viewer"  # what signing in to the dashboard asks of a token
_FRAMES = 256  # encoded frames kept (events arrive in id order: the oldest go first)


class DashboardStream:
    """The endpoint's state: the hub it listens to and how it checks who is signed in."""

    def __init__(
        self,
        sf: Stageflow,
        hub: Hub,
        access: TokenRecheck,
        *,
        keepalive: float,
        public_url: str | None = None,
    ) -> None:
        self.sf = sf
        self.hub = hub
        self.access = access  # whether a signed-in token is still active (shared with OFREP's)
        self.keepalive = keepalive
        self.public_origin = _origin(public_url) if public_url else None
        # What every open page shares, so that an event costs little more per page than the
        # write to its socket: each event's frame, encoded once.
        self.frames: dict[int, bytes] = {}

    def frame(self, event: Event) -> bytes:
        """The SSE frame of ``event`` (the latest few hundred kept)."""
        key = event.id or 0
        found = self.frames.get(key)
        if found is None:
            found = self.frames[key] = _sse(event).encode()
            while len(self.frames) > _FRAMES:
                del self.frames[next(iter(self.frames))]
        return found

    def route(self) -> Route:
        return Route(STREAM_PATH, self.stream, methods=["GET", "OPTIONS"])

    async def stream(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and not self.allows(origin, request.headers.get("host")):
            return _error(403, "origin_refused", f"pages of {origin} may not open this stream")
        cors = _cors(origin)
        if request.method == "OPTIONS":  # a preflight (a reconnect sends Last-Event-ID)
            return Response(status_code=204, headers={**cors, **_PREFLIGHT})
        secret = request.cookies.get(SESSION_COOKIE)
        try:
            token = await run_in_threadpool(_signed_in, self.sf, secret, _address(request))
        except StageflowError as exc:
            return _error(status_of(exc), exc.code, exc.message, cors)
        query = request.query_params
        watch = Watch(token.scope, app=query.get("app") or None, stage=query.get("stage") or None)
        after = _resume_point(request)
        queue = self.hub.watch(watch)  # before the replay: nothing falls between the two
        try:
            missed = (
                await run_in_threadpool(replay_watch, self.sf, watch, after)
                if after is not None
                else []
            )
        except BaseException:
            self.hub.unwatch(queue)
            raise
        self.access.seen(token.id)
        floor = max([after or 0, *(e.id or 0 for e in missed)])
        follow = _Follow(self, token.id, floor)
        return EventStream(
            queue,
            follow.frame,
            keepalive=self.keepalive,
            headers={**cors, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            first=[self.frame(event) for event in missed],
            closed=lambda: self.hub.unwatch(queue),
        )

    def allows(self, origin: str, host: str | None) -> bool:
        """Whether a page of ``origin`` may read the stream (see the module's docstring)."""
        if self.public_origin is not None and _origin(origin) == self.public_origin:
            return True
        asked = urlsplit(origin).hostname
        return asked is not None and asked == urlsplit(f"//{host or ''}").hostname


class _Follow:
    """One open page: the frame of each event of its queue, while its token stays signed in."""

    def __init__(self, owner: DashboardStream, token_id: str, floor: int) -> None:
        self.owner = owner
        self.token_id = token_id
        self.floor = floor  # events up to this id were replayed already

    async def frame(self, event: Event) -> bytes | None:
        if (event.id or 0) <= self.floor:
            return None
        # A revoked or expired token hears of nothing after `recheck` seconds; the browser
        # reconnects and hears 401.
        if not await self.owner.access.still_active(self.token_id):
            return END
        return self.owner.frame(event)


def _signed_in(sf: Stageflow, secret: str | None, client: str | None) -> ApiToken:
    token = tokens.authenticate(sf, secret, client=client)
    if not token.has_role(ROLE):
        raise Forbidden(
            f"token {token.name!r} may not read the dashboard (it needs the role {ROLE})",
            code="missing_role",
        )
    return token


def _resume_point(request: Request) -> int | None:
    for sent in (request.headers.get("last-event-id"), request.query_params.get("after")):
        found = event_id(sent)
        if found is not None:
            return found
    return None


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(page_notice(event), separators=(",", ":")), id=str(event.id)
    )


_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Last-Event-ID, Cache-Control",
    "Access-Control-Max-Age": "600",
}


def _cors(origin: str | None) -> dict[str, str]:
    if origin is None:  # the same origin (one proxy serves both): no CORS at all
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)
