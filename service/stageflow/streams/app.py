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

from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stageflow.api.errors import STATUS
from stageflow.domain.errors import StageflowError
from stageflow.domain.evaluation import EvaluationRequestError
from stageflow.domain.events import Refetch, event_id
from stageflow.services import evaluation, tokens
from stageflow.services.context import Stageflow
from stageflow.streams.dashboard import DashboardStream
from stageflow.streams.hub import Channel, Hub, replay

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
    dashboard = DashboardStream(
        sf, hub, keepalive=keepalive, public_url=public_url, recheck=recheck
    )

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
        try:
            channel = await run_in_threadpool(_channel, sf, request)
        except EvaluationRequestError as exc:  # as the OFREP bulk answer says it: 400
            return _error(400, exc.error_code, exc.message)
        except StageflowError as exc:
            status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
            return _error(status, exc.code, exc.message)
        after = event_id(request.headers.get("last-event-id"))
        missed = await run_in_threadpool(replay, sf, channel, after) if after is not None else []
        queue = hub.subscribe(channel)
        return EventSourceResponse(
            _events(hub, channel, queue, missed),
            ping=keepalive,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
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

    routes = [Route(PATH, stream), dashboard.route(), Route("/healthz", health)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


def _channel(sf: Stageflow, request: Request) -> Channel:
    """Authenticate as OFREP does and pick the app and stage the same way (scope, query, header)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    token = tokens.authenticate(
        sf, secret.strip() if scheme.lower() == "bearer" else "", client=_address(request)
    )
    chosen = evaluation.flag_set(
        sf,
        token,
        app=request.query_params.get("app") or request.headers.get(evaluation.APP_HEADER),
        stage=request.query_params.get("stage") or request.headers.get(evaluation.STAGE_HEADER),
    )
    return chosen.app, chosen.stage


async def _events(
    hub: Hub, channel: Channel, queue: asyncio.Queue[Refetch], missed: list[Refetch]
) -> AsyncIterator[bytes]:
    try:
        for notice in missed:
            yield _sse(notice)
        while True:
            yield _sse(await queue.get())
    finally:
        hub.unsubscribe(channel, queue)


@functools.lru_cache(maxsize=256)
def _sse(notice: Refetch) -> bytes:
    """The notice's SSE frame, encoded once for every connection of its channel."""
    return ServerSentEvent(
        data=json.dumps(notice.data(), separators=(",", ":")), event="message", id=str(notice.id)
    ).encode()


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _error(status: int, code: str, message: str) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)
