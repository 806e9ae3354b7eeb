"""The ASGI app: ``GET /ofrep/v1/event-stream`` (what the bulk answer's ``eventStreams`` name),
and ``GET /dashboard/v1/event-stream``, which the dashboard's pages follow (``dashboard.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stageflow.api.errors import status_of
from stageflow.domain.errors import (
    StageflowError,
    TooManyRequests,
    Unauthenticated,
)
from stageflow.domain.evaluation import EvaluationRequestError
from stageflow.domain.events import Refetch, event_id
from stageflow.services import evaluation, stream_tickets, tokens
from stageflow.services.context import Stageflow
from stageflow.streams.dashboard import DashboardStream
from stageflow.streams.hub import Channel, Hub, replay
from stageflow.streams.recheck import TokenRecheck
from stageflow.streams.sse import END, EventStream

PATH = "/ofrep/v1/event-stream"


def create_streams_app(
    sf: Stageflow,
    *,
    poll: float = 0.05,
    keepalive: float = 15.0,
    public_url: str | None = None,
    recheck: float = 10.0,
) -> Starlette:
    """OFREP's streams and the dashboard's (``dashboard.py``), fed by one hub."""
    hub = Hub(sf, poll=poll)
    access = TokenRecheck(sf, every=recheck)  # one for both kinds of stream
    dashboard = DashboardStream(sf, hub, access, keepalive=keepalive, public_url=public_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            hub.stop()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)  # cancels it past that

    async def stream(request: Request) -> Response:
        if request.method == "OPTIONS":  # a preflight: a fetch-based client sends a header
            return Response(status_code=204, headers={**_CORS, **_PREFLIGHT})
        try:
            token_id, channel = await run_in_threadpool(_channel, sf, request)
        except EvaluationRequestError as exc:  # as the OFREP bulk answer says it: 400
            return _error(400, exc.error_code, exc.message)
        except StageflowError as exc:
            wait = exc.retry_after if isinstance(exc, TooManyRequests) else None
            return _error(status_of(exc), exc.code, exc.message, retry_after=wait)
        after = event_id(request.headers.get("last-event-id"))
        missed = await run_in_threadpool(replay, sf, channel, after) if after is not None else []
        queue = hub.subscribe(channel)
        access.seen(token_id)

        async def frame(notice: Refetch) -> bytes:
            # A revoked token's stream ends; the client reconnects and hears 401.
            return _sse(notice) if await access.still_active(token_id) else END

        return EventStream(
            queue,
            frame,
            keepalive=keepalive,
            headers={**_CORS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            first=[_sse(notice) for notice in missed],
            closed=lambda: hub.unsubscribe(channel, queue),
        )

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "connections": hub.connections,
                "dashboard_pages": len(hub.watchers),
                "last_event": hub.last_id,
            }
        )

    routes = [
        Route(PATH, stream, methods=["GET", "OPTIONS"]),
        dashboard.route(),
        Route("/healthz", health),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


def _channel(sf: Stageflow, request: Request) -> tuple[str, Channel]:
    """Authenticate as OFREP does, or by the ``ticket`` the bulk answer's URL carries, and pick
    the app and stage the same way (scope, query, header): the token's id and the channel."""
    query = request.query_params
    app = query.get("app") or request.headers.get(evaluation.APP_HEADER)
    stage = query.get("stage") or request.headers.get(evaluation.STAGE_HEADER)
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    ticket = query.get("ticket")
    if secret:
        token = tokens.authenticate(sf, secret, client=_address(request))
    elif ticket:
        token = stream_tickets.redeem(sf, ticket, app, stage, client=_address(request))
    else:
        raise Unauthenticated(
            "this stream needs a credential: open the URL the bulk answer's eventStreams name "
            "(POST /ofrep/v1/evaluate/flags; it carries a ticket), or send "
            "`Authorization: Bearer <token>`",
            code="token_missing",
        )
    chosen = evaluation.flag_set(sf, token, app=app, stage=stage)
    return token.id, (chosen.app, chosen.stage)


@functools.lru_cache(maxsize=256)
def _sse(notice: Refetch) -> bytes:
    """The notice's SSE frame, encoded once for every connection of its channel."""
    return ServerSentEvent(
        data=json.dumps(notice.data(), separators=(",", ":")), event="message", id=str(notice.id)
    ).encode()


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


# Any page may open the stream: its credential is in the URL or a header, never a cookie, so
# CORS guards nothing here (as for the OFREP answers themselves).
_CORS = {"Access-Control-Allow-Origin": "*"}
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": (
        f"Authorization, Last-Event-ID, Cache-Control, {evaluation.APP_HEADER}, "
        f"{evaluation.STAGE_HEADER}"
    ),
    "Access-Control-Max-Age": "600",
}


def _error(status: int, code: str, message: str, *, retry_after: int | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    headers = _CORS if retry_after is None else {**_CORS, "Retry-After": str(retry_after)}
    return JSONResponse(body, status_code=status, headers=headers)
