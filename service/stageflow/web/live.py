"""Where a dashboard page hears of changes: the event-stream server's dashboard endpoint.

The pages that change by themselves (a promotion, the pipeline, a stage) name in ``data-events``
an SSE URL on the event-stream server (``stageflow.streams``: a coroutine per connection, not a
gunicorn thread per open tab). It authenticates with the session cookie: cookies belong to a
host, not to a port, so the browser sends the dashboard's cookie to the stream's port too. The
URL is built from the host the page was opened at (``localhost`` and ``127.0.0.1`` are different
sites to a browser, and a ``SameSite=Lax`` cookie crosses no site), unless
``STAGEFLOW_STREAM_URL`` names the stream's public origin (behind a proxy).

The URL carries ``after``: the last event id when the page was rendered, so the stream first
replays what happened between the render and the connection.

While the stream is out of reach (off, down, or closed for good) the page's script asks for its
part by itself every ``data-poll`` seconds instead, and says so; see ``POLL_SECONDS``.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import current_app, request

from stageflow.api.auth import current_stageflow
from stageflow.services import events

STREAM_PATH = "/dashboard/v1/event-stream"
# Without the stream a live page asks for its part this often (its ``data-poll``). Each ask is an
# access check and a render of the part on a gunicorn thread (the pipeline's is the whole
# overview; a stage's queries Prometheus for its charts), answered 304 when nothing changed.
# Every 5 s keeps tens of open tabs at a few renders a second while the stream is down, and
# shows a person watching a deployment or a promotion the change within 5 s; a degraded mode,
# not the usual one, so it need not be as quick as the stream.
POLL_SECONDS = 5
# A waiting promotion's part asks to be polled each second (its ``[data-live]`` carries the
# period): the reader is waiting on exactly that answer, and it settles soon.
WAITING_POLL_SECONDS = 1
_PORT = re.compile(r":\d+$")


def stream_origin() -> str | None:
    """The origin of the event-stream server as this page's browser reaches it; None: off."""
    settings = current_app.extensions.get("stageflow.settings")
    if getattr(settings, "stream_origin", None) is None:  # off, or an app built without settings
        return None
    if settings.stream_url:
        return str(settings.stream_url).rstrip("/")
    host = _PORT.sub("", request.host)  # "[::1]:8080" -> "[::1]"
    return f"{request.scheme}://{host}:{settings.stream_port or settings.port + 1}"


def events_url(
    app: str | None = None, stage: str | None = None, *, after: int | None = None
) -> str | None:
    """The page's ``data-events``: its stream, narrowed to ``app`` (and ``stage``), replaying
    from ``after`` (default: the newest event now; read it before what the page shows)."""
    origin = stream_origin()
    if origin is None:
        return None
    if after is None:
        after = events.last_id(current_stageflow())
    query = {"app": app, "stage": stage, "after": after}
    return f"{origin}{STREAM_PATH}?{urlencode({k: v for k, v in query.items() if v is not None})}"
