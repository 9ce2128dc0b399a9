"""The answers (``flowbot/analysis/answers.py``, ``culprits.py``, ``flaky.py``, ``search.py``) on the known story."""

from __future__ import annotations

import itertools
import random

import matplotlib
import numpy as np
import pandas as pd
import pytest

from flowbot.analysis import History
from flowbot.errors import NotFound
from flowbot.junit import Outcome
from flowbot.results import Result
from flowbot.store import Store

from .conftest import HOUR, T0, build_spec, write_build

matplotlib.use("Agg")


def stamp(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def test_failure_rate_per_builder_and_period(history):
    history, _ = history
    daily = history.failure_rate()
    assert list(daily.columns) == ["builder", "period", "builds", "failed", "failure_rate"]
    assert daily["period"].dtype == "datetime64[ns, UTC]"
    # unit: 6 verdicts (the RETRY says nothing of the code), 2 failing; lint: a SUCCESS and a WARNINGS
    assert daily[["builder", "builds", "failed"]].values.tolist() == [["lint", 2, 0], ["unit", 6, 2]]
    assert daily["failure_rate"].tolist() == [0.0, pytest.approx(1 / 3)]

    hourly = history.failure_rate(by=None, freq="h", builder="unit")
    assert list(hourly.columns) == ["period", "builds", "failed", "failure_rate"]
    assert hourly["period"].tolist() == [stamp(T0 + h * HOUR) for h in range(6)]
    assert hourly["failure_rate"].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert history.failure_rate(by="worker")["worker"].tolist() == ["w1", "w2"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda h: h.failure_rate(freq="fortnightly"), ValueError, "freq='fortnightly' is not a pandas frequency"),
        (lambda h: h.failure_rate(by="author"), ValueError, "by='author'"),
        (lambda h: h.queue_times(by="colour"), ValueError, "by='colour'"),
        (lambda h: h.worker_utilisation(freq="nope"), ValueError, "freq='nope'"),
        (lambda h: h.worker_utilisation(worker="w9"), NotFound, "worker 'w9'"),
        (lambda h: h.slowest_steps(0), ValueError, "at least one"),
        (lambda h: h.culprits("unti"), NotFound, "builder 'unti'"),
        (lambda h: h.flaky_tests(window="a while"), ValueError, "window='a while'"),
        (lambda h: h.search_logs(""), ValueError, "some text"),
    ],
)
def test_bad_arguments_give_clear_errors(history, call, error, message):
    history, _ = history
    with pytest.raises(error, match=message):
        call(history)


def test_plot_failure_rate_draws_one_line_per_builder(history):
    history, _ = history
    ax = history.plot_failure_rate(freq="h")
    assert sorted(text.get_text() for text in ax.get_legend().get_texts()) == ["lint", "unit"]
    assert len(ax.get_lines()) == 2
    assert ax.get_ylabel() == "share of builds failing"
    matplotlib.pyplot.close("all")


def test_queue_times_with_percentiles(history):
    history, _ = history
    waits = history.queue_times()
    assert list(waits.columns) == ["builder", "builds", "mean", "p50", "p95", "max"]
    unit = waits.set_index("builder").loc["unit"]
    # unit waited 30 s (x3), 10 min (the rerun of r3), 1 h (r4 queued behind it), 100 s and 100 s
    assert unit.builds == 7
    assert unit.p50 == pd.Timedelta(seconds=100)
    assert unit["max"] == pd.Timedelta(hours=1)
    assert waits["builder"].tolist() == ["unit", "lint"]  # longest p95 first
    overall = history.queue_times(by=None)
    assert list(overall.columns) == ["builds", "mean", "p50", "p95", "max"]
    assert overall["builds"].tolist() == [9]
    assert overall["p95"].dtype == "timedelta64[ns]"


def test_queue_times_since_a_retry_count_the_rerun_from_the_attempt_before(history):
    history, _ = history
    # The RETRY started at 05:01:40 and ended at 05:06:40; its rerun started at 05:08:20
    waits = history.queue_times(by=None, since=stamp(T0 + 5 * HOUR + 200))
    assert waits["builds"].tolist() == [1]
    assert waits["max"].tolist() == [pd.Timedelta(seconds=100)]


def test_slowest_steps(history):
    history, _ = history
    slow = history.slowest_steps(2)
    assert list(slow.columns) == ["builder", "step", "runs", "mean", "p50", "p95", "max", "total"]
    assert slow[["builder", "step", "runs"]].values.tolist() == [["unit", "test", 7], ["lint", "compile", 2]]
    unit = slow.iloc[0]
    assert unit.p50 == pd.Timedelta(minutes=9)
    assert unit["max"] == pd.Timedelta(minutes=9)
    assert unit.total == pd.Timedelta(minutes=6 * 9 + 4)  # the RETRY's test step ran 4 minutes
    assert history.slowest_steps(5, builder="lint")["builder"].unique().tolist() == ["lint"]


