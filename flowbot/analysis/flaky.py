"""Flaky tests: tests whose outcome changes when the code does not.

Three kinds of evidence, over a recent window of builds:

- the test both passed and failed on one revision (a rerun, or two builders, disagreed);
- its outcome flips between runs of one revision on one builder, in build order: the code did not
  change, the outcome did;
- blips: a run whose outcome differs from both the run before it and the run after it on its
  builder (one failure between passes, or one pass between failures), whatever the revisions.
  CI that builds each commit once never reruns the same code, and there a flaky test shows as
  failures that come and go at once; a change that breaks a test and the one that fixes it make
  a run of failures instead, and no blip unless the fix is the very next build. So blips are
  weaker evidence, and a test needs several (``min_blips``) to be listed on their account.

The flakiness score is the share of a test's runs that contradict their neighbours: flips among
the runs that followed one of the same revision on their builder, plus blips among the runs with
a run before and after them there. 0 for a stable test, near 1 for one that alternates. Errors
count as failures; skipped runs and runs of builds without a revision are left out. A window's
runs (millions, on a busy CI) are read a column at a time and counted with numpy: sorting them by
test in SQL took the databases several times as long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from .columns import Kind, read_columns
from .dtypes import span, timestamps

if TYPE_CHECKING:
    import datetime as dt

    from .reader import Reader

_b, _tr = t.builds.c, t.test_results.c
_TEST = ["suite", "classname", "name"]
#: How many revisions and failing builds each row shows as evidence.
EVIDENCE = 5
_BUILDS = {"build_id": Kind.INT, "builder": Kind.TEXT, "revision": Kind.TEXT, "started_at": Kind.TIME}
_RUNS = {"build_id": Kind.INT, **dict.fromkeys(_TEST, Kind.TEXT), "failed": Kind.INT}

COLUMNS = [
    *_TEST,
    "runs",
    "passed",
    "failed",
    "flips",
    "blips",
    "mixed_revisions",
    "flakiness",
    "revisions",
    "failed_builds",
    "last_failed_at",
]


def flaky_tests(
    reader: Reader,
    window: str | dt.timedelta = "7d",
    builder: str | None = None,
    min_flips: int = 3,
    min_blips: int = 3,
) -> pd.DataFrame:
    """Tests that look flaky in the last ``window`` of reader, most flaky first."""
    reader.require("test_results")
    seconds = span(window, "window")
    reader.check_builder(builder)
    newest = sa.select(sa.func.max(_b.started_at))
    if builder is not None:
        newest = newest.where(_b.builder == builder)
    with reader.engine.connect() as conn:
        latest = conn.execute(newest).scalar()
        if latest is None:
            return _empty()
        since = latest - seconds
        # Build ids grow with start times, so the window is also a range of build ids, which the
        # test_results index serves without a join.
        first_id = conn.execute(sa.select(sa.func.min(_b.id)).where(_b.started_at >= since)).scalar()
        builds = sa.select(_b.id.label("build_id"), _b.builder, _b.revision, _b.started_at).where(
            _b.id >= first_id, _b.started_at >= since
        )
        runs = sa.select(
            _tr.build_id, *(_tr[c] for c in _TEST), sa.case((_tr.outcome == "passed", 0), else_=1).label("failed")
        ).where(_tr.build_id >= first_id, _tr.outcome != "skipped")
        if builder is not None:
            builds = builds.where(_b.builder == builder)
            runs = runs.where(_tr.build_id.in_(builds.with_only_columns(_b.id)))
        builds = read_columns(conn, builds, _BUILDS)
        runs, tests, revisions = _in_window(read_columns(conn, runs, _RUNS), builds)
    mixed = _mixed(runs, tests, revisions)
    flaky = _score(_counts(runs, tests), mixed, min_flips, min_blips)
    if flaky.empty:
        return _empty()
    failed = runs[runs["failed"] == 1].join(tests, on="test")
    failures = failed.merge(flaky.index.to_frame(index=False), on=_TEST)[[*_TEST, "build_id", "started_at"]]
    return _evidence(flaky, mixed, failures)


def _in_window(
    runs: dict[str, np.ndarray], builds: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The runs of ``builds`` (the window's), the tests they ran, and the builds' revisions.

    Tests, builders and revisions are numbered in the runs (``test``, ``builder``, ``revision``:
    -1 for none) so that millions of runs are grouped and counted as numbers; the tests' frame
    has the suite, classname and name of each test number, and the revisions array each revision.
    """
    at = pd.Index(builds["build_id"]).get_indexer(runs["build_id"])
    known = at >= 0  # not: runs of builds that started before the window, or after the builds were read
    if not known.all():
        runs = {column: values[known] for column, values in runs.items()}
        at = at[known]
    revision, revisions = pd.factorize(builds["revision"])
    test = np.zeros(len(at), dtype=np.int64)
    for column in _TEST:
        codes, uniques = pd.factorize(runs[column])
        test = pd.factorize(test * len(uniques) + codes)[0]
    first = pd.Series(test).drop_duplicates().index  # numbered in order of appearance
    frame = pd.DataFrame(
        {
            "build_id": runs["build_id"],
            "test": test,
            "builder": pd.factorize(builds["builder"])[0][at],
            "revision": revision[at],
            "started_at": builds["started_at"][at],
            "failed": runs["failed"],
        }
    )
    tests = pd.DataFrame({column: runs[column][first] for column in _TEST})
    return frame, tests, np.asarray(revisions, dtype=object)


