"""``History``: a store's records as tidy pandas DataFrames, and the questions people ask of them.

History reads the database directly (SQLAlchemy Core queries, read into pandas) and needs no
master: point it at a copy of ``state.sqlite`` or at the PostgreSQL database a master uses. It only
ever reads. Filtering, joining and aggregating over many rows happens in SQL, and the rest in
vectorised pandas, so a history of a million builds answers in seconds. Times are UTC.

The frames (:mod:`.frames`) and the answers (failure rates, queue times, flaky tests, culprits,
log search) live in their own modules, which read through a :class:`~.reader.Reader`; this class
is their one front door, with what a notebook user sees and nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from ..results import Result
from . import answers, build_report, culprits, flaky, frames, replay, search
from .dtypes import TimeLike
from .reader import Reader

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..pipeline import Pipeline
    from .build_report import BuildReport
    from .replay import Replay


class History:
    """The build history in the database at ``db_url`` (a SQLAlchemy URL).

    Raises:
        StoreError: nothing at ``db_url`` holds a flowbot store.
    """

    def __init__(self, db_url: str):
        self._reader = Reader(db_url)
        #: The database's URL, as given.
        self.url = db_url

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine it reads with, for queries of your own."""
        return self._reader.engine

    def close(self) -> None:
        """Let go of the database's connections."""
        self._reader.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"History({sa.make_url(self.url).render_as_string()!r})"

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
        in Buildbot's order), ``submitted_at, started_at, finished_at`` (UTC), ``attempt`` (which
        build of its request it is: a builder's ``Retry`` runs one again), ``queue_time`` (from the
        request's submission, or from the previous attempt's end for a rerun after RETRY, whether
        the filters select that attempt or not) and ``duration`` (missing while the build runs).
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
        return frames.builds(
            self._reader,
            builder=builder,
            branch=branch,
            result=result,
            since=since,
            until=until,
            pull_request=pull_request,
        )

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
        finished_at, attempts`` (how many times it ran: its ``Retry``), ``duration``.
        ``since``/``until`` select by the build's start; ``result`` by the step's.
        """
        return frames.steps(self._reader, builder=builder, name=name, result=result, since=since, until=until)

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
        return frames.changes(self._reader, branch=branch, author=author, since=since, until=until)

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
        return frames.requests(self._reader, builder=builder, pending=pending, since=since, until=until)

    def workers(self) -> pd.DataFrame:
        """One row per worker the master has seen or that ran a build.

        Columns: ``worker, connected`` (bool), ``connected_at, disconnected_at, last_seen, builds``
        (how many it ran), ``last_build_at`` and ``info`` (what it reported: a dict).
        """
        return frames.workers(self._reader)

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
        return frames.test_results(self._reader, builder=builder, outcome=outcome, name=name, since=since, until=until)

    # -- answers ----------------------------------------------------------------------------------

    def failure_rate(
        self,
        by: str | None = "builder",
        freq: str = "D",
        builder: str | None = None,
        branch: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """The share of builds that failed, per period of ``freq`` (and per ``by``: builder, worker, branch).

        A build counts when it ended with a verdict on the code: SUCCESS or WARNINGS pass, FAILURE or
        EXCEPTION fail; SKIPPED, RETRY and CANCELLED builds, and running ones, are left out.

        Returns:
            Columns ``[by], period, builds, failed, failure_rate``; periods without builds are absent.

        Raises:
            ValueError: an unknown ``by`` or a bad ``freq``.
        """
        return answers.failure_rate(
            self._reader, by=by, freq=freq, builder=builder, branch=branch, since=since, until=until
        )

    def plot_failure_rate(
        self, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
    ) -> Axes:
        """Draw :func:`failure_rate` as one line per ``by`` value; returns the matplotlib Axes.

        ``freq`` is chosen from the span of the builds unless given (hours for a day of builds, days for
        weeks, weeks for a year), and the axes fit the data. Needs matplotlib (``pip install
        'flowbot[plot]'``); ``filters`` are those of :func:`failure_rate`.
        """
        return answers.plot_failure_rate(self._reader, by=by, freq=freq, ax=ax, **filters)

    def plot_durations(
        self, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
    ) -> Axes:
        """Draw the median duration of finished builds per period, one line per ``by`` value, the
        period and axes chosen as :meth:`plot_failure_rate` chooses them (the time axis in seconds,
        minutes, hours or days, as the data needs); ``filters``: ``builder, branch, since, until``."""
        return answers.plot_durations(self._reader, by=by, freq=freq, ax=ax, **filters)

    def plot_queue_times(
        self, by: str | None = "builder", freq: str | None = None, ax: Axes | None = None, **filters: Any
    ) -> Axes:
        """Draw the median time builds waited for a worker (as :meth:`queue_times` counts it) per
        period, one line per ``by`` value, chosen and fitted as :meth:`plot_durations`."""
        return answers.plot_queue_times(self._reader, by=by, freq=freq, ax=ax, **filters)

    def queue_times(
        self,
        by: str | None = "builder",
        builder: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """How long builds waited for a worker: ``builds, mean, p50, p95, max`` per ``by``, longest p95 first."""
        return answers.queue_times(self._reader, by=by, builder=builder, since=since, until=until)

    def slowest_steps(
        self,
        n: int = 10,
        builder: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """The ``n`` steps (by builder and step name) that take longest on average.

        Returns:
            Columns ``builder, step, runs, mean, p50, p95, max, total``, slowest mean first.
        """
        return answers.slowest_steps(self._reader, n=n, builder=builder, since=since, until=until)

    def worker_utilisation(
        self,
        freq: str = "D",
        worker: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> pd.DataFrame:
        """How busy each worker was per period of ``freq``: the time its builds ran over the period's length.

        A build that spans periods counts in each for the part it ran there; a running build counts
        until now. A worker that runs builds in parallel can exceed 1.0.

        Returns:
            Columns ``worker, period, builds`` (started in the period), ``busy, utilisation``; one row
            per worker and period from the first build to the last, idle periods included.
        """
        return answers.worker_utilisation(self._reader, freq=freq, worker=worker, since=since, until=until)

    def culprits(self, builder: str, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
        """For each time ``builder`` went from passing to failing, the changes that may have done it.

        Returns:
            One row per suspect change: ``branch, good_build, bad_build`` (build numbers),
            ``good_revision, bad_revision, failed_at`` (the bad build's start), and the change's
            ``change_id, revision, author, comments, when``. A transition with no recorded change in
            between (a forced build, say) still has a row, with the change's columns missing.

        Raises:
            NotFound: ``builder`` has no builds.
        """
        return culprits.culprits(self._reader, builder=builder, since=since, until=until)

    def flaky_tests(
        self,
        window: str | dt.timedelta = "7d",
        builder: str | None = None,
        min_flips: int = 3,
        min_blips: int = 3,
    ) -> pd.DataFrame:
        """Tests that look flaky in the last ``window`` of reader, most flaky first.

        Args:
            window: how far back from the newest build to look (``"7d"``, ``"12h"``, a timedelta):
                flakiness is about how a test behaves now, and a week holds enough runs to tell on a
                busy builder. Counting from the newest build rather than from now makes a copy of an
                old database answer the same way.
            builder: only this builder's runs.
            min_flips: flips that make a test flaky. A flip is between runs of one revision, which then
                both passed and failed, so a test with one is flaky anyway; 0 lists every test that failed.
            min_blips: blips that make a test flaky (see the module docstring): a lone failure may be
                a change broken and fixed at once, several are a pattern.

        Returns:
            One row per test: ``suite, classname, name, runs, passed, failed, flips`` (between runs of
            one revision on one builder), ``blips`` (runs unlike both runs beside them on their
            builder), ``mixed_revisions`` (revisions on which it both passed and failed, on any
            builders), ``flakiness`` (0 to 1), and the evidence: ``revisions`` and ``failed_builds``
            (up to five of each, newest first, as lists) and ``last_failed_at``.
        """
        return flaky.flaky_tests(self._reader, window=window, builder=builder, min_flips=min_flips, min_blips=min_blips)

    def search_logs(
        self,
        pattern: str,
        builder: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
        limit: int = 1000,
    ) -> pd.DataFrame:
        """The log lines that contain ``pattern`` (plain text, any case), newest builds first.

        Args:
            pattern: the text to find; at least three characters to use the index.
            builder, since, until: which builds to search (by the build's start).
            limit: at most this many lines.

        Returns:
            Columns ``build_id, builder, build_number, started_at, step_number, step, log,
            line_number`` (counted from 1, as editors do), ``stream`` (stdout, stderr or header) and
            ``line``.
        """
        return search.search_logs(self._reader, pattern=pattern, builder=builder, since=since, until=until, limit=limit)

    def replay(
        self,
        pipeline: Pipeline,
        since: TimeLike = None,
        until: TimeLike = None,
        workers: Mapping[str, int] | None = None,
        durations: Mapping[str, float] | None = None,
    ) -> Replay:
        """What ``pipeline`` would have built, where and when, had it run this history: a what-if.

        Changes received in [since, until) go through the pipeline's schedulers (their filters,
        tree-stable timers and timed runs, on the simulated clock); requests no change caused
        (forced, triggered, rebuilt) come when they were made, for the builders the pipeline has. The
        queue, collapsing, superseded heads, priorities, the builders' hooks, locks and the
        workers' limits are the master's own (:mod:`flowbot.analysis.simulation`); builds take
        their recorded step times (see :mod:`flowbot.analysis.replay`); no worker runs anything,
        and every worker is there.

        Args:
            pipeline: the candidate.
            since, until: the stretch of history to replay, by when things came in (all of it by default).
            workers: how many of each worker to simulate, by name (``{"linux": 3}``); the others count once.
            durations: the seconds a build takes, for builders that never ran in this reader.

        Returns:
            A :class:`Replay`: ``.builds``, a frame of the simulated builds (``builder, revision,
            submitted_at, started_at, finished_at, queue_time``... as :meth:`builds` has them),
            ``.requests``, and ``.compare()`` against what happened.

        Raises:
            ValueError: a builder the history never ran and ``durations`` does not time, or a bad ``workers``.
        """
        return replay.replay(
            self._reader, pipeline=pipeline, since=since, until=until, workers=workers, durations=durations
        )

    def build(self, build_id: int) -> BuildReport:
        """Build ``build_id``'s steps, logs and test results as frames (see :class:`BuildReport`).

        Raises:
            NotFound: no such build.
        """
        return build_report.build_report(self._reader, build_id=build_id)