def test_worker_utilisation_splits_builds_across_periods(history):
    history, _ = history
    use = history.worker_utilisation(freq="h")
    assert list(use.columns) == ["worker", "period", "builds", "busy", "utilisation"]
    assert use["busy"].dtype == "timedelta64[ns]"
    w1 = use[use["worker"] == "w1"].set_index("period")
    assert w1.loc[stamp(T0), "busy"] == pd.Timedelta(minutes=10)
    assert w1.loc[stamp(T0), "utilisation"] == pytest.approx(1 / 6)
    # w2 is idle from 02:00 to 05:00: those hours are there, at zero
    w2 = use[use["worker"] == "w2"].set_index("period")
    assert w2.loc[stamp(T0 + 3 * HOUR), "utilisation"] == 0.0
    # A build over an hour's boundary counts in both hours
    ten_minutes_across = history.worker_utilisation(freq="5min", worker="w1").set_index("period")["busy"]
    assert ten_minutes_across[stamp(T0 + 5 * 60)] == pd.Timedelta(minutes=5)
    assert ten_minutes_across[stamp(T0)] == pd.Timedelta(seconds=270)
    daily = history.worker_utilisation()
    assert daily["builds"].tolist() == [6, 3]


def test_culprits_name_the_change_that_broke_the_build(history):
    history, known = history
    blame = history.culprits("unit")
    assert list(blame.columns) == [
        "branch",
        "good_build",
        "bad_build",
        "good_revision",
        "bad_revision",
        "failed_at",
        "change_id",
        "revision",
        "author",
        "comments",
        "when",
    ]
    # Bob's change broke #2; #4 failed on the revision #3 passed on: no change to blame
    assert blame[["good_build", "bad_build", "author"]].fillna("-").values.tolist() == [[1, 2, "bob"], [3, 4, "-"]]
    assert blame["change_id"].tolist()[0] == known.changes["r2"]
    assert blame["failed_at"][0] == stamp(T0 + HOUR + 30)
    assert history.culprits("lint").empty  # WARNINGS is not failing


def test_flaky_tests_with_evidence(history):
    history, known = history
    flaky = history.flaky_tests(window="7d")
    assert flaky["name"].tolist() == ["test_network"]  # test_parse failed on r2 only: a real breakage
    (row,) = flaky.itertuples()
    # One flip: r3 passed, then failed when built again; going on to r4 and passing is no flip.
    # One blip: that failure, between two passes
    assert (row.runs, row.passed, row.failed, row.flips, row.blips, row.mixed_revisions) == (5, 4, 1, 1, 1, 1)
    # Of the one run after a run of the same code and the three between two runs, two contradict
    assert row.flakiness == 0.5
    assert row.revisions == ["r3"]
    assert row.failed_builds == [known.builds["unit#4"]]
    assert row.last_failed_at == stamp(T0 + 3 * HOUR)
    # test_parse flipped twice, but each time with a change: listed only when every failing test is asked for
    assert set(history.flaky_tests(min_flips=1)["name"]) == {"test_network"}
    assert set(history.flaky_tests(min_flips=0)["name"]) == {"test_network", "test_parse"}
    # and its one failure between passes is a blip, which alone is not enough unless asked
    assert set(history.flaky_tests(min_blips=1)["name"]) == {"test_network", "test_parse"}
    assert history.flaky_tests(builder="lint").empty


async def test_a_test_broken_and_fixed_by_changes_is_not_flaky_and_one_that_flips_on_the_same_code_is(db_url):
    # Given a builder that built each of eight revisions twice, running two tests:
    # test_real broken by r2 and fixed by r4, broken again by r6 and fixed by r7 (four flips, each with a change);
    # test_flaky failing now and then whatever the code (r3's second run, r5's first, r8's second)
    real = {"r2", "r3", "r6"}
    flaky = {("r3", 1), ("r5", 0), ("r8", 1)}
    store = await Store.open(db_url)
    try:
        for i in range(16):
            revision, attempt = f"r{i // 2 + 1}", i % 2
            (request,) = await store.requests.add_buildset(build_spec("unit", "main", revision), T0 + i * 600)
            tests = [
                ("test_real", Outcome.FAILED if revision in real else Outcome.PASSED),
                ("test_flaky", Outcome.ERROR if (revision, attempt) in flaky else Outcome.PASSED),
            ]
            await write_build(store, request, i + 1, "w1", T0 + i * 600 + 10, Result.SUCCESS, tests=tests)
    finally:
        await store.close()
    # When flaky tests are asked for, however few flips are enough
    with History(db_url) as history:
        found = history.flaky_tests(window="1d", min_flips=1)
    # Then only test_flaky is: it flipped on r3, r5 and r8 without a change, and failed 3 times out of 16
    assert found["name"].tolist() == ["test_flaky"]
    (row,) = found.itertuples()
    assert (row.runs, row.failed, row.flips, row.blips, row.mixed_revisions) == (16, 3, 3, 2, 3)
    # 8 runs followed one of the same revision and 3 disagreed; of the 14 between two runs, 2 are
    # unlike both (r8's second is the last run, with nothing after it)
    assert row.flakiness == (3 + 2) / (8 + 14)
    assert row.revisions == ["r8", "r5", "r3"]


