"""The five-field cron schedules that start freeze windows (Vixie cron semantics)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (field name, lowest, highest, names for lowest..): the classic five cron fields.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTH_NAMES),
    ("day of week", 0, 7, _DAY_NAMES),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...], what: str) -> int:
    lowered = text.lower()
    if names and lowered in names:
        return low + names.index(lowered)
    if not text.isdigit():
        raise ValueError(f"{what} field: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} field: {value} is outside {low}-{high}")
    return value


def _cron_field(
    text: str, low: int, high: int, names: tuple[str, ...], what: str
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{what} field: step {step_text!r} in {part!r} must be 1 or more")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _cron_value(first, low, high, names, what)
            end = _cron_value(last, low, high, names, what)
            if start > end:
                raise ValueError(f"{what} field: range {base!r} runs backwards")
        elif base:
            start = _cron_value(base, low, high, names, what)
            # "5/15" means "from 5 to the end, every 15", as Vixie cron and croniter read it.
            end = high if slash else start
        else:
            raise ValueError(f"{what} field: {part!r} is empty")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@lru_cache(maxsize=256)
def parse_cron(cron: str) -> tuple[frozenset[int], ...]:
    """Return the allowed values of the five fields of ``cron``; ValueError says what is wrong."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"{cron!r} has {len(fields)} fields, not 5 (minute hour day-of-month month day-of-week)"
        )
    parsed = tuple(
        _cron_field(text, low, high, names, what)
        for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True)
    )
    # Day of week 7 is another way to say Sunday.
    if 7 in parsed[4]:
        parsed = (*parsed[:4], (parsed[4] - {7}) | {0})
    return parsed


def runs_on(cron: str, day: date) -> bool:
    """Say whether ``cron`` fires at some time of ``day`` (its month and day fields match)."""
    _, _, days, months, weekdays = parse_cron(cron)
    fields = cron.split()
    # Vixie semantics: when both day fields are restricted, either one may match.
    dom_any = fields[2].startswith("*")
    dow_any = fields[4].startswith("*")
    dom_ok = day.day in days
    dow_ok = (day.isoweekday() % 7) in weekdays
    day_ok = (dom_ok and dow_ok) if dom_any or dow_any else (dom_ok or dow_ok)
    return day.month in months and day_ok


@lru_cache(maxsize=256)
def times_of_day(cron: str) -> tuple[tuple[int, int], ...]:
    """Return the (hour, minute) pairs ``cron`` fires at on a day it runs, earliest first."""
    minutes, hours = parse_cron(cron)[:2]
    return tuple((hour, minute) for hour in sorted(hours) for minute in sorted(minutes))