def _counts(runs: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Per test that failed at least once: its runs, failures, flips and blips, and the runs that
    could have been either (``follows``: after a run of the same code; ``inner``: between two runs)."""
    test, builder, revision, build, failed = (
        runs[c].to_numpy() for c in ("test", "builder", "revision", "build_id", "failed")
    )
    size = len(tests)
    # Each test's runs of each revision on each builder, in build order (a build without a
    # revision proves nothing): a flip is a run unlike the one before it
    order = np.lexsort((build, revision, builder, test))
    t, b, r, f = test[order], builder[order], revision[order], failed[order]
    follows = (t[1:] == t[:-1]) & (b[1:] == b[:-1]) & (r[1:] == r[:-1]) & (r[1:] >= 0)
    flips = follows & (f[1:] != f[:-1])
    counted = {
        "follows": np.bincount(t[1:][follows], minlength=size),
        "flips": np.bincount(t[1:][flips], minlength=size),
    }
    # Each test's runs on each builder, in build order: a blip is a run unlike both runs beside it
    order = np.lexsort((build, builder, test))
    t, b, f = test[order], builder[order], failed[order]
    inner = (t[1:-1] == t[:-2]) & (t[1:-1] == t[2:]) & (b[1:-1] == b[:-2]) & (b[1:-1] == b[2:])
    blips = inner & (f[1:-1] != f[:-2]) & (f[1:-1] != f[2:])
    counted |= {
        "inner": np.bincount(t[1:-1][inner], minlength=size),
        "blips": np.bincount(t[1:-1][blips], minlength=size),
    }
    tests = tests.assign(
        runs=np.bincount(test, minlength=size),
        failed=np.bincount(test, weights=failed, minlength=size).astype(np.int64),
        **counted,
    )
    return tests[tests["failed"] > 0]


def _mixed(runs: pd.DataFrame, tests: pd.DataFrame, revisions: np.ndarray) -> pd.DataFrame:
    """Each test's revisions on which it both passed and failed, with the newest build of each."""
    runs = runs[runs["revision"] >= 0]
    pairs = runs.groupby(["test", "revision"], sort=False).agg(
        total=("failed", "size"), failed=("failed", "sum"), last=("build_id", "max")
    )
    pairs = pairs[(pairs["failed"] > 0) & (pairs["failed"] < pairs["total"])].reset_index()
    pairs["revision"] = revisions[pairs["revision"]]
    return pairs.join(tests, on="test")[[*_TEST, "revision", "last"]]


def _score(tests: pd.DataFrame, mixed: pd.DataFrame, min_flips: int, min_blips: int) -> pd.DataFrame:
    """Per test counts and the flakiness score; only the tests with evidence of flakiness."""
    tests = tests.set_index(_TEST)
    for column in ("runs", "failed", "flips", "follows", "blips", "inner"):
        tests[column] = tests[column].astype("int64")
    tests["passed"] = tests["runs"] - tests["failed"]
    tests["mixed_revisions"] = mixed.groupby(_TEST).size().reindex(tests.index, fill_value=0).astype("int64")
    judged = tests["follows"] + tests["inner"]
    tests["flakiness"] = ((tests["flips"] + tests["blips"]) / judged.where(judged > 0)).fillna(0.0).clip(upper=1.0)
    return tests[(tests["mixed_revisions"] > 0) | (tests["flips"] >= min_flips) | (tests["blips"] >= min_blips)]


def _evidence(flaky: pd.DataFrame, mixed: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Add the newest failing builds and mixed revisions of each flaky test (a few of each)."""
    newest = failures.sort_values(["started_at", "build_id"], ascending=False).groupby(_TEST, sort=False)
    flaky["failed_builds"] = newest["build_id"].agg(lambda ids: ids.head(EVIDENCE).tolist())
    flaky["last_failed_at"] = timestamps(newest["started_at"].max().reindex(flaky.index))
    revisions = mixed.sort_values("last", ascending=False).groupby(_TEST, sort=False)["revision"]
    flaky["revisions"] = revisions.agg(lambda revs: revs.head(EVIDENCE).tolist()).reindex(flaky.index)
    none = pd.Series([[] for _ in range(len(flaky))], index=flaky.index, dtype=object)
    flaky["revisions"] = flaky["revisions"].where(flaky["revisions"].notna(), none)
    # Most flaky first; ties by name, so the order does not depend on how the database read the runs.
    flaky = flaky.reset_index().sort_values(
        ["flakiness", "mixed_revisions", "failed", *_TEST], ascending=[False, False, False, True, True, True]
    )
    return flaky.reset_index(drop=True)[COLUMNS]


def _empty() -> pd.DataFrame:
    dtypes = ["str"] * 3 + ["int64"] * 6 + ["float64", "object", "object", "datetime64[ns, UTC]"]
    return pd.DataFrame({column: pd.Series(dtype=d) for column, d in zip(COLUMNS, dtypes, strict=True)})
