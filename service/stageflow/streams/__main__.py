"""`python -m stageflow.streams`: the event-stream server (``stageflow serve`` starts it)."""

from __future__ import annotations

import sys

import uvicorn

from stageflow import bootstrap
from stageflow.config import Settings
from stageflow.logs import configure_logging
from stageflow.streams.app import create_streams_app


def main() -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    port = settings.stream_port or settings.port + 1
    sf, _ = bootstrap.build(settings)
    try:
        app = create_streams_app(
            sf,
            poll=settings.stream_poll,
            keepalive=settings.stream_keepalive,
            public_url=settings.public_url,
        )
        # One process, one event loop: every connection is a coroutine (no thread each).
        uvicorn.run(
            app,
            host=settings.host,
            port=port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=2,
            log_config=None,  # the JSON lines configure_logging set up
        )
    finally:
        sf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
