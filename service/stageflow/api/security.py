"""Response headers that keep browsers and caches from misusing an answer.

HTML pages (``/docs``, and any later page) may not be framed, sniffed, leak the URL as a
referrer or run anything but their own inline styles. Answers to writes are never stored by a
cache and never sniffed: ``POST /api/v1/tokens`` carries a token's secret, and no write answer
is worth keeping. The hot reads (``fastpath.py``) are JSON GETs with their own cache headers,
so they are left as they are.
"""

from __future__ import annotations

from flask import Flask, Response, request

HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
WRITE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def add_headers(response: Response) -> Response:
    """Set the headers above on HTML answers and on answers to writes (an after_request hook)."""
    # A 304 (or 204) has no body, only Werkzeug's default type: it is not a page.
    if request.blueprint == "web":
        return response  # the dashboard's pages post forms: they state their own policy
    if response.mimetype == "text/html" and response.status_code not in (204, 304):
        response.headers.update(HTML_HEADERS)
    elif request.method in WRITES and request.path.startswith("/api/"):
        response.headers.update(WRITE_HEADERS)
    return response


def register(app: Flask) -> None:
    app.after_request(add_headers)
