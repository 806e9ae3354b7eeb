"""Logging set-up: JSON lines on stderr.

Apart from ``bootstrap`` so that the gunicorn master, which composes nothing, can log without
importing the adapters (SQLAlchemy, GitPython, Alembic, ...) and keeping them in memory.
"""

from __future__ import annotations

import logging
import re
import sys

# The user and password of a URL (``https://user:secret@host/...``): STAGEFLOW_GIT_URL may carry a
# token, and Git's command lines and messages repeat the URL they were given.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")


def redact(text: str) -> str:
    """Return ``text`` with the credentials of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr, one object per line, with credentials in URLs redacted."""
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        # On the formatted line: the message, its arguments, extras and tracebacks alike.
        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("git").setLevel(logging.WARNING)
    # flagd's evaluator logs an error per evaluation whose context lacks what a rule reads (no
    # targetingKey, a bad version string): client input at request rate. OFREP answers say it.
    logging.getLogger("openfeature").setLevel(logging.CRITICAL)
