"""``History``: a store's records as tidy pandas DataFrames, and the questions people ask of them.

History reads the database directly (SQLAlchemy Core queries, read into pandas) and needs no
master: point it at a copy of ``state.sqlite`` or at the PostgreSQL database a master uses. It only
ever reads. Filtering, joining and aggregating over many rows happens in SQL, and the rest in
vectorised pandas, so a history of a million builds answers in seconds. Times are UTC.

The answers (failure rates, queue times, flaky tests, culprits, log search) live in their own
modules; this class gives them one front door and checks the arguments people pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..errors import NotFound, StoreError
from ..results import Result
from ..store import schema as t
from . import answers, build_report, culprits, flaky, replay, search
from .columns import Kind, read_columns
from .dtypes import OUTCOME, TimeLike, durations, epoch, outcomes, result_codes, results, timestamps
from .matrices import add_cell_columns

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


#: The dtype of an empty column of each SQL type, as its values come when there are some.
_DTYPES = {int: "int64", float: "float64", str: "str", bool: "bool"}


def _dtype(kind: sa.types.TypeEngine) -> str:
    try:
        return _DTYPES.get(kind.python_type, "object")
    except NotImplementedError:  # a type SQLAlchemy cannot tell (an expression's, say)
        return "object"


class History:
    """The build history in the database at ``db_url`` (a SQLAlchemy URL).

    Raises:
        StoreError: nothing at ``db_url`` holds a flowbot store.
    """

    def __init__(self, db_url: str):
        try:
            url = sa.make_url(db_url)
        except sa.exc.ArgumentError:
            raise StoreError(f"not a database URL: {db_url!r}") from None
        if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
            # Connecting would create an empty file and hide the typo.
            raise StoreError(f"no SQLite database at {url.database!r}")
        self.url = db_url
        self.engine = sa.create_engine(url)
        try:
            tables = set(sa.inspect(self.engine).get_table_names())
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot read {url.render_as_string()}: {getattr(exc, 'orig', None) or exc}") from None
        if "builds" not in tables:
            self.engine.dispose()
            raise StoreError(f"{url.render_as_string()} holds no flowbot store (no builds table)")
        self.dialect = self.engine.dialect.name
        #: The database's tables, to tell an older schema from a current one.
        self.tables = tables
        #: When a build's request was submitted: the build's own copy, or in a store from before
        #: builds kept one, the request's (queries then join it: :meth:`with_requests`).
        built_columns = {column["name"] for column in sa.inspect(self.engine).get_columns("builds")}
        self.submitted_at = _b.submitted_at if "submitted_at" in built_columns else _r.submitted_at
        #: The pull request a build built (none in a store from before builds kept one).
        self.pull_request_id = (
            _b.pull_request_id if "pull_request_id" in built_columns else sa.cast(sa.null(), sa.Integer)
        )
        #: A log chunk's compressed text; in a store from before chunks were compressed, none.
        chunk_columns = {column["name"] for column in sa.inspect(self.engine).get_columns("log_chunks")}
        self.compressed = t.log_chunks.c.compressed if "compressed" in chunk_columns else sa.null()

    def close(self) -> None:
        """Let go of the database's connections."""
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"History({sa.make_url(self.url).render_as_string()!r})"

    # -- reading ----------------------------------------------------------------------------------

    def read(self, query: sa.Executable) -> pd.DataFrame:
        """Run ``query`` and return its rows as a DataFrame (columns named as the query labels them).

        SQLAlchemy builds and runs the query; the rows are then taken straight from the DBAPI
        cursor into pandas, which on a million rows takes a third less time than ``pandas.read_sql``
        spends going through SQLAlchemy's row objects. That skips SQLAlchemy's conversion of values, so
        it suits columns of numbers and text, which the drivers return as they are; JSON columns
        go through :meth:`read_converted`. No rows give an empty frame typed by the query's columns
        (``int64`` for an integer column...), so that an answer about nothing has a full one's dtypes.
        """
        with self.engine.connect() as conn:
            result = conn.execute(query)
            columns = list(result.keys())
            rows = result.cursor.fetchall()
        if rows:
            return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
        types = [column.type for column in query.selected_columns]
        return pd.DataFrame({name: pd.Series(dtype=_dtype(kind)) for name, kind in zip(columns, types, strict=True)})

    def read_converted(self, query: sa.Executable) -> pd.DataFrame:
        """Like :meth:`read`, with every value converted by its column's SQLAlchemy type (JSON, say)."""
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def with_requests(self, query: sa.Select) -> sa.Select:
        """``query`` of builds, joined to their requests when :attr:`submitted_at` is read from them."""
        return query if self.submitted_at is _b.submitted_at else query.join(t.buildrequests, _r.id == _b.request_id)

    def require(self, table: str) -> None:
        """Fail clearly on a database whose schema predates ``table``."""
        if table not in self.tables:
            raise StoreError(f"the database has no {table} table yet: start a master on it once to upgrade it")

    def check_builder(self, builder: str | None) -> None:
        """Raise :class:`NotFound` when ``builder`` has no builds (a typo, most often)."""
        self._check_known(_b.builder, builder, "builder")

    def check_worker(self, worker: str | None) -> None:
        """Raise :class:`NotFound` when ``worker`` ran no builds."""
        self._check_known(_b.worker, worker, "worker")

    def _check_known(self, column: sa.Column, value: str | None, what: str) -> None:
        if value is None:
            return
        with self.engine.connect() as conn:
            if conn.execute(sa.select(_b.id).where(column == value).limit(1)).first() is not None:
                return
            known = ", ".join(conn.execute(sa.select(column).distinct().order_by(column)).scalars()) or "none yet"
        raise NotFound(f"no builds of {what} {value!r} in the history ({what}s: {known})")

    def build_filter(
        self,
        query: sa.Select,
        *,
        builder: str | None = None,
        branch: str | None = None,
        result: Any = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> sa.Select:
        """``query`` narrowed to builds of ``builder`` (checked), ``branch``, ``result``, started in [since, until)."""
        self.check_builder(builder)
        if builder is not None:
            query = query.where(_b.builder == builder)
        if branch is not None:
            query = query.where(_b.branch == branch)
        codes = result_codes(result)
        if codes is not None:
            query = query.where(_b.result.in_(codes))
        start, end = epoch(since, "since"), epoch(until, "until")
        if start is not None:
            query = query.where(_b.started_at >= start)
        if end is not None:
            query = query.where(_b.started_at < end)
        return query

    def selected_builds(self, **filters: Any) -> sa.Select | None:
        """The ids of the builds that :meth:`build_filter`'s ``filters`` select; None when there are none.

        Steps and test results are filtered with ``build_id IN (...)`` rather than through their
        join with builds: the databases then find the few builds first (by their indexes) and
        only those builds' rows, instead of walking millions of rows and joining each.
        """
        if all(value is None for value in filters.values()):
            return None
        return self.build_filter(sa.select(_b.id), **filters)

    # -- frames -----------------------------------------------------------------------------------

    def builds(
        self,
        builder: str | None = None,
        branch: str | None = None,
        result: Result | str | list | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
        pull_request: int | None = None,
    ) -> pd.DataFrame:
        """One row per build, oldest first.

        Columns: ``build_id, builder, number, worker, branch, revision``, ``pull_request`` (the
        number of the pull request or merge request it built, if any), ``result`` (categorical,
        in Buildbot's order), ``submitted_at, started_at, finished_at`` (UTC), ``queue_time``
        (from the request's submission, or from the previous attempt's end for a rerun after
        RETRY, whether the filters select that attempt or not) and ``duration`` (missing while the
        build runs).
        A matrix's builds have its ``matrix_id`` and a column per axis with their cell's value
        (see :mod:`.matrices`).

        Args:
            since, until: builds that started in [since, until): datetimes, ISO dates, or spans
                back from now such as ``"7d"``.
            result: a :class:`Result`, its name, or a list of them.
            pull_request: only the builds of the pull requests of this number (of any repository).

        Raises:
            NotFound: ``builder`` has no builds, or no build built pull request ``pull_request``.
        """
        columns = {
            **_BUILDS,
            "submitted_at": (self.submitted_at, Kind.TIME),
            "pull_request": (self.pull_request_id, Kind.CODE),
        }
        if answers.needs_previous_end(result=result, since=since):
            columns["previous_end"] = (answers.PREVIOUS_END, Kind.TIME)
        query = self.with_requests(sa.select(*(column.label(name) for name, (column, _) in columns.items())))
        query = self.build_filter(query, builder=builder, branch=branch, result=result, since=since, until=until)
        numbers = self._pull_request_numbers()
        if pull_request is not None:
            ids = [i for i, number in numbers.items() if number == pull_request]
            if not ids:
                known = ", ".join(f"#{n}" for n in sorted(set(numbers.values()))) or "none yet"
                raise NotFound(f"no builds of pull request #{pull_request} in the history (pull requests: {known})")
            query = query.where(self.pull_request_id.in_(ids))
        with self.engine.connect() as conn:
            frame = pd.DataFrame(read_columns(conn, query, {name: kind for name, (_, kind) in columns.items()}))
            if not frame["build_id"].is_monotonic_increasing:  # rows come as the database read them
                frame = frame.sort_values("build_id", ignore_index=True)
            if "matrices" in self.tables:  # not in a store older than matrix builds
                frame = add_cell_columns(conn, frame)
        frame["queue_time"] = durations(answers.queue_seconds(frame))
        frame["duration"] = durations(frame["finished_at"] - frame["started_at"])
        frame["result"] = results(frame["result"])
        frame["pull_request"] = frame["pull_request"].map(numbers).astype("Int64")
        for column in ("submitted_at", "started_at", "finished_at"):
            frame[column] = timestamps(frame[column])
        return frame.drop(columns=["request_id", "previous_end"], errors="ignore")

    def _pull_request_numbers(self) -> dict[int, int]:
        """The number of each pull request the store knows, by its id."""
        if "pull_requests" not in self.tables:
            return {}
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(t.pull_requests.c.id, t.pull_requests.c.number)).all())

    def steps(
        self,
        builder: str | None = None,
        name: str | None = None,
        result: Result | str | list | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """One row per step, in build order.

        Columns: ``step_id, build_id, builder, build_number, number, name, result, started_at,
        finished_at, duration``. ``since``/``until`` select by the build's start; ``result`` by the step's.
        """
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
        ).join(t.builds, _b.id == _s.build_id)
        chosen = self.selected_builds(builder=builder, since=since, until=until)
        if chosen is not None:
            query = query.where(_s.build_id.in_(chosen))
        if name is not None:
            query = query.where(_s.name == name)
        codes = result_codes(result)
        if codes is not None:
            query = query.where(_s.result.in_(codes))
        frame = self.read(query.order_by(_s.build_id, _s.number))
        frame["result"] = results(frame["result"])
        frame["duration"] = durations(frame["finished_at"] - frame["started_at"])
        frame["started_at"], frame["finished_at"] = timestamps(frame["started_at"]), timestamps(frame["finished_at"])
        return frame

    def changes(
        self,
        branch: str | None = None,
        author: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """One row per change received, oldest first.

        Columns: ``change_id, repository, branch, revision, author, committer, comments, project,
        codebase, category, when`` (the commit's time), ``received_at`` and ``files`` (a list).
        ``since``/``until`` select by when the change was received.
        """
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
        frame = self.read(query.order_by(c.id))
        files = self.read(
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
        self,
        builder: str | None = None,
        pending: bool | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """One row per build request, pending and finished, oldest first.

        Columns: ``request_id, buildset_id, builder, priority, reason, branch, revision`` (of the
        buildset's first source), ``submitted_at, claimed_at, claimed_by, complete_at, result,
        pending`` and ``waiting`` (until its claim, or until now while unclaimed).
        ``since``/``until`` select by submission.
        """
        self._check_requested(builder)
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
        frame = self.read(query.order_by(_r.id))
        frame["pending"] = frame["complete_at"].isna()
        now = pd.Timestamp.now(tz="UTC").timestamp()
        frame["waiting"] = durations(frame["claimed_at"].fillna(now) - frame["submitted_at"])
        frame["result"] = results(frame["result"])
        for column in ("submitted_at", "claimed_at", "complete_at"):
            frame[column] = timestamps(frame[column])
        return frame

    def _check_requested(self, builder: str | None) -> None:
        # Like check_builder, but a builder whose requests wait for a first build counts too.
        if builder is None:
            return
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(_r.id).where(_r.builder == builder).limit(1)).first()
        if found is None:
            self.check_builder(builder)  # a builder with neither requests nor builds

    def workers(self) -> pd.DataFrame:
        """One row per worker the master has seen or that ran a build.

        Columns: ``worker, connected`` (bool), ``connected_at, disconnected_at, last_seen, builds``
        (how many it ran), ``last_build_at`` and ``info`` (what it reported: a dict).
        """
        w = t.workers.c
        seen = self.read_converted(
            sa.select(w.name.label("worker"), w.connected_at, w.disconnected_at, w.last_seen, w.info).order_by(w.name)
        )
        ran = self.read(
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
        self,
        builder: str | None = None,
        outcome: str | list | None = None,
        name: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """One row per test case run, in build order.

        Columns: ``build_id, step_id, builder, build_number, branch, revision, started_at`` (the
        build's), ``suite, classname, name, outcome`` (categorical: passed, failed, error, skipped),
        ``duration, message``.
        """
        self.require("test_results")
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
        chosen = self.selected_builds(builder=builder, since=since, until=until)
        if chosen is not None:
            query = query.where(_tr.build_id.in_(chosen))
        wanted = outcomes(outcome)
        if wanted is not None:
            query = query.where(_tr.outcome.in_(wanted))
        if name is not None:
            query = query.where(_tr.name == name)
        frame = self.read(query.order_by(_tr.build_id, _tr.id))
        frame["started_at"] = timestamps(frame["started_at"])
        frame["outcome"] = frame["outcome"].astype(OUTCOME)
        frame["duration"] = durations(frame["duration"])
        return frame

    # -- answers ----------------------------------------------------------------------------------

    failure_rate = answers.failure_rate
    plot_failure_rate = answers.plot_failure_rate
    queue_times = answers.queue_times
    slowest_steps = answers.slowest_steps
    worker_utilisation = answers.worker_utilisation
    culprits = culprits.culprits
    flaky_tests = flaky.flaky_tests
    search_logs = search.search_logs
    replay = replay.replay
    build = build_report.build_report
