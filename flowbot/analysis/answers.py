"""Trends over time: failure rate, queue times, slowest steps and worker utilisation.

Each answer selects only the columns it needs, lets SQL filter (and aggregate, where SQLite and
PostgreSQL agree on how), and finishes in vectorised pandas. Periods are labelled by their start,
in UTC, and follow pandas frequencies ("h", "D", "W", "MS"...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from .dtypes import FAILING, VERDICTS, TimeLike, bin_edges, durations, offset, timestamps

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .reader import Reader

_b, _s = t.builds.c, t.steps.c
_GROUPS = {"builder": _b.builder, "worker": _b.worker, "branch": _b.branch}


def _group_column(by: str | None) -> list[sa.ColumnElement]:
    if by is None:
        return []
    if by not in _GROUPS:
        raise ValueError(f"by={by!r}: group by one of {', '.join(map(repr, _GROUPS))} or None")
    return [_GROUPS[by]]


def periods(seconds: pd.Series, freq: str) -> pd.Series:
    """The start of the period of ``freq`` each time (epoch seconds) falls in."""
    step = offset(freq)
    stamps = timestamps(seconds)
    if stamps.empty:
        return stamps
    edges = bin_edges(stamps.min(), stamps.max(), step)
    return pd.Series(edges[edges.searchsorted(stamps, side="right") - 1], index=seconds.index)


_before = t.builds.alias("before")
#: When the attempt before a build (of the same request) ended; missing for a first attempt.
PREVIOUS_END = (
    sa.select(_before.c.finished_at)
    .where(_before.c.request_id == _b.request_id, _before.c.id < _b.id)
    .order_by(_before.c.id.desc())
    .limit(1)
    .scalar_subquery()
)


def needs_previous_end(result: Any = None, since: Any = None) -> bool:
    """Whether a filter on ``result`` or ``since`` may leave out the attempt a rerun waited from.

    A request's builds share their builder and branch, and a rerun starts after the attempt
    before it: filters on those or on ``until`` keep that attempt, so the frame shows its end.
    The others need :data:`PREVIOUS_END`, a lookup per build, which unfiltered reads save.
    """
    return result is not None or since is not None


def queue_seconds(frame: pd.DataFrame) -> pd.Series:
    """Seconds each build waited: from its request's submission, or a rerun from the previous attempt's end.

    ``frame`` has ``submitted_at, started_at`` in epoch seconds, and ``previous_end`` (see
    :data:`PREVIOUS_END`) or, holding every attempt of its requests, ``request_id, finished_at`` in build order.
    """
    waited_from = frame["submitted_at"]
    if "previous_end" in frame:
        waited_from = frame["previous_end"].fillna(waited_from)
    elif frame["request_id"].duplicated().any():
        waited_from = frame.groupby("request_id")["finished_at"].shift().fillna(waited_from)
    return frame["started_at"] - waited_from


def failure_rate(
    reader: Reader,
    by: str | None = "builder",
    freq: str = "D",
    builder: str | None = None,
    branch: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """The share of builds that failed, per period of ``freq`` (and per ``by``: builder, worker, branch)."""
    keys = _group_column(by)
    offset(freq)  # a bad freq fails before the query runs
    query = sa.select(*keys, _b.started_at, _b.result).where(_b.result.in_([int(r) for r in VERDICTS]))
    frame = reader.read(reader.build_filter(query, builder=builder, branch=branch, since=since, until=until))
    frame["period"] = periods(frame["started_at"], freq)
    frame["failed"] = frame["result"].isin([int(r) for r in FAILING])
    names = [by] if by else []
    out = (
        frame.groupby([*names, "period"], dropna=False, sort=True)["failed"]
        .agg(builds="size", failed="sum")
        .reset_index()
    )
    out["failed"] = out["failed"].astype("int64")
    out["failure_rate"] = out["failed"] / out["builds"]
    return out


#: Plot periods, shortest first, with their length in seconds and how an axis names them.
_PERIODS = (("min", 60, "minute"), ("h", 3600, "hour"), ("D", 86400, "day"), ("W", 7 * 86400, "week"))
#: At most this many periods on a plot's axis, when the plot chooses them.
_POINTS = 60


def period_for(seconds: float) -> str:
    """The shortest period that shows a span of ``seconds`` in at most :data:`_POINTS` periods (months past that)."""
    return next((freq for freq, length, _ in _PERIODS if seconds / length <= _POINTS), "MS")


def plot_failure_rate(
    reader: Reader, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
) -> Axes:
    """Draw :func:`failure_rate` as one line per ``by`` value; returns the matplotlib Axes."""
    plt = _pyplot()
    if freq is None:
        span = reader.read(
            reader.build_filter(
                sa.select(sa.func.min(_b.started_at).label("first"), sa.func.max(_b.started_at).label("last")).where(
                    _b.result.in_([int(r) for r in VERDICTS])
                ),
                **filters,
            )
        )
        first, last = span["first"].iloc[0], span["last"].iloc[0]
        freq = period_for(last - first if pd.notna(first) else 0.0)
    rates = failure_rate(reader, by=by, freq=freq, **filters)
    wide = rates.pivot(index="period", columns=by, values="failure_rate") if by else rates.set_index("period")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    if wide.empty:
        ax.set_title("Failure rate: no finished builds")
        return ax
    wide[["failure_rate"] if not by else wide.columns].plot(ax=ax, marker="o", legend=bool(by))
    top = float(wide.max().max()) if by else float(wide["failure_rate"].max())
    ax.set_ylim(0, min(1.0, max(top, 0.05)) * 1.1)
    ax.set_ylabel("share of builds failing")
    ax.set_xlabel(_period_name(freq))
    ax.set_title(f"Failure rate per {by}" if by else "Failure rate")
    return ax


def plot_durations(
    reader: Reader, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
) -> Axes:
    """Draw the median time finished builds took per period, one line per ``by`` value."""
    took = (_b.finished_at - _b.started_at).label("seconds")
    query = sa.select(*_group_column(by), _b.started_at, took).where(_b.finished_at.is_not(None))
    frame = reader.read(reader.build_filter(query, **filters))
    return _plot_medians(frame, by, freq, ax, "Build duration")


def plot_queue_times(
    reader: Reader, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
) -> Axes:
    """Draw the median time builds waited for a worker per period (as :func:`queue_times` counts
    it), one line per ``by`` value."""
    query = reader.with_requests(
        sa.select(
            *_group_column(by), _b.request_id, reader.submitted_at.label("submitted_at"), _b.started_at, _b.finished_at
        )
    )
    if needs_previous_end(since=filters.get("since")):
        query = query.add_columns(PREVIOUS_END.label("previous_end"))
    frame = reader.read(reader.build_filter(query, **filters).order_by(_b.id))
    frame["seconds"] = queue_seconds(frame)
    return _plot_medians(frame, by, freq, ax, "Queue time")


#: Units a time axis may use, longest first: the longest that the highest point reaches.
_UNITS = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))


def _plot_medians(frame: pd.DataFrame, by: str | None, freq: str | None, ax: Axes | None, what: str) -> Axes:
    """Medians of ``frame``'s ``seconds`` per period of its ``started_at`` (the period chosen from
    their span unless given), with the time axis in a unit that fits them."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    if frame.empty:
        ax.set_title(f"{what}: no builds")
        return ax
    freq = freq or period_for(float(frame["started_at"].max() - frame["started_at"].min()))
    frame = frame.assign(period=periods(frame["started_at"], freq))
    medians = frame.groupby([*([by] if by else []), "period"], dropna=False)["seconds"].median()
    wide = medians.unstack(by) if by else medians.to_frame(what)
    top = float(wide.max().max())
    unit, length = next(((name, n) for name, n in _UNITS if top >= n), _UNITS[-1])
    (wide / length).plot(ax=ax, marker="o", legend=bool(by))
    ax.set_ylim(0, max(top / length, 1.0) * 1.1)
    ax.set_ylabel(f"median, {unit}")
    ax.set_xlabel(_period_name(freq))
    ax.set_title(f"{what} per {by}" if by else what)
    return ax


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'flowbot[plot]'") from None
    return plt