async def test_in_ci_that_builds_each_commit_once_lone_failures_show_a_flaky_test(db_url):
    # Given a builder that built each of 40 revisions once, running two tests:
    # test_real broken by r10 until r13, and by r30 until r32 (runs of failures, each ended by a fix);
    # test_flaky failing alone now and then, the builds either side passing (r5, r17, r24, r36)
    real = {*range(10, 13), *range(30, 32)}
    flaky = {5, 17, 24, 36}
    store = await Store.open(db_url)
    try:
        for i in range(40):
            (request,) = await store.requests.add_buildset(build_spec("unit", "main", f"r{i}"), T0 + i * 600)
            tests = [
                ("test_real", Outcome.FAILED if i in real else Outcome.PASSED),
                ("test_flaky", Outcome.FAILED if i in flaky else Outcome.PASSED),
            ]
            await write_build(store, request, i + 1, "w1", T0 + i * 600 + 10, Result.SUCCESS, tests=tests)
    finally:
        await store.close()
    # When flaky tests are asked for
    with History(db_url) as history:
        found = history.flaky_tests(window="1d")
    # Then test_flaky is, on its four blips, though no code was ever built twice; test_real is not
    assert found["name"].tolist() == ["test_flaky"]
    (row,) = found.itertuples()
    assert (row.runs, row.failed, row.flips, row.blips, row.mixed_revisions) == (40, 4, 0, 4, 0)
    assert row.flakiness == 4 / 38
    assert row.failed_builds == [37, 25, 18, 6]


async def test_flaky_tests_count_what_counting_by_hand_counts(db_url):
    # Given three builders running four tests with random outcomes, each revision built twice
    rng = random.Random(7)
    outcomes = [Outcome.PASSED] * 3 + [Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED]
    runs = []  # (build id, builder, revision, test, failed) of the runs that were not skipped
    store = await Store.open(db_url)
    try:
        for i in range(24):
            revision = f"r{i // 2}"
            for builder in rng.sample(["a", "b", "c"], 3):
                (request,) = await store.requests.add_buildset(build_spec(builder, "main", revision), T0 + i * 600)
                tests = [(f"test_{k}", rng.choice(outcomes)) for k in range(4)]
                build = await write_build(store, request, i + 1, "w1", T0 + i * 600 + 10, Result.SUCCESS, tests=tests)
                runs += [(build, builder, revision, name, o != Outcome.PASSED) for name, o in tests if o != "skipped"]
    finally:
        await store.close()
    # When every test that failed is asked for
    with History(db_url) as history:
        flaky = history.flaky_tests(window="1d", min_flips=0).set_index("name")
    # Then each count, and the evidence, is what going through the runs one by one gives
    columns = [
        "runs",
        "passed",
        "failed",
        "flips",
        "blips",
        "mixed_revisions",
        "flakiness",
        "revisions",
        "failed_builds",
    ]
    assert {name: tuple(row) for name, row in zip(flaky.index, flaky[columns].values.tolist(), strict=True)} == {
        name: counted for name in sorted({run[3] for run in runs}) if (counted := _count_by_hand(runs, name))
    }
    assert flaky["flakiness"].is_monotonic_decreasing


def _count_by_hand(runs: list[tuple], test: str) -> tuple | None:
    """What flaky_tests() says of ``test`` (from ``runs`` before the evidence), None when it never failed."""
    mine = sorted(run for run in runs if run[3] == test)
    failed = [build for build, _, _, _, bad in mine if bad]
    flips = follows = 0
    for builder, revision in {(run[1], run[2]) for run in mine}:  # runs of the same code on one builder
        series = [bad for _, on, rev, _, bad in mine if (on, rev) == (builder, revision)]
        follows += len(series) - 1
        flips += sum(a != b for a, b in itertools.pairwise(series))
    blips = inner = 0
    for builder in {run[1] for run in mine}:  # runs on one builder, whatever the code
        series = [bad for _, on, _, _, bad in mine if on == builder]
        inner += max(len(series) - 2, 0)
        blips += sum(before != it != after for before, it, after in zip(series, series[1:], series[2:], strict=False))
    outcomes_of = {}
    for build, _, revision, _, bad in mine:
        outcomes_of.setdefault(revision, []).append((build, bad))
    mixed = sorted((max(seen)[0], rev) for rev, seen in outcomes_of.items() if len({bad for _, bad in seen}) == 2)
    if not failed:
        return None
    newest_mixed = [rev for _, rev in reversed(mixed)][:5]
    return (
        len(mine),
        len(mine) - len(failed),
        len(failed),
        flips,
        blips,
        len(mixed),
        (flips + blips) / (follows + inner) if follows + inner else 0.0,
        newest_mixed,
        failed[::-1][:5],
    )


