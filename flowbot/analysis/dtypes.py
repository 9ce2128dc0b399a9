"""How the store's values become pandas columns, and how people's arguments become the store's.

The store keeps times as float epoch seconds and results as Buildbot's integer codes; frames show
``datetime64[ns, UTC]`` timestamps, ``timedelta64[ns]`` durations and categorical results, every
conversion vectorised. Arguments are checked here so a typo gives a clear error, not an empty frame.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from .. import timespan
from ..junit import Outcome
from ..results import Result

#: Results in Buildbot's order, that of their codes (SUCCESS < WARNINGS < FAILURE < SKIPPED <
#: EXCEPTION < RETRY < CANCELLED), so results compare and sort: ``builds[builds.result > "WARNINGS"]``.
RESULT = pd.CategoricalDtype([result.name for result in sorted(Result)], ordered=True)
#: Test outcomes, passing first.
OUTCOME = pd.CategoricalDtype([outcome.value for outcome in Outcome])
#: Results that are a verdict on the code; the others (SKIPPED, RETRY, CANCELLED) say nothing of it.
VERDICTS = (Result.SUCCESS, Result.WARNINGS, Result.FAILURE, Result.EXCEPTION)
#: Verdicts that count as failing.
FAILING = (Result.FAILURE, Result.EXCEPTION)

TimeLike = str | float | int | dt.datetime | pd.Timestamp | None

#: Seconds a ``timedelta64[ns]`` can hold.
_LONGEST = pd.Timedelta.max.total_seconds()


def timestamps(seconds: pd.Series) -> pd.Series:
    """Epoch seconds to UTC timestamps (missing stays missing)."""
    return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")


def durations(seconds: pd.Series) -> pd.Series:
    """Seconds to timedeltas; a value no timedelta holds (infinite, or beyond 292 years) is missing.

    Such values come from broken reports in a store written before they were refused, and one of
    them must not make a whole frame unreadable.
    """
    seconds = seconds.astype("float64")
    return pd.to_timedelta(seconds.where(seconds.abs() < _LONGEST), unit="s").astype("timedelta64[ns]")


def results(codes: pd.Series) -> pd.Series:
    """Buildbot result codes to the categorical :data:`RESULT` (a running build's is missing)."""
    filled = codes.fillna(-1).astype(np.int64)
    return pd.Series(pd.Categorical.from_codes(filled, dtype=RESULT), index=codes.index, name=codes.name)


def result_codes(result: Result | str | int | list | tuple | None) -> list[int] | None:
    """``Result.FAILURE``, ``"failure"``, ``2`` or a list of them, as codes; None stays None."""
    if result is None:
        return None
    items = result if isinstance(result, (list, tuple, set)) else [result]
    codes = []
    for item in items:
        try:
            codes.append(int(Result[item.upper()] if isinstance(item, str) else Result(item)))
        except (KeyError, ValueError):
            names = ", ".join(r.name for r in Result)
            raise ValueError(f"unknown result {item!r}; use one of {names}") from None
    return codes


def outcomes(outcome: str | list | tuple | None) -> list[str] | None:
    """A test outcome or a list of them, checked."""
    if outcome is None:
        return None
    items = outcome if isinstance(outcome, (list, tuple, set)) else [outcome]
    known = list(OUTCOME.categories)
    for item in items:
        if str(item) not in known:
            raise ValueError(f"unknown test outcome {item!r}; use one of {', '.join(known)}")
    return [str(item) for item in items]


def epoch(when: TimeLike, what: str = "time") -> float | None:
    """A point in time as epoch seconds.

    Accepts a timestamp (a naive one is taken as UTC), an ISO date string, epoch seconds, or a
    span back from now such as ``"7d"`` or ``"12h"``.

    Raises:
        ValueError: anything else.
    """
    if when is None:
        return None
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    try:
        if isinstance(when, str) and timespan.is_span(when):
            return time.time() - timespan.seconds(when)
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError):
        stamp = None
    if stamp is None or stamp is pd.NaT:
        raise ValueError(f"{what}={when!r} is not a time: use a datetime, an ISO date or a span such as '7d'")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def span(value: str | dt.timedelta, what: str) -> float:
    """A positive length of time (``"30d"``, a timedelta) in seconds."""
    try:
        return timespan.seconds(value)
    except ValueError as exc:
        raise ValueError(f"{what}={exc}") from None


def offset(freq: str) -> pd.DateOffset:
    """A pandas frequency (``"h"``, ``"D"``, ``"W"``, ``"MS"``...), checked."""
    try:
        return to_offset(freq)
    except (ValueError, TypeError):
        raise ValueError(f"freq={freq!r} is not a pandas frequency such as 'h', 'D', 'W' or 'MS'") from None


def bin_edges(first: pd.Timestamp, last: pd.Timestamp, freq: pd.DateOffset) -> pd.DatetimeIndex:
    """Edges of the periods of ``freq`` that cover ``first`` to ``last``, the first one at or before ``first``."""
    start = first.floor(freq) if _fixed(freq) else freq.rollback(first.floor("D"))
    return pd.date_range(start, last + freq, freq=freq)


def _fixed(freq: pd.DateOffset) -> bool:
    try:
        pd.Timedelta(freq)
    except ValueError:
        return False
    return True
