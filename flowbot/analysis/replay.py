"""What-if: the recorded changes and requests replayed through a candidate pipeline on a simulated clock.

:meth:`History.replay <flowbot.analysis.History.replay>` reads what came in (changes as they were
received, and the requests no change caused: forced, triggered, rebuilt, at the time they were
made) and how long steps took, then runs the candidate pipeline's schedulers, queue and workers
on a simulated clock (:mod:`.simulation`) and sets the builds that gives against those that ran.

How long a simulated build takes: the recorded mean of each of its steps, per builder, worker and
step name (a worker that never ran the builder takes the builder's mean over all workers). A
simulated build of a request that was built (the same recorded request, or the same builder and
revision) keeps that build's own length, scaled by the ratio of the two workers' means and of
the candidate's steps to the recorded ones, so the spread of real build times survives the replay.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..builder import Builder
from ..records import BuildRequest, Change, SourceStamp
from ..results import Result
from ..store import schema as t
from ..store.matrices import with_cell
from . import dtypes
from .answers import queue_seconds
from .columns import Kind, read_columns
from .dtypes import TimeLike, epoch, timestamps
from .simulation import Simulation

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from .reader import Reader

_b, _r, _s, _c = t.builds.c, t.buildrequests.c, t.steps.c, t.changes.c
#: Builds of each builder whose steps are timed, at most (see :func:`_step_means`).
TIMED_BUILDS = 2000


class StepTimes:
    """How long a builder's steps take on a worker, from the recorded means (see the module's doc).

    Args:
        means: ``{(builder, worker, step): (seconds in all, runs)}`` of the recorded steps.
        builds: ``{key: (seconds, worker)}`` of recorded builds, by ``("request", id)`` and by
            ``(builder, revision)``.
        given: seconds a build of a builder takes, for builders the history never ran.
    """

    def __init__(
        self,
        means: Mapping[tuple[str, str, str], tuple[float, int]],
        builds: Mapping[Any, tuple[float, str]],
        given: Mapping[str, float] | None = None,
    ):
        self._mean = {key: total / runs for key, (total, runs) in means.items() if runs}
        by_builder: dict[tuple[str, str], list[float]] = {}
        self._recorded_steps: dict[str, dict[str, None]] = {}
        for (builder, _, step), (total, runs) in means.items():
            sums = by_builder.setdefault((builder, step), [0.0, 0])
            sums[0] += total
            sums[1] += runs
            self._recorded_steps.setdefault(builder, {})[step] = None
        self._builder_mean = {key: total / runs for key, (total, runs) in by_builder.items() if runs}
        self._builds = builds
        self._given = dict(given or {})
        self._cached: dict[tuple[str, str], list[float]] = {}
        self._recorded_total: dict[tuple[str, str], float] = {}
        #: Steps of the candidate that the history never timed, as ``builder: step``.
        self.untimed: set[str] = set()

    def known(self, builder: str) -> bool:
        """Whether builds of ``builder`` can be timed (it ran, or it was given a length)."""
        return builder in self._given or builder in self._recorded_steps

    def _step(self, builder: str, worker: str, step: str) -> float | None:
        mean = self._mean.get((builder, worker, step))
        return mean if mean is not None else self._builder_mean.get((builder, step))

    def _means(self, builder: Builder, worker: str) -> list[float]:
        key = (builder.name, worker)
        means = self._cached.get(key)
        if means is None:
            if builder.name in self._given:
                each = self._given[builder.name] / len(builder.steps)
                means = [each] * len(builder.steps)
            else:
                means = []
                for step in builder.step_names:
                    mean = self._step(builder.name, worker, step)
                    if mean is None:
                        self.untimed.add(f"{builder.name}: {step}")
                    means.append(mean or 0.0)
            self._cached[key] = means
        return means

    def _total(self, builder: str, worker: str) -> float:
        """The mean length of a recorded build of ``builder`` on ``worker``, step by recorded step."""
        key = (builder, worker)
        total = self._recorded_total.get(key)
        if total is None:
            steps = self._recorded_steps.get(builder, {})
            total = self._recorded_total[key] = sum(self._step(builder, worker, s) or 0.0 for s in steps)
        return total

    def __call__(self, builder: Builder, worker: str, request: BuildRequest, recorded: int | None) -> list[float]:
        means = self._means(builder, worker)
        build = self._builds.get(("request", recorded)) if recorded is not None else None
        if build is None and request.revision is not None:
            build = self._builds.get((builder.name, request.revision))
        if build is None or builder.name in self._given:
            return means
        seconds, ran_on = build
        total = self._total(builder.name, ran_on)
        return [mean * seconds / total for mean in means] if total > 0 else means


@dataclass(frozen=True)
class Replay:
    """What a candidate pipeline would have done with a stretch of reader.

    Attributes:
        builds: one row per simulated build: ``request, builder, branch, revision, worker,
            submitted_at, started_at, finished_at, queue_time, duration``, by start.
        requests: one row per simulated request: ``request, builder, branch, revision,
            submitted_at, recorded_request`` (the recorded one it replays, for those no change
            caused), ``collapsed_into`` (the request it was merged into, else missing),
            ``superseded_by`` (the newer head's request that withdrew it or stopped its build, see
            ``Builder(cancel_superseded=)``; else missing).
        recorded: the builds that really ran for the requests of the same stretch (``builder,
            queue_time``), and ``collapsed``: how many requests of each builder were collapsed.
        notes: what the replay could not follow (steps never timed, requests for builders the
            candidate lacks).
    """

    builds: pd.DataFrame
    requests: pd.DataFrame
    recorded: pd.DataFrame
    collapsed: pd.Series
    notes: tuple[str, ...]

    def compare(self) -> pd.DataFrame:
        """The replay against what happened, per builder and for all (the last row, ``(all)``):
        ``builds`` run, requests ``collapsed``, queue time ``p50`` and ``p95``; each as
        ``recorded`` and ``replayed`` columns (a column MultiIndex)."""
        replayed_collapsed = self.requests.loc[self.requests["collapsed_into"].notna(), "builder"].value_counts()
        sides = {
            "recorded": (self.recorded, self.collapsed),
            "replayed": (self.builds, replayed_collapsed),
        }
        columns = {}
        for side, (builds, collapsed) in sides.items():
            waited = builds.groupby("builder")["queue_time"]
            everything = builds["queue_time"]
            columns[("builds", side)] = _with_all(waited.size(), len(builds))
            columns[("collapsed", side)] = _with_all(collapsed, int(collapsed.sum()))
            columns[("queue p50", side)] = _with_all(waited.quantile(0.5), everything.quantile(0.5))
            columns[("queue p95", side)] = _with_all(waited.quantile(0.95), everything.quantile(0.95))
        frame = pd.DataFrame(columns)
        builders = sorted(set(frame.index) - {"(all)"})
        frame = frame.reindex([*builders, "(all)"])
        for what in ("builds", "collapsed"):
            for side in sides:
                frame[(what, side)] = frame[(what, side)].fillna(0).astype("int64")
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        frame.index.name = "builder"
        return frame

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{note}</li>" for note in self.notes)
        return (
            f"<p><b>Replay</b>: {len(self.requests)} requests, {len(self.builds)} builds</p>"
            + self.compare().to_html()
            + (f"<ul>{notes}</ul>" if notes else "")
        )


def _with_all(per_builder: pd.Series, total: Any) -> pd.Series:
    return pd.concat([per_builder, pd.Series({"(all)": total})])


def replay(
    reader: Reader,
    pipeline: Pipeline,
    since: TimeLike = None,
    until: TimeLike = None,
    workers: Mapping[str, int] | None = None,
    durations: Mapping[str, float] | None = None,
) -> Replay:
    """What ``pipeline`` would have built, where and when, had it run this history: a what-if."""
    start, end = epoch(since, "since"), epoch(until, "until")
    with _collecting_later():
        return _replay(reader, pipeline, start, end, workers, durations)


def _replay(
    reader: Reader,
    pipeline: Pipeline,
    start: float | None,
    end: float | None,
    workers: Mapping[str, int] | None,
    durations: Mapping[str, float] | None,
) -> Replay:
    with reader.engine.connect() as conn:
        changes, received = _changes(conn, start, end)
        timed = {s.name for s in pipeline.schedulers if s.timed}
        made = [r for r in _requests_made(conn, start, end) if r[1] not in timed]
        recorded = _recorded_builds(reader, conn, start, end)
        means = _step_means(reader, conn, start, end, recorded)
        collapsed = _collapsed(reader, conn, start, end)
    times = StepTimes(means, _by_request_and_revision(recorded), durations)
    notes = []
    builders = {b.name for b in pipeline.builders}
    untimed = sorted(b for b in builders if not times.known(b))
    if untimed:
        raise ValueError(
            f"builder(s) {untimed} never ran in this reader, so nothing says how long their builds take: "
            f"give durations={{{untimed[0]!r}: seconds, ...}}"
        )
    replayed = [request for request, _ in made if request.builder in builders]
    dropped = len(made) - len(replayed)
    if dropped:
        notes.append(f"{dropped} recorded request(s) for builders the pipeline does not have were left out")
    simulation = Simulation(pipeline, times, workers)
    simulation.changes(changes, received)
    simulation.requests_made(replayed)
    arrivals = received + [r.submitted_at for r in replayed]
    if arrivals or start is not None:
        begin = start if start is not None else min(arrivals)
        simulation.timed(begin, end if end is not None else max(arrivals, default=begin))
    simulation.run()
    notes += [f"step {step} never ran in this history: it takes no time" for step in sorted(times.untimed)]
    real = recorded[["builder", "queue_time"]].assign(queue_time=lambda f: dtypes.durations(f["queue_time"]))
    requests = _requests(simulation)
    return Replay(_builds(simulation, requests), requests, real, collapsed, tuple(notes))


def _window(column: sa.ColumnElement, start: float | None, end: float | None) -> list[sa.ColumnElement]:
    where = []
    if start is not None:
        where.append(column >= start)
    if end is not None:
        where.append(column < end)
    return where


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value) if value not in ("", "{}") else {}
    return value or {}


def _changes(conn: sa.Connection, start: float | None, end: float | None) -> tuple[list[Change], list[float]]:
    """The changes received in [start, end), oldest first, with their files; and when each came."""
    window = _window(_c.received_at, start, end)
    names = ("id", "repository", "branch", "revision", "project", "codebase", "author", "committer", "comments")
    names += ("category", "revlink")
    query = sa.select(*(_c[name] for name in names), _c.when_at, _c.properties, _c.received_at).where(*window)
    rows = conn.execute(query.order_by(_c.id)).all()
    ids = sa.select(_c.id).where(*window).scalar_subquery()
    files: dict[int, list[str]] = {}
    for change_id, path in conn.execute(
        sa.select(t.change_files.c.change_id, t.change_files.c.path).where(t.change_files.c.change_id.in_(ids))
    ):
        files.setdefault(change_id, []).append(path)
    changes = [
        Change(
            **dict(zip(names, row, strict=False)),
            when=row[-3],
            properties=_json(row[-2]),
            files=tuple(files.get(row[0], ())),
        )
        for row in rows
    ]
    return changes, [row[-1] for row in rows]


def _requests_made(conn: sa.Connection, start: float | None, end: float | None) -> list[tuple[BuildRequest, str]]:
    """The recorded requests that no change caused, submitted in [start, end), with their scheduler's name."""
    bs = t.buildsets.c
    caused = sa.exists().where(t.buildset_changes.c.buildset_id == _r.buildset_id)
    cells = "cell" in {column["name"] for column in sa.inspect(conn).get_columns("buildrequests")}
    fields = (
        _r.id, _r.buildset_id, _r.builder, _r.priority, _r.submitted_at, bs.scheduler, bs.reason, bs.properties,
        bs.parent_build_id, _r.cell if cells else sa.null(),
    )  # fmt: skip
    made = (
        sa.select(*fields)
        .join(t.buildsets, bs.id == _r.buildset_id)
        .where(~caused, *_window(_r.submitted_at, start, end))
    )
    rows = conn.execute(made.order_by(_r.submitted_at, _r.id)).all()
    ss = t.sourcestamps.c
    stamps: dict[int, list[SourceStamp]] = {}
    sets = made.with_only_columns(_r.buildset_id).scalar_subquery()
    for row in conn.execute(
        sa.select(ss.buildset_id, ss.codebase, ss.repository, ss.branch, ss.revision, ss.project)
        .where(ss.buildset_id.in_(sets))
        .order_by(ss.id)
    ):
        stamps.setdefault(row[0], []).append(SourceStamp(*row[1:]))
    return [
        (
            BuildRequest(
                id=row[0],
                buildset_id=row[1],
                builder=row[2],
                sourcestamps=tuple(stamps.get(row[1], ())),
                reason=row[6] or "",
                properties=with_cell({name: tuple(value) for name, value in _json(row[7]).items()}, _json(row[9])),
                priority=row[3] or 0,
                submitted_at=row[4],
                parent_build_id=row[8],
                cell=_json(row[9]) or None,
            ),
            row[5],
        )
        for row in rows
    ]


