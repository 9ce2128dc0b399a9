"""Flaky tests: tests whose outcome changes when the code does not.

Two kinds of evidence, both over a recent window of builds:

- the test both passed and failed on one revision (a rerun, or two builders, disagreed);
- its outcome flips between consecutive runs on the same builder more often than a real breakage
  and its fix would explain (those flip twice: to failing, and back).

The flakiness score is the share of consecutive runs (per builder, in build order) whose outcome
differs: 0 for a stable test, near 1 for one that alternates. Errors count as failures; skipped
runs are left out. The counting runs in SQL, so a window of millions of runs comes back as one row
per test that failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from .dtypes import span, timestamps

if TYPE_CHECKING:
    import datetime as dt

    from .history import History

_b, _tr = t.builds.c, t.test_results.c
_TEST = ["suite", "classname", "name"]
#: How many revisions and failing builds each row shows as evidence.
EVIDENCE = 5

COLUMNS = [
    *_TEST,
    "runs",
    "passed",
    "failed",
    "flips",
    "mixed_revisions",
    "flakiness",
    "revisions",
    "failed_builds",
    "last_failed_at",
]


def flaky_tests(
    history: History,
    window: str | dt.timedelta = "7d",
    builder: str | None = None,
    min_flips: int = 3,
) -> pd.DataFrame:
    """Tests that look flaky in the last ``window`` of history, most flaky first.

    Args:
        window: how far back from the newest build to look (``"7d"``, ``"12h"``, a timedelta):
            flakiness is about how a test behaves now, and a week holds enough runs to tell on a
            busy builder. Counting from the newest build rather than from now makes a copy of an
            old database answer the same way.
        builder: only this builder's runs.
        min_flips: flips that make a test flaky even when no revision saw it both pass and fail.

    Returns:
        One row per test: ``suite, classname, name, runs, passed, failed, flips,
        mixed_revisions`` (revisions on which it both passed and failed), ``flakiness`` (0 to 1),
        and the evidence: ``revisions`` and ``failed_builds`` (up to five of each, newest first,
        as lists) and ``last_failed_at``.
    """
    history.require("test_results")
    seconds = span(window, "window")
    history.check_builder(builder)
    newest = sa.select(sa.func.max(_b.started_at))
    if builder is not None:
        newest = newest.where(_b.builder == builder)
    with history.engine.connect() as conn:
        latest = conn.execute(newest).scalar()
        if latest is None:
            return _empty()
        since = latest - seconds
        # Build ids grow with start times, so the window is also a range of build ids, which the
        # test_results index serves without a join.
        first_id = conn.execute(sa.select(sa.func.min(_b.id)).where(_b.started_at >= since)).scalar()
    in_window = [_tr.build_id >= first_id, _b.started_at >= since, _tr.outcome != "skipped"]
    if builder is not None:
        in_window.append(_b.builder == builder)
    # Everything per run happens in SQL: a window has millions of runs, and what comes back is a
    # row per test that failed, plus the evidence for the few that look flaky.
    runs = (
        sa.select(
            *(_tr[c] for c in _TEST),
            _b.builder,
            _b.revision,
            _tr.build_id,
            sa.case((_tr.outcome == "passed", 0), else_=1).label("failed"),
        )
        .join(t.builds, _b.id == _tr.build_id)
        .where(*in_window)
        .cte("runs")
    )
    test = [runs.c[c] for c in _TEST]
    previous = sa.func.lag(runs.c.failed).over(partition_by=[*test, runs.c.builder], order_by=runs.c.build_id)
    ordered = sa.select(*test, runs.c.failed, previous.label("previous")).subquery("ordered")
    o = ordered.c
    tests = history.read(
        sa.select(
            *(o[c] for c in _TEST),
            sa.func.count().label("runs"),
            sa.func.sum(o.failed).label("failed"),
            sa.func.sum(sa.case((o.previous != o.failed, 1), else_=0)).label("flips"),
            sa.func.count(o.previous).label("follows"),
        )
        .group_by(*(o[c] for c in _TEST))
        .having(sa.func.sum(o.failed) > 0)
    )
    mixed = history.read(
        sa.select(*test, runs.c.revision, sa.func.max(runs.c.build_id).label("last"))
        .where(runs.c.revision.is_not(None))
        .group_by(*test, runs.c.revision)
        .having(sa.func.min(runs.c.failed) != sa.func.max(runs.c.failed))
    )
    flaky = _score(tests, mixed, min_flips)
    if flaky.empty:
        return _empty()
    failures = history.read(
        sa.select(*(_tr[c] for c in _TEST), _tr.build_id, _b.started_at)
        .join(t.builds, _b.id == _tr.build_id)
        .where(*in_window, _tr.outcome != "passed")
        .where(sa.tuple_(*(_tr[c] for c in _TEST)).in_(list(flaky.index)))
    )
    return _evidence(flaky, mixed, failures)


def _score(tests: pd.DataFrame, mixed: pd.DataFrame, min_flips: int) -> pd.DataFrame:
    """Per test counts and the flakiness score; only the tests with evidence of flakiness."""
    tests = tests.set_index(_TEST)
    for column in ("runs", "failed", "flips", "follows"):
        tests[column] = tests[column].astype("int64")
    tests["passed"] = tests["runs"] - tests["failed"]
    tests["mixed_revisions"] = mixed.groupby(_TEST).size().reindex(tests.index, fill_value=0).astype("int64")
    tests["flakiness"] = (tests["flips"] / tests["follows"].where(tests["follows"] > 0)).fillna(0.0)
    return tests[(tests["mixed_revisions"] > 0) | (tests["flips"] >= min_flips)]


def _evidence(flaky: pd.DataFrame, mixed: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Add the newest failing builds and mixed revisions of each flaky test (a few of each)."""
    newest = failures.sort_values("started_at", ascending=False).groupby(_TEST, sort=False)
    flaky["failed_builds"] = newest["build_id"].agg(lambda ids: ids.head(EVIDENCE).tolist())
    flaky["last_failed_at"] = timestamps(newest["started_at"].max().reindex(flaky.index))
    revisions = mixed.sort_values("last", ascending=False).groupby(_TEST, sort=False)["revision"]
    flaky["revisions"] = revisions.agg(lambda revs: revs.head(EVIDENCE).tolist()).reindex(flaky.index)
    none = pd.Series([[] for _ in range(len(flaky))], index=flaky.index, dtype=object)
    flaky["revisions"] = flaky["revisions"].where(flaky["revisions"].notna(), none)
    flaky = flaky.reset_index().sort_values(["flakiness", "mixed_revisions", "failed"], ascending=False)
    return flaky.reset_index(drop=True)[COLUMNS]


def _empty() -> pd.DataFrame:
    dtypes = ["str"] * 3 + ["int64"] * 5 + ["float64", "object", "object", "datetime64[ns, UTC]"]
    return pd.DataFrame({column: pd.Series(dtype=d) for column, d in zip(COLUMNS, dtypes, strict=True)})
