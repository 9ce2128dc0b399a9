"""Lengths of time as people write them in configuration and notebooks: ``"30d"``, ``"12h"``, ``"90s"``."""

from __future__ import annotations

import datetime as dt
import re

_NAMED = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_UNITS = {
    **{"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400},
    **_NAMED,
    **{name + "s": length for name, length in _NAMED.items()},
}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def is_span(text: str) -> bool:
    """Whether ``text`` is written as a length of time (a number and a unit)."""
    match = _SPAN.match(text)
    return bool(match) and match.group(2).lower() in _UNITS


def seconds(value: str | float | dt.timedelta) -> float:
    """A length of time in seconds: ``"30d"`` or ``"30 days"`` (s, m, h, d, w or their names), a timedelta, or seconds.

    Raises:
        ValueError: anything else, or a length that is not positive.
    """
    if isinstance(value, dt.timedelta):  # pandas' Timedelta is one too
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and is_span(value):
        number, unit = _SPAN.match(value).groups()
        result = float(number) * _UNITS[unit.lower()]
    else:
        raise ValueError(f"{value!r} is not a length of time such as '30d', '12h' or '90m'")
    if not result > 0:
        raise ValueError(f"{value!r} is not a positive length of time")
    return result