def test_search_logs_finds_lines_in_any_case(history):
    history, known = history
    found = history.search_logs("SEGMENTATION fault")
    assert list(found.columns) == [
        "build_id",
        "builder",
        "build_number",
        "started_at",
        "step_number",
        "step",
        "log",
        "line_number",
        "stream",
        "line",
    ]
    assert found[["build_id", "step", "line_number", "stream", "line"]].values.tolist() == [
        [known.builds["unit#2"], "test", 3, "stdout", "Segmentation fault (core dumped)"]
    ]
    # Every build's log has "all good"; newest first, limited, filtered
    good = history.search_logs("all good")
    assert len(good) == 8
    assert good["build_id"].is_monotonic_decreasing
    assert len(history.search_logs("all good", limit=3)) == 3
    assert history.search_logs("all good", builder="lint")["build_number"].tolist() == [2, 1]
    assert history.search_logs("all good", since=stamp(T0 + 4 * HOUR))["build_number"].tolist() == [7, 6, 5]
    # Short text (no index), and text that means something to SQL or FTS5, is taken literally
    assert history.search_logs("pytest -q", limit=1)["stream"].tolist() == ["header"]
    assert history.search_logs("-q")["line"].str.contains("-q").all()
    assert history.search_logs('100% "done"').empty
    assert history.search_logs("_").empty


def test_a_plot_chooses_its_period_from_the_span_of_the_builds_and_fits_its_axes(history):
    from flowbot.analysis.answers import period_for

    # A few hours of builds are drawn by the hour, weeks by the day, a year by the week
    assert [period_for(seconds) for seconds in (50 * 60, 6 * 3600, 21 * 86400, 365 * 86400, 5 * 365 * 86400)] == [
        "min",
        "h",
        "D",
        "W",
        "MS",
    ]
    history, _ = history
    ax = history.plot_failure_rate()  # the known history spans six hours
    assert ax.get_xlabel() == "hour"
    bottom, top = ax.get_ylim()
    rates = history.failure_rate(freq="h")["failure_rate"]
    assert bottom == 0 and rates.max() <= top <= rates.max() * 1.1 + 1e-9
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize(("plot", "column"), [("plot_durations", "duration"), ("plot_queue_times", "queue_time")])
def test_duration_and_queue_time_plots_draw_each_builders_median_per_period_on_fitted_axes(history, plot, column):
    history, _ = history
    ax = getattr(history, plot)()  # the known history spans six hours: drawn by the hour
    lengths = {"median, days": 86400, "median, hours": 3600, "median, minutes": 60, "median, seconds": 1}
    assert ax.get_xlabel() == "hour" and ax.get_ylabel() in lengths
    assert sorted(text.get_text() for text in ax.get_legend().get_texts()) == ["lint", "unit"]
    # Each line's points are the medians the builds frame gives, hour by hour
    builds = history.builds().dropna(subset=[column])
    builds["hour"] = builds["started_at"].dt.floor("h")
    length = lengths[ax.get_ylabel()]
    medians = builds.groupby(["builder", "hour"])[column].median().dt.total_seconds() / length
    for line, name in zip(ax.get_lines(), [t.get_text() for t in ax.get_legend().get_texts()], strict=True):
        drawn = list(np.ma.masked_invalid(np.ma.asarray(line.get_ydata(), dtype=float)).compressed())
        assert drawn == pytest.approx(list(medians[name]))
    bottom, top = ax.get_ylim()
    assert bottom == 0 and medians.max() <= top <= max(medians.max(), 1.0) * 1.1 + 1e-9
    assert medians.max() >= 1  # the unit is the longest the highest point reaches
    matplotlib.pyplot.close("all")


def test_duration_plot_of_no_builds_says_so(history):
    history, _ = history
    assert history.plot_durations(builder="unit", since="2000-01-01", until="2000-01-02").get_title() == (
        "Build duration: no builds"
    )
    matplotlib.pyplot.close("all")