def _recorded_builds(reader: Reader, conn: sa.Connection, start: float | None, end: float | None) -> pd.DataFrame:
    """The builds of the requests submitted in [start, end): ``builder, worker, revision, request_id,
    result`` and, in seconds, ``duration`` and ``queue_time``."""
    kinds = {
        "build_id": Kind.INT,
        "builder": Kind.TEXT,
        "worker": Kind.TEXT,
        "revision": Kind.TEXT,
        "request_id": Kind.INT,
        "result": Kind.CODE,
        "submitted_at": Kind.TIME,
        "started_at": Kind.TIME,
        "finished_at": Kind.TIME,
    }
    columns = [_b.builder, _b.worker, _b.revision, _b.request_id, _b.result]
    query = reader.with_requests(
        sa.select(
            _b.id.label("build_id"),
            *columns,
            reader.submitted_at.label("submitted_at"),
            _b.started_at,
            _b.finished_at,
        ).where(*_window(reader.submitted_at, start, end))
    )
    frame = pd.DataFrame(read_columns(conn, query, kinds))
    if not frame["build_id"].is_monotonic_increasing:  # rows come as the database read them
        frame = frame.sort_values("build_id", ignore_index=True)
    frame["queue_time"] = queue_seconds(frame)
    frame["duration"] = frame["finished_at"] - frame["started_at"]
    return frame


