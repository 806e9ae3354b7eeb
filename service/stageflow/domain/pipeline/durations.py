"""Durations as ``stageflow.yaml`` writes them: ``30s``, ``10m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int) -> timedelta:
    """Turn ``30s``, ``10m``, ``1h30m``, ``2d`` or a whole number of seconds into a timedelta."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is not a duration: it is negative")
        return timedelta(seconds=text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration")
    written = text.strip()
    if written.isdigit():
        return timedelta(seconds=int(written))
    match = _DURATION.match(written)
    if not written or match is None:
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 10m or 1h30m")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(td: timedelta) -> str:
    """Write a timedelta the way ``parse_duration`` reads it (whole seconds): ``1h30m``."""
    total = int(td.total_seconds())
    if total < 0:
        raise ValueError(f"{td!r} is negative; durations are never negative")
    if total == 0:
        return "0s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)
