"""The store's records as tidy DataFrames: builds, steps, changes, requests, workers, test results.

Each function reads with a :class:`~.reader.Reader`; :class:`~flowbot.analysis.History` offers
them to people, with the documentation of their columns.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from ..errors import NotFound
from ..results import Result
from ..store import schema as t
from . import answers
from .columns import Kind, read_columns
from .dtypes import OUTCOME, TimeLike, durations, epoch, outcomes, result_codes, results, timestamps
from .matrices import add_cell_columns
from .reader import Reader

_b, _r, _s, _tr = t.builds.c, t.buildrequests.c, t.steps.c, t.test_results.c

#: What :meth:`History.builds` reads, and how each column travels (see :mod:`.columns`).
_BUILDS = {
    "build_id": (_b.id, Kind.INT),
    "builder": (_b.builder, Kind.TEXT),
    "number": (_b.number, Kind.INT),
    "worker": (_b.worker, Kind.TEXT),
    "branch": (_b.branch, Kind.TEXT),
    "revision": (_b.revision, Kind.TEXT),
    "pull_request": (_b.pull_request_id, Kind.CODE),  # its id, then its number
    "result": (_b.result, Kind.CODE),
    "submitted_at": (_b.submitted_at, Kind.TIME),  # or the request's, in an older store
    "started_at": (_b.started_at, Kind.TIME),
    "finished_at": (_b.finished_at, Kind.TIME),
    "request_id": (_b.request_id, Kind.INT),
}


def builds(
    reader: Reader,
    builder: str | None = None,
    branch: str | None = None,
    result: Result | str | list | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
    pull_request: int | None = None,
) -> pd.DataFrame:
    """One row per build, oldest first."""
    columns = {
        **_BUILDS,
        "submitted_at": (reader.submitted_at, Kind.TIME),
        "pull_request": (reader.pull_request_id, Kind.CODE),
        "attempt": (reader.attempt, Kind.INT),
    }
    if answers.needs_previous_end(result=result, since=since):
        columns["previous_end"] = (answers.PREVIOUS_END, Kind.TIME)
    query = reader.with_requests(sa.select(*(column.label(name) for name, (column, _) in columns.items())))
    query = reader.build_filter(query, builder=builder, branch=branch, result=result, since=since, until=until)
    numbers = _pull_request_numbers(reader)
    if pull_request is not None:
        ids = [i for i, number in numbers.items() if number == pull_request]
        if not ids:
            known = ", ".join(f"#{n}" for n in sorted(set(numbers.values()))) or "none yet"
            raise NotFound(f"no builds of pull request #{pull_request} in the history (pull requests: {known})")
        query = query.where(reader.pull_request_id.in_(ids))
    with reader.engine.connect() as conn:
        frame = pd.DataFrame(read_columns(conn, query, {name: kind for name, (_, kind) in columns.items()}))
        if not frame["build_id"].is_monotonic_increasing:  # rows come as the database read them
            frame = frame.sort_values("build_id", ignore_index=True)
        if "matrices" in reader.tables:  # not in a store older than matrix builds
            frame = add_cell_columns(conn, frame)
    frame["queue_time"] = durations(answers.queue_seconds(frame))
    frame["duration"] = durations(frame["finished_at"] - frame["started_at"])
    frame["result"] = results(frame["result"])
    frame["pull_request"] = frame["pull_request"].map(numbers).astype("Int64")
    for column in ("submitted_at", "started_at", "finished_at"):
        frame[column] = timestamps(frame[column])
    return frame.drop(columns=["request_id", "previous_end"], errors="ignore")


def _pull_request_numbers(reader: Reader) -> dict[int, int]:
    """The number of each pull request the store knows, by its id."""
    if "pull_requests" not in reader.tables:
        return {}
    with reader.engine.connect() as conn:
        return dict(conn.execute(sa.select(t.pull_requests.c.id, t.pull_requests.c.number)).all())


def steps(
    reader: Reader,
    builder: str | None = None,
    name: str | None = None,
    result: Result | str | list | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """One row per step, in build order."""
    query = sa.select(
        _s.id.label("step_id"),
        _s.build_id,
        _b.builder,
        _b.number.label("build_number"),
        _s.number,
        _s.name,
        _s.result,
        _s.started_at,
        _s.finished_at,
        reader.step_attempts.label("attempts"),
    ).join(t.builds, _b.id == _s.build_id)
    chosen = reader.selected_builds(builder=builder, since=since, until=until)
    if chosen is not None:
        query = query.where(_s.build_id.in_(chosen))
    if name is not None:
        query = query.where(_s.name == name)
    codes = result_codes(result)
    if codes is not None:
        query = query.where(_s.result.in_(codes))
    frame = reader.read(query.order_by(_s.build_id, _s.number))
    frame["result"] = results(frame["result"])
    frame["duration"] = durations(frame["finished_at"] - frame["started_at"])
    frame["started_at"], frame["finished_at"] = timestamps(frame["started_at"]), timestamps(frame["finished_at"])
    return frame


def changes(
    reader: Reader,
    branch: str | None = None,
    author: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """One row per change received, oldest first."""
    c = t.changes.c
    query = sa.select(
        c.id.label("change_id"),
        c.repository,
        c.branch,
        c.revision,
        c.author,
        c.committer,
        c.comments,
        c.project,
        c.codebase,
        c.category,
        c.when_at.label("when"),
        c.received_at,
    )
    if branch is not None:
        query = query.where(c.branch == branch)
    if author is not None:
        query = query.where(c.author == author)
    start, end = epoch(since, "since"), epoch(until, "until")
    if start is not None:
        query = query.where(c.received_at >= start)
    if end is not None:
        query = query.where(c.received_at < end)
    frame = reader.read(query.order_by(c.id))
    files = reader.read(
        sa.select(t.change_files.c.change_id, t.change_files.c.path).where(
            t.change_files.c.change_id.in_(query.with_only_columns(c.id).scalar_subquery())
        )
    )
    by_change = files.groupby("change_id")["path"].agg(list)
    frame["files"] = frame["change_id"].map(by_change).astype(object)  # lists, even of no changes
    no_files = pd.Series([[] for _ in range(len(frame))], index=frame.index, dtype=object)
    frame["files"] = frame["files"].where(frame["files"].notna(), no_files)
    frame["when"], frame["received_at"] = timestamps(frame["when"]), timestamps(frame["received_at"])
    return frame


def requests(
    reader: Reader,
    builder: str | None = None,
    pending: bool | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """One row per build request, pending and finished, oldest first."""
    _check_requested(reader, builder)
    ss, inner = t.sourcestamps.c, t.sourcestamps.alias("first_source").c
    first_source = sa.select(sa.func.min(inner.id)).where(inner.buildset_id == _r.buildset_id).scalar_subquery()
    query = (
        sa.select(
            _r.id.label("request_id"),
            _r.buildset_id,
            _r.builder,
            _r.priority,
            t.buildsets.c.reason,
            ss.branch,
            ss.revision,
            _r.submitted_at,
            _r.claimed_at,
            _r.claimed_by,
            _r.complete_at,
            _r.result,
        )
        .join(t.buildsets, t.buildsets.c.id == _r.buildset_id)
        .outerjoin(t.sourcestamps, ss.id == first_source)
    )
    if builder is not None:
        query = query.where(_r.builder == builder)
    if pending is not None:
        query = query.where(_r.complete_at.is_(None) if pending else _r.complete_at.is_not(None))
    start, end = epoch(since, "since"), epoch(until, "until")
    if start is not None:
        query = query.where(_r.submitted_at >= start)
    if end is not None:
        query = query.where(_r.submitted_at < end)
    frame = reader.read(query.order_by(_r.id))
    frame["pending"] = frame["complete_at"].isna()
    now = pd.Timestamp.now(tz="UTC").timestamp()
    frame["waiting"] = durations(frame["claimed_at"].fillna(now) - frame["submitted_at"])
    frame["result"] = results(frame["result"])
    for column in ("submitted_at", "claimed_at", "complete_at"):
        frame[column] = timestamps(frame[column])
    return frame


def _check_requested(reader: Reader, builder: str | None) -> None:
    # Like check_builder, but a builder whose requests wait for a first build counts too.
    if builder is None:
        return
    with reader.engine.connect() as conn:
        found = conn.execute(sa.select(_r.id).where(_r.builder == builder).limit(1)).first()
    if found is None:
        reader.check_builder(builder)  # a builder with neither requests nor builds


def workers(reader: Reader) -> pd.DataFrame:
    """One row per worker the master has seen or that ran a build."""
    w = t.workers.c
    seen = reader.read_converted(
        sa.select(w.name.label("worker"), w.connected_at, w.disconnected_at, w.last_seen, w.info).order_by(w.name)
    )
    ran = reader.read(
        sa.select(
            _b.worker, sa.func.count().label("builds"), sa.func.max(_b.started_at).label("last_build_at")
        ).group_by(_b.worker)
    )
    frame = seen.merge(ran, on="worker", how="outer").sort_values("worker", ignore_index=True)
    frame["connected"] = frame["connected_at"].notna() & frame["disconnected_at"].isna()
    frame["builds"] = frame["builds"].fillna(0).astype("int64")
    for column in ("connected_at", "disconnected_at", "last_seen", "last_build_at"):
        frame[column] = timestamps(frame[column])
    columns = ["worker", "connected", "connected_at", "disconnected_at", "last_seen", "builds", "last_build_at"]
    return frame[[*columns, "info"]]


def test_results(
    reader: Reader,
    builder: str | None = None,
    outcome: str | list | None = None,
    name: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pd.DataFrame:
    """One row per test case run, in build order."""
    reader.require("test_results")
    query = sa.select(
        _tr.build_id,
        _tr.step_id,
        _b.builder,
        _b.number.label("build_number"),
        _b.branch,
        _b.revision,
        _b.started_at,
        _tr.suite,
        _tr.classname,
        _tr.name,
        _tr.outcome,
        _tr.duration,
        _tr.message,
    ).join(t.builds, _b.id == _tr.build_id)
    chosen = reader.selected_builds(builder=builder, since=since, until=until)
    if chosen is not None:
        query = query.where(_tr.build_id.in_(chosen))
    wanted = outcomes(outcome)
    if wanted is not None:
        query = query.where(_tr.outcome.in_(wanted))
    if name is not None:
        query = query.where(_tr.name == name)
    frame = reader.read(query.order_by(_tr.build_id, _tr.id))
    frame["started_at"] = timestamps(frame["started_at"])
    frame["outcome"] = frame["outcome"].astype(OUTCOME)
    frame["duration"] = durations(frame["duration"])
    return frame
