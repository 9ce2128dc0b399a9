"""History's frames (``flowbot/analysis/history.py``): documented columns, dtypes and values, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

import flowbot
from flowbot.analysis import History
from flowbot.analysis.dtypes import OUTCOME, RESULT
from flowbot.errors import NotFound, StoreError
from flowbot.junit import Outcome
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.store import schema as t
from flowbot.store.engine import alembic_config

from .conftest import HOUR, T0, build_spec, write_build, write_history

UTC = "datetime64[ns, UTC]"
SPAN = "timedelta64[ns]"


def stamp(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def assert_columns(frame: pd.DataFrame, expected: dict[str, str]) -> None:
    """The frame has exactly these columns, in order; "text" means any string dtype."""
    assert list(frame.columns) == list(expected)
    for column, dtype in expected.items():
        if dtype == "text":
            assert pd.api.types.is_string_dtype(frame[column]) or frame[column].dtype == object, column
        else:
            assert frame[column].dtype == dtype, (column, frame[column].dtype)


def test_a_notebook_user_sees_the_frames_and_the_answers_and_nothing_of_how_they_are_read():
    # What tab completion offers on a History: its frames, its answers, and closing it
    public = {name for name in dir(History) if not name.startswith("_")}
    assert public == {
        # frames
        "builds", "steps", "changes", "requests", "workers", "test_results",
        # answers
        "failure_rate", "plot_failure_rate", "plot_durations", "plot_queue_times", "queue_times", "slowest_steps",
        "worker_utilisation",
        "culprits", "flaky_tests", "search_logs", "replay", "build",
        # the database
        "engine", "close",
    }  # fmt: skip
    # Each is a method of History's own, documented where a user looks (help(history.builds))
    for name in public - {"engine"}:
        method = getattr(History, name)
        assert method.__qualname__ == f"History.{name}" and method.__doc__, name


def test_builds_have_the_documented_columns_and_values(history):
    history, known = history
    builds = history.builds()
    assert_columns(
        builds,
        {
            "build_id": "int64",
            "builder": "text",
            "number": "int64",
            "worker": "text",
            "branch": "text",
            "revision": "text",
            "pull_request": "Int64",
            "result": RESULT,
            "submitted_at": UTC,
            "started_at": UTC,
            "finished_at": UTC,
            "attempt": "int64",
            "queue_time": SPAN,
            "duration": SPAN,
        },
    )
    assert builds["pull_request"].isna().all()  # no pull request was built
    assert list(RESULT.categories) == ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED"]
    # Results compare and sort in Buildbot's order
    assert RESULT.ordered
    assert builds["result"].max() == "RETRY"
    assert builds.loc[builds["result"] > "WARNINGS", "number"].tolist() == [2, 4, 6]
    assert builds.sort_values("result", kind="stable")["result"].tolist() == ["SUCCESS"] * 5 + [
        "WARNINGS",
        "FAILURE",
        "FAILURE",
        "RETRY",
    ]
    assert len(builds) == 9
    second = builds.set_index("build_id").loc[known.builds["unit#2"]]
    assert (second.builder, second.number, second.worker, second.revision, second.result) == (
        "unit",
        2,
        "w1",
        "r2",
        "FAILURE",
    )
    assert second.submitted_at == stamp(T0 + HOUR)
    assert second.started_at == stamp(T0 + HOUR + 30)
    assert second.queue_time == pd.Timedelta(seconds=30)
    assert second.duration == pd.Timedelta(minutes=10)
    # A rerun after RETRY waited from the end of the lost attempt, not from the request
    rerun = builds.set_index("build_id").loc[known.builds["unit#7"]]
    assert rerun.queue_time == pd.Timedelta(seconds=100)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"result": "SUCCESS"},  # leaves out the RETRY the rerun waited from
        {"since": stamp(T0 + 5 * HOUR + 200)},  # so does a start after it
        {"branch": "feature", "until": "2100-01-01"},
        {"builder": "unit", "result": ["SUCCESS", "RETRY"], "since": "2024-01-01"},
    ],
)
def test_a_reruns_queue_time_is_the_same_whatever_the_filter(history, filters):
    history, known = history
    rerun = history.builds(**filters).set_index("build_id").loc[known.builds["unit#7"]]
    assert rerun.queue_time == pd.Timedelta(seconds=100)


def test_builds_filter_by_builder_branch_result_and_time(history):
    history, _ = history
    assert history.builds(builder="lint")["number"].tolist() == [1, 2]
    assert history.builds(branch="feature")["number"].tolist() == [6, 7]
    assert history.builds(result="failure")["number"].tolist() == [2, 4]
    assert len(history.builds(result=["FAILURE", flowbot.Result.WARNINGS])) == 3
    window = history.builds(since=stamp(T0 + HOUR), until="2024-01-01T03:00:00")
    assert window["number"].tolist() == [2, 3, 2]
    assert history.builds(since="1d").empty  # the story is long past


async def test_builds_show_running_builds_and_text_exactly_as_stored(db_url):
    # Given a finished build on an empty branch with an odd revision, and one still running on no branch
    odd = 'r,"1"\n[ünï] NULL'
    store = await Store.open(db_url)
    try:
        (empty,) = await store.requests.add_buildset(build_spec("unit", "", odd), T0)
        (none,) = await store.requests.add_buildset(build_spec("unit", None, None), T0 + 5)
        await write_build(store, empty, 1, "w1", T0 + 10, Result.SUCCESS)
        await store.builds.start(none, 2, "w,2", T0 + 20.25, "master", Ref())
    finally:
        await store.close()
    # When the builds are read
    with History(db_url) as history:
        builds = history.builds()
    # Then empty text stays empty, missing stays missing, and a running build has no result or end yet
    assert builds["branch"].tolist()[0] == "" and pd.isna(builds["branch"][1])
    assert builds["revision"].tolist()[0] == odd and pd.isna(builds["revision"][1])
    assert builds["worker"].tolist() == ["w1", "w,2"]
    assert builds["result"].tolist()[0] == "SUCCESS" and pd.isna(builds["result"][1])
    assert builds["finished_at"].isna().tolist() == [False, True]
    assert builds["duration"].isna().tolist() == [False, True]
    assert builds["started_at"][1] == stamp(T0 + 20.25)
    assert builds["queue_time"].tolist() == [pd.Timedelta(seconds=10), pd.Timedelta(seconds=15.25)]


async def test_builds_read_while_a_master_writes_are_each_one_moment(db_url):
    # Given a store in this process writing builds one after another
    store = await Store.open(db_url)
    writing = True

    async def write() -> int:
        number = 0
        while writing:
            number += 1
            (request,) = await store.requests.add_buildset(build_spec("unit", "main", f"r{number}"), T0 + number)
            build = Ref()
            await store.builds.start(request, number, "w1", T0 + number + 1, "master", build)
            await store.builds.finish(build, request, Result.SUCCESS, T0 + number + 2)
        return number

    writer = asyncio.create_task(write())
    try:
        # When the builds are read again and again meanwhile
        with History(db_url) as history:
            frames = [await asyncio.to_thread(history.builds) for _ in range(8)]
    finally:
        writing = False
        written = await writer
        await store.close()
    # Then each read is the history at one moment: every build up to the newest, each whole
    lengths = [len(builds) for builds in frames]
    assert lengths == sorted(lengths) and 0 < lengths[-1] <= written
    for builds in frames:
        assert builds["number"].tolist() == list(range(1, len(builds) + 1))
        assert builds["revision"].tolist() == [f"r{number}" for number in builds["number"]]
        assert (builds["result"].isna() == builds["finished_at"].isna()).all()
        assert (builds["submitted_at"] == builds["started_at"] - pd.Timedelta(seconds=1)).all()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda h: h.builds(builder="unti"), NotFound, "no builds of builder 'unti'.*lint, unit"),
        (lambda h: h.builds(result="green"), ValueError, "unknown result 'green'"),
        (lambda h: h.builds(since="last tuesday"), ValueError, "since='last tuesday' is not a time"),
        (lambda h: h.steps(builder="nope"), NotFound, "builder 'nope'"),
        (lambda h: h.test_results(outcome="broken"), ValueError, "unknown test outcome 'broken'"),
        (lambda h: h.requests(builder="nope"), NotFound, "builder 'nope'"),
    ],
)
def test_bad_arguments_give_clear_errors(history, call, error, message):
    history, _ = history
    with pytest.raises(error, match=message):
        call(history)


def test_steps(history):
    history, known = history
    steps = history.steps(builder="unit", name="test")
    assert_columns(
        steps,
        {
            "step_id": "int64",
            "build_id": "int64",
            "builder": "text",
            "build_number": "int64",
            "number": "int64",
            "name": "text",
            "result": RESULT,
            "started_at": UTC,
            "finished_at": UTC,
            "attempts": "int64",
            "duration": SPAN,
        },
    )
    assert steps["attempts"].tolist() == [1] * 7
    assert steps["build_number"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert (steps["duration"][:3] == pd.Timedelta(minutes=9)).all()
    assert history.steps(result="FAILURE")["build_id"].tolist() == [known.builds["unit#2"], known.builds["unit#4"]]


def test_changes_with_their_files(history):
    history, known = history
    changes = history.changes()
    assert_columns(
        changes,
        {
            "change_id": "int64",
            "repository": "text",
            "branch": "text",
            "revision": "text",
            "author": "text",
            "committer": "text",
            "comments": "text",
            "project": "text",
            "codebase": "text",
            "category": "object",
            "when": UTC,
            "received_at": UTC,
            "files": "object",
        },
    )
    assert changes["author"].tolist() == ["alice", "bob", "carol", "dan"]
    assert changes["files"].tolist() == [["src/r1.py"], ["src/r2.py"], ["src/r3.py"], ["src/r4.py"]]
    assert changes["when"][0] == stamp(T0 - 60)
    bob = history.changes(author="bob")
    assert bob["change_id"].tolist() == [known.changes["r2"]]
    assert history.changes(since=stamp(T0 + 2 * HOUR))["revision"].tolist() == ["r3", "r4"]


def test_requests_pending_and_finished(history):
    history, _ = history
    requests = history.requests()
    assert_columns(
        requests,
        {
            "request_id": "int64",
            "buildset_id": "int64",
            "builder": "text",
            "priority": "int64",
            "reason": "text",
            "branch": "text",
            "revision": "text",
            "submitted_at": UTC,
            "claimed_at": UTC,
            "claimed_by": "text",
            "complete_at": UTC,
            "result": RESULT,
            "pending": "bool",
            "waiting": SPAN,
        },
    )
    assert len(requests) == 9
    (pending,) = history.requests(pending=True).itertuples()
    assert (pending.builder, pending.revision, pending.claimed_at is pd.NaT) == ("unit", "r5", True)
    assert pending.waiting > pd.Timedelta(days=300)  # it has waited since 2024
    finished = history.requests(pending=False, builder="lint")
    assert finished["result"].tolist() == ["SUCCESS", "WARNINGS"]
    assert finished["waiting"].tolist() == [pd.Timedelta(minutes=1)] * 2


def test_workers(history):
    history, _ = history
    workers = history.workers()
    assert_columns(
        workers,
        {
            "worker": "text",
            "connected": "bool",
            "connected_at": UTC,
            "disconnected_at": UTC,
            "last_seen": UTC,
            "builds": "int64",
            "last_build_at": UTC,
            "info": "object",
        },
    )
    assert workers["worker"].tolist() == ["w1", "w2"]
    assert workers["builds"].tolist() == [6, 3]
    assert workers["connected"].all()
    assert workers["info"][0] == {"os": "posix"}


def test_test_results(history):
    history, known = history
    results = history.test_results(builder="unit")
    assert_columns(
        results,
        {
            "build_id": "int64",
            "step_id": "int64",
            "builder": "text",
            "build_number": "int64",
            "branch": "text",
            "revision": "text",
            "started_at": UTC,
            "suite": "text",
            "classname": "text",
            "name": "text",
            "outcome": OUTCOME,
            "duration": SPAN,
            "message": "text",
        },
    )
    assert len(results) == 10
    failed = history.test_results(outcome="failed")
    assert list(zip(failed["build_id"], failed["name"], strict=True)) == [
        (known.builds["unit#2"], "test_parse"),
        (known.builds["unit#4"], "test_network"),
    ]
    assert history.test_results(name="test_network")["outcome"].tolist().count("passed") == 4


async def test_test_times_no_timedelta_holds_read_as_missing(db_url: str):
    # Given a store from before such times were refused: tests that took forever, or 31,000 years
    store = await Store.open(db_url)
    try:
        (request,) = await store.requests.add_buildset(build_spec("unit", "main", "r1"), T0)
        tests = [(f"test_{i}", Outcome.PASSED) for i in range(4)]
        await write_build(store, request, 1, "w1", T0 + 10, Result.SUCCESS, tests=tests)
    finally:
        await store.close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for name, seconds in (("test_0", float("inf")), ("test_1", 1e12), ("test_2", -1e12)):
            conn.execute(sa.update(t.test_results).where(t.test_results.c.name == name).values(duration=seconds))
    engine.dispose()
    # When its test results are read
    with History(db_url) as history:
        results = history.test_results()
    # Then those times are missing, and the others are read as usual
    assert results["duration"].dtype == SPAN
    assert results["duration"].isna().tolist() == [True, True, True, False]
    assert results["duration"][3] == pd.Timedelta(seconds=0.25)


#: Every public History method that answers with a frame, called as a user would.
EVERY_FRAME = {
    "builds": lambda h, **f: h.builds(**f),
    "steps": lambda h, **f: h.steps(**f),
    "changes": lambda h, **f: h.changes(**f),
    "requests": lambda h, **f: h.requests(**f),
    "workers": lambda h, **f: h.workers(),
    "test_results": lambda h, **f: h.test_results(**f),
    "failure_rate": lambda h, **f: h.failure_rate(**f),
    "failure_rate by none": lambda h, **f: h.failure_rate(by=None, **f),
    "queue_times": lambda h, **f: h.queue_times(**f),
    "queue_times by none": lambda h, **f: h.queue_times(by=None, **f),
    "slowest_steps": lambda h, **f: h.slowest_steps(**f),
    "worker_utilisation": lambda h, **f: h.worker_utilisation(**f),
    "culprits": lambda h, **f: h.culprits("unit", **f),
    "flaky_tests": lambda h, **f: h.flaky_tests(),
    "search_logs": lambda h, **f: h.search_logs("fault", **f),
}


def assert_same_columns(empty: pd.DataFrame, full: pd.DataFrame, what: str) -> None:
    """``empty`` has the columns of ``full``, in order, each of the same dtype (text: any string dtype)."""
    assert list(empty.columns) == list(full.columns), what
    for column in full.columns:
        expected, got = full[column].dtype, empty[column].dtype
        if pd.api.types.is_string_dtype(expected) or pd.api.types.is_object_dtype(expected):
            assert pd.api.types.is_string_dtype(got) or pd.api.types.is_object_dtype(got), (what, column, got)
        else:
            assert got == expected, (what, column, got, expected)


async def test_every_answer_about_nothing_is_an_empty_frame_with_the_documented_dtypes(db_url: str):
    # Given an empty store
    store = await Store.open(db_url)
    await store.close()
    with History(db_url) as history:
        # When every method is asked about it
        nothing = {name: call(history) for name, call in EVERY_FRAME.items() if name != "culprits"}
        ax = history.plot_failure_rate()
    assert ax.get_title() == "Failure rate: no finished builds"
    matplotlib.pyplot.close("all")
    # And, once there is a history, about a time when nothing happened
    store = await Store.open(db_url)
    await write_history(store)
    await store.close()
    with History(db_url) as history:
        full = {name: call(history) for name, call in EVERY_FRAME.items()}
        filtered = {
            name: call(history, since="2100-01-01")
            for name, call in EVERY_FRAME.items()
            if name not in ("workers", "flaky_tests")
        }
        # Then each answer is empty, with the columns and dtypes of a full one
        assert all(not frame.empty for frame in full.values())
        for answers in (nothing, filtered):
            for name, frame in answers.items():
                assert frame.empty, name
                assert_same_columns(frame, full[name], name)


def test_a_missing_database_is_an_error_not_an_empty_file(tmp_path: Path):
    with pytest.raises(StoreError, match="no SQLite database"):
        History(f"sqlite:///{tmp_path / 'typo.sqlite'}")
    assert not (tmp_path / "typo.sqlite").exists()
    (tmp_path / "empty.sqlite").touch()
    with pytest.raises(StoreError, match="holds no flowbot store"):
        History(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(StoreError, match="not a database URL"):
        History("state.sqlite")


def test_import_flowbot_stays_light_and_history_loads_on_demand():
    import subprocess
    import sys

    code = "import sys, flowbot; assert 'pandas' not in sys.modules; flowbot.History; assert 'pandas' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _migrate(db_url: str, direction: str, revision: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            getattr(command, direction)(config, revision)
    finally:
        engine.dispose()


async def test_a_store_from_before_builds_kept_their_submission_time_reads_the_same(db_url: str):
    # Given a store with a history, and what History reads of it
    store = await Store.open(db_url)
    await write_history(store)
    await store.close()

    def answers() -> list[pd.DataFrame]:
        with History(db_url) as history:
            return [history.builds(), history.queue_times(), history.culprits("unit")]

    current = answers()

    # When the store goes back to the schema before builds had their own submitted_at
    _migrate(db_url, "downgrade", "0005_worker_controls")

    # Then History reads the same from the requests
    for old, now in zip(answers(), current, strict=True):
        pd.testing.assert_frame_equal(old, now)

    # And once a store upgrades it again, each build's copy is filled in from its request
    store = await Store.open(db_url)
    await store.close()
    for again, now in zip(answers(), current, strict=True):
        pd.testing.assert_frame_equal(again, now)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        missing = conn.exec_driver_sql("SELECT count(*) FROM builds WHERE submitted_at IS NULL").scalar()
    engine.dispose()
    assert missing == 0