def _by_request_and_revision(builds: pd.DataFrame) -> dict[Any, tuple[float, str]]:
    """Each finished build's length and worker, by its request and by its builder and revision (the
    last build of either wins; builds that were lost with their worker do not count)."""
    done = builds[builds["duration"].notna() & (builds["result"] != int(Result.RETRY))]
    lengths = list(zip(done["duration"].tolist(), done["worker"].tolist(), strict=True))
    revisions = zip(done["builder"].tolist(), done["revision"].tolist(), strict=True)
    found: dict[Any, tuple[float, str]] = dict(zip(revisions, lengths, strict=True))
    found.update(zip((("request", r) for r in done["request_id"].tolist()), lengths, strict=True))
    return found


def _step_means(
    reader: Reader, conn: sa.Connection, start: float | None, end: float | None, builds: pd.DataFrame
) -> dict[tuple[str, str, str], tuple[float, int]]:
    """``{(builder, worker, step): (seconds in all, runs)}`` of the finished steps of ``builds`` (those of
    the requests submitted in [start, end)): of each builder's builds, at most :data:`TIMED_BUILDS`,
    every k-th by number, which give the same means as all of them, several times faster."""
    every = (builds["builder"].value_counts() // TIMED_BUILDS).clip(lower=1)
    every = every[every > 1]
    took = _s.finished_at - _s.started_at
    query = reader.with_requests(
        sa.select(_b.builder, _b.worker, _s.name, sa.func.sum(took), sa.func.count())
        .select_from(t.steps.join(t.builds, _b.id == _s.build_id))
        .where(_s.finished_at.is_not(None), _s.started_at.is_not(None), *_window(reader.submitted_at, start, end))
        .group_by(_b.builder, _b.worker, _s.name)
    )
    if len(every):
        step = sa.case({name: int(k) for name, k in every.items()}, value=_b.builder, else_=1)
        query = query.where(_b.number % step == 0)
    rows = conn.execute(query)
    return {(builder, worker, step): (float(total), int(runs)) for builder, worker, step, total, runs in rows}


def _collapsed(reader: Reader, conn: sa.Connection, start: float | None, end: float | None) -> pd.Series:
    """How many requests of each builder, submitted in [start, end), were collapsed (SKIPPED, never built)."""
    built = sa.exists().where(_b.request_id == _r.id)
    # Counted here rather than grouped in SQL: SQLite would walk the builder index to group, reading
    # each request at random; filtered, the few skipped ones come from one pass over the table.
    skipped = conn.execute(
        sa.select(_r.builder).where(_r.result == int(Result.SKIPPED), ~built, *_window(_r.submitted_at, start, end))
    ).scalars()
    return pd.Series(Counter(skipped), dtype="int64")


def _requests(simulation: Simulation) -> pd.DataFrame:
    requests, recorded = zip(*simulation.requests, strict=True) if simulation.requests else ((), ())
    collapsed = simulation.collapsed
    ids = [r.id for r in requests]
    stamps = [r.sourcestamps[0] if r.sourcestamps else None for r in requests]
    return pd.DataFrame(
        {
            "request": pd.array(ids, dtype="int64"),
            "builder": [r.builder for r in requests],
            "branch": [s.branch if s else None for s in stamps],
            "revision": [s.revision if s else None for s in stamps],
            "submitted_at": timestamps(pd.Series([r.submitted_at for r in requests], dtype="float64")),
            "recorded_request": pd.array(recorded, dtype="Int64"),
            "collapsed_into": pd.array([collapsed.get(i) for i in ids], dtype="Int64"),
            "superseded_by": pd.array([simulation.superseded.get(i) for i in ids], dtype="Int64"),
        }
    )


def _builds(simulation: Simulation, requests: pd.DataFrame) -> pd.DataFrame:
    """The simulated builds, with what ``requests`` (the :func:`_requests` frame) says of their requests."""
    built, workers, started, finished = zip(*simulation.builds, strict=True) if simulation.builds else ((),) * 4
    ids = np.fromiter((r.id for r in built), dtype="int64", count=len(built))
    of = requests.iloc[pd.Index(requests["request"]).get_indexer(ids)].reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "request": ids,
            "builder": of["builder"],
            "branch": of["branch"],
            "revision": of["revision"],
            "worker": list(workers),
            "submitted_at": of["submitted_at"],
            "started_at": timestamps(pd.Series(started, dtype="float64")),
            "finished_at": timestamps(pd.Series(finished, dtype="float64")),
        }
    )
    frame = frame.sort_values(["started_at", "request"], ignore_index=True)
    frame["queue_time"] = frame["started_at"] - frame["submitted_at"]
    frame["duration"] = frame["finished_at"] - frame["started_at"]
    return frame


@contextmanager
def _collecting_later() -> Iterator[None]:
    """Hold off Python's cycle collector: a replay makes millions of objects that live until it ends
    and form no cycles, which the collector would otherwise walk again and again (a fifth of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
