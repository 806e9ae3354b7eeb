"""Watch the hot reads' fast path (api/fastpath.py) from a test, without hooks in the service.

``FastReads`` passes what it does not answer to the Flask app it wraps (``wsgi_app``). The probe
wraps that inner app and marks each answer it gives with a header (``REACHED_FLASK``): an answer
without it was given by the fast path. ``flask()`` sends requests around the fast path, straight
to Flask's views, to compare both answers (leave the header out of the comparison).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from stageflow.api.fastpath import FastReads

REACHED_FLASK = "X-Test-Reached-Flask"


class FastProbe:
    """Tells which answers the fast path gave, and can take the fast path away."""

    def __init__(self, app: Flask) -> None:
        middleware = app.wsgi_app
        assert isinstance(middleware, FastReads), "create_app puts FastReads in front of Flask"
        self.app = app
        self.middleware = middleware
        self.flask_app = middleware.wsgi_app
        middleware.wsgi_app = self._mark

    def _mark(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            return start_response(status, [*headers, (REACHED_FLASK, "1")], *exc_info)

        return self.flask_app(environ, start)

    @staticmethod
    def answered_fast(answer: TestResponse) -> bool:
        """Whether the fast path gave this answer (the request never reached Flask)."""
        return REACHED_FLASK not in answer.headers

    @contextmanager
    def flask(self) -> Iterator[None]:
        """Requests sent within go straight to Flask, as if there were no fast path."""
        self.app.wsgi_app = self._mark  # type: ignore[method-assign]  # as create_app does
        try:
            yield
        finally:
            self.app.wsgi_app = self.middleware  # type: ignore[method-assign]

    def close(self) -> None:
        """Put the middleware back as create_app made it."""
        self.middleware.wsgi_app = self.flask_app
