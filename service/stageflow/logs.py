"""Logging set-up: JSON lines on stderr.

Apart from ``bootstrap`` so that the gunicorn master, which composes nothing, can log without
importing the adapters (SQLAlchemy, GitPython, Alembic, ...) and keeping them in memory.
"""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr, one object per line."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
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
