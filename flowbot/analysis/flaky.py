"""Flaky tests: tests whose outcome changes when the code does not.

Two kinds of evidence, both over a recent window of builds:

- the test both passed and failed on one revision (a rerun, or two builders, disagreed);
- its outcome flips between consecutive runs on the same builder more often than a real breakage
  and its fix would explain (those flip twice: to failing, and back).

The flakiness score is the share of consecutive runs (per builder) whose outcome differs: 0 for a
stable test, near 1 for one that alternates. Errors count as failures; skipped runs are left out.
Only tests that failed at least once in the window are read in full, which keeps the work small
on a large history: most tests never fail.
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
    window: str | dt.timedelta = "30d",
    builder: str | None = None,
    min_flips: int = 3,
) -> pd.DataFrame:
    """Tests that look flaky in the last ``window`` of history, most flaky first.

    Args:
        window: how far back from the newest build to look (``"30d"``, ``"12h"``, a timedelta).
            Counting from the newest build rather than from now makes a copy of an old database
            answer the same way.
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
    in_window = [_tr.build_id >= first_id, _b.started_at >= since]
    if builder is not None:
        in_window.append(_b.builder == builder)
    failing = (
        sa.select(*(_tr[c] for c in _TEST))
        .join(t.builds, _b.id == _tr.build_id)
        .where(*in_window, _tr.outcome.in_(["failed", "error"]))
        .distinct()
    )
    runs = history.read(
        sa.select(
            *(_tr[c] for c in _TEST), _b.builder, _b.id.label("build_id"), _b.revision, _b.started_at, _tr.outcome
        )
        .join(t.builds, _b.id == _tr.build_id)
        .where(*in_window, _tr.outcome != "skipped", sa.tuple_(*(_tr[c] for c in _TEST)).in_(failing))
    )
    if runs.empty:
        return _empty()
    return _score(runs, min_flips)


def _score(runs: pd.DataFrame, min_flips: int) -> pd.DataFrame:
    runs = runs.sort_values([*_TEST, "builder", "started_at", "build_id"], ignore_index=True)
    runs["failed"] = runs["outcome"] != "passed"
    per_builder = runs.groupby([*_TEST, "builder"], sort=False)["failed"]
    previous = per_builder.shift()
    runs["flip"] = previous.notna() & (previous != runs["failed"])
    runs["follows"] = previous.notna()

    by_revision = runs.dropna(subset=["revision"]).groupby([*_TEST, "revision"], sort=False)["failed"]
    mixed = by_revision.agg(["min", "max"])
    mixed = mixed[mixed["min"] != mixed["max"]].reset_index()

    tests = runs.groupby(_TEST, sort=False).agg(
        runs=("failed", "size"),
        failed=("failed", "sum"),
        flips=("flip", "sum"),
        follows=("follows", "sum"),
    )
    tests["passed"] = tests["runs"] - tests["failed"]
    tests["mixed_revisions"] = mixed.groupby(_TEST).size().reindex(tests.index, fill_value=0)
    tests["flakiness"] = (tests["flips"] / tests["follows"].where(tests["follows"] > 0)).fillna(0.0)
    tests = tests[(tests["mixed_revisions"] > 0) | (tests["flips"] >= min_flips)]
    if tests.empty:
        return _empty()

    newest_first = runs[runs["failed"]].sort_values("started_at", ascending=False)
    failures = newest_first.groupby(_TEST, sort=False)
    tests["failed_builds"] = failures["build_id"].agg(lambda ids: ids.head(EVIDENCE).tolist())
    tests["last_failed_at"] = timestamps(failures["started_at"].max().reindex(tests.index))
    mixed_newest = mixed.merge(runs.groupby([*_TEST, "revision"])["started_at"].max().reset_index())
    mixed_newest = mixed_newest.sort_values("started_at", ascending=False).groupby(_TEST, sort=False)
    tests["revisions"] = mixed_newest["revision"].agg(lambda revs: revs.head(EVIDENCE).tolist())
    none = pd.Series([[] for _ in range(len(tests))], index=tests.index, dtype=object)
    tests["revisions"] = tests["revisions"].where(tests["revisions"].notna(), none)
    for column in ("runs", "passed", "failed", "flips", "mixed_revisions"):
        tests[column] = tests[column].astype("int64")
    tests = tests.reset_index().sort_values(
        ["flakiness", "mixed_revisions", "failed"], ascending=False, ignore_index=True
    )
    return tests[COLUMNS]


def _empty() -> pd.DataFrame:
    dtypes = ["str"] * 3 + ["int64"] * 5 + ["float64", "object", "object", "datetime64[ns, UTC]"]
    return pd.DataFrame({column: pd.Series(dtype=d) for column, d in zip(COLUMNS, dtypes, strict=True)})
