"""Logging set-up: JSON lines on stderr.

Apart from ``bootstrap`` so that the gunicorn master, which composes nothing, can log without
importing the adapters (SQLAlchemy, GitPython, Alembic, ...) and keeping them in memory.
"""

from __future__ import annotations

import logging
import re
import sys

# `user:password@` (or `token@`) in any URL inside a text: git's own messages and GitPython's
# command lines repeat the remote URL as it was given, credentials included.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


def redact_credentials(text: str) -> str:
    """Return ``text`` with the credentials of every URL in it removed (for messages and logs)."""
    return _URL_CREDENTIALS.sub("", text)


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr, one object per line."""
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        # The last line of defence: whatever a message or a traceback repeats of a remote URL
        # with credentials in it leaves without them.
        def format(self, record: logging.LogRecord) -> str:
            return redact_credentials(super().format(record))

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