def _period_name(freq: str) -> str:
    names = {freq_: name for freq_, _, name in _PERIODS}
    return names.get(freq, freq if freq != "MS" else "month")


def queue_times(
    reader: Reader,
    by: str | None = "builder",
    builder: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """How long builds waited for a worker: ``builds, mean, p50, p95, max`` per ``by``, longest p95 first."""
    keys = _group_column(by)
    query = reader.with_requests(
        sa.select(*keys, _b.request_id, reader.submitted_at.label("submitted_at"), _b.started_at, _b.finished_at)
    )
    if needs_previous_end(since=since):
        query = query.add_columns(PREVIOUS_END.label("previous_end"))
    frame = reader.read(reader.build_filter(query, builder=builder, since=since, until=until).order_by(_b.id))
    frame["waited"] = queue_seconds(frame)
    names = [by] if by else []
    grouped = frame.groupby(names, dropna=False)["waited"] if names else frame.assign(_all=0).groupby("_all")["waited"]
    out = grouped.agg(builds="size", mean="mean", max="max")
    out["p50"], out["p95"] = grouped.quantile(0.5), grouped.quantile(0.95)
    for column in ("mean", "p50", "p95", "max"):
        out[column] = durations(out[column])
    out = out[["builds", "mean", "p50", "p95", "max"]].sort_values("p95", ascending=False)
    return out.reset_index(drop=not names)


def slowest_steps(
    reader: Reader,
    n: int = 10,
    builder: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """The ``n`` steps (by builder and step name) that take longest on average."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: ask for at least one step")
    took = _s.finished_at - _s.started_at
    base = (
        sa.select(_b.builder, _s.name.label("step"))
        .join(t.builds, _b.id == _s.build_id)
        .where(_s.finished_at.is_not(None), _s.started_at.is_not(None))
    )
    base = reader.build_filter(base, builder=builder, since=since, until=until)
    top = reader.read(
        base.add_columns(
            sa.func.count().label("runs"),
            sa.func.avg(took, type_=sa.Float).label("mean"),
            sa.func.max(took).label("max"),
            sa.func.sum(took).label("total"),
        )
        .group_by(_b.builder, _s.name)
        .order_by(sa.desc("mean"), _b.builder, _s.name)
        .limit(n)
    )
    pairs = list(zip(top["builder"], top["step"], strict=True))
    runs = reader.read(base.add_columns(took.label("took")).where(sa.tuple_(_b.builder, _s.name).in_(pairs)))
    took_by_step = runs.groupby(["builder", "step"])["took"]
    quantiles = pd.DataFrame({"p50": took_by_step.quantile(0.5), "p95": took_by_step.quantile(0.95)})
    top = top.join(quantiles, on=["builder", "step"])
    for column in ("mean", "p50", "p95", "max", "total"):
        top[column] = durations(top[column].astype("float64"))
    return top[["builder", "step", "runs", "mean", "p50", "p95", "max", "total"]]


def worker_utilisation(
    reader: Reader,
    freq: str = "D",
    worker: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """How busy each worker was per period of ``freq``: the time its builds ran over the period's length."""
    step = offset(freq)
    reader.check_worker(worker)
    query = sa.select(_b.worker, _b.started_at, _b.finished_at)
    if worker is not None:
        query = query.where(_b.worker == worker)
    frame = reader.read(reader.build_filter(query, since=since, until=until))
    columns = ["worker", "period", "builds", "busy", "utilisation"]
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(columns, _UTILISATION_DTYPES, strict=True)})
    now = pd.Timestamp.now(tz="UTC").timestamp()
    start = frame["started_at"].to_numpy()
    end = np.maximum(frame["finished_at"].fillna(now).to_numpy(), start)
    edges = bin_edges(timestamps(frame["started_at"]).min(), pd.Timestamp(end.max(), unit="s", tz="UTC"), step)
    seconds = edges.asi8 / 1e9
    first = np.searchsorted(seconds, start, side="right") - 1
    last = np.maximum(np.searchsorted(seconds, end, side="left") - 1, first)
    # One row per (build, period it ran in), all at once.
    spans = last - first + 1
    build = np.repeat(np.arange(len(frame)), spans)
    period = first[build] + np.arange(len(build)) - np.repeat(np.cumsum(spans) - spans, spans)
    overlap = np.minimum(end[build], seconds[period + 1]) - np.maximum(start[build], seconds[period])
    workers = frame["worker"].to_numpy()
    busy = pd.Series(overlap).groupby([workers[build], period]).sum()
    started = pd.Series(1, index=range(len(frame))).groupby([workers, first]).sum()
    grid = pd.MultiIndex.from_product([sorted(set(workers)), range(len(seconds) - 1)], names=["worker", "bin"])
    out = pd.DataFrame({"busy": busy.reindex(grid, fill_value=0.0), "builds": started.reindex(grid, fill_value=0)})
    out = out.reset_index()
    length = np.diff(seconds)[out["bin"].to_numpy()]
    out["utilisation"] = out["busy"] / length
    out["busy"] = durations(out["busy"])
    out["period"] = edges[out["bin"].to_numpy()]
    out["builds"] = out["builds"].astype("int64")
    return out[columns]


_UTILISATION_DTYPES = ["str", "datetime64[ns, UTC]", "int64", "timedelta64[ns]", "float64"]
