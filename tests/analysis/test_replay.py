"""``History.replay``: histories whose what-if answer is known, replayed through candidate pipelines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

import flowbot
from flowbot import (
    AnyBranchScheduler,
    Builder,
    ForceScheduler,
    MasterLock,
    Matrix,
    Periodic,
    Pipeline,
    Shell,
    Worker,
)
from flowbot.analysis import History
from flowbot.analysis.simulation import Simulation
from flowbot.record_json import build_json
from flowbot.records import BuildRequest, BuildsetSpec, Change, Release, SourceStamp
from flowbot.results import Result
from flowbot.store import Ref, Store

T0 = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC
BUILD = 60.0


def pipeline(workers=("w1",), *, builders=("unit",), collapse=True, lock=None, force=False) -> Pipeline:
    """Builders of one 60-second step each, on ``workers``, building every change."""
    locks = [lock.access("exclusive")] if lock else []
    return Pipeline(
        workers=[Worker(name, secret="s") for name in ("w1", "w2", "w3")],
        schedulers=[
            AnyBranchScheduler("on-push", builders=list(builders)),
            *([ForceScheduler("force", builders=list(builders))] if force else []),
        ],
        builders=[
            Builder(
                name, workers=list(workers), steps=[Shell("make", name="test")], collapse_requests=collapse, locks=locks
            )
            for name in builders
        ],
    )


async def record(store: Store, request: BuildRequest, number: int, worker: str, at: float, took: float = BUILD) -> None:
    """A build of ``request`` on ``worker`` from ``at``, one step ``test``, as a master writes it."""
    build, step = Ref(), Ref()
    await asyncio.gather(
        store.builds.start(request, number, worker, at, "master", build),
        store.steps.start(build, 0, "test", at, step),
        store.steps.finish(step, Result.SUCCESS, at + took),
        store.builds.finish(build, request, Result.SUCCESS, at + took),
    )


async def change(store: Store, revision: str, at: float, builders=("unit",)) -> list[BuildRequest]:
    """A change on main received at ``at``, that the scheduler builds at once on ``builders``."""
    spec = BuildsetSpec("on-push", tuple(builders), (SourceStamp(repository="repo", branch="main", revision=revision),))
    decision = Release("on-push", "", (), spec)
    _, requests = await store.changes.add(
        Change(branch="main", revision=revision, repository="repo", when=at), [decision], at
    )
    return requests


@pytest.fixture
def saturated(tmp_path: Path) -> str:
    """Forty changes a second apart, built one after the other on w1 in 60 s each, never collapsed."""

    async def write() -> None:
        store = await Store.open(url)
        try:
            for i in range(40):
                (request,) = await change(store, f"r{i}", T0 + i)
                await record(store, request, i + 1, "w1", T0 + BUILD * i)
        finally:
            await store.close()

    url = f"sqlite:///{tmp_path / 'saturated.sqlite'}"
    asyncio.run(write())
    return url


def test_the_same_pipeline_replays_what_happened(saturated):
    with History(saturated) as history:
        replay = history.replay(pipeline(collapse=False))
        recorded = history.builds()
    assert replay.builds["revision"].tolist() == recorded["revision"].tolist()
    assert replay.builds["started_at"].tolist() == recorded["started_at"].tolist()
    assert replay.builds["queue_time"].tolist() == recorded["queue_time"].tolist()
    assert (replay.builds["worker"] == "w1").all()
    compared = replay.compare()
    assert compared.loc["unit", ("builds", "recorded")] == compared.loc["unit", ("builds", "replayed")] == 40
    assert compared.loc["unit", ("queue p95", "recorded")] == compared.loc["unit", ("queue p95", "replayed")]


def test_one_worker_more_halves_a_saturated_queue(saturated):
    with History(saturated) as history:
        one = history.replay(pipeline(collapse=False))
        two = history.replay(pipeline(("w1", "w2"), collapse=False))
    # Request k waits 59 k s on one worker (each build 60 s, each request 1 s after the one before)
    # and 58 floor(k/2) s on two (w2, never recorded, takes the builder's 60 s too)
    one_waits = pd.to_timedelta([59.0 * k for k in range(40)], unit="s")
    two_waits = pd.to_timedelta([58.0 * (k // 2) for k in range(40)], unit="s")
    assert one.builds.sort_values("request")["queue_time"].tolist() == one_waits.tolist()
    assert two.builds.sort_values("request")["queue_time"].tolist() == two_waits.tolist()
    assert set(two.builds["worker"]) == {"w1", "w2"}
    compared = two.compare()
    for column in ("queue p50", "queue p95"):
        ratio = compared.loc["unit", (column, "replayed")] / compared.loc["unit", (column, "recorded")]
        assert 0.45 < ratio <= 0.5, (column, ratio)
    # Asking for a second instance of w1 is the same as declaring a second worker
    with History(saturated) as history:
        twice = history.replay(pipeline(collapse=False), workers={"w1": 2})
    assert twice.builds.sort_values("request")["queue_time"].tolist() == two_waits.tolist()
    assert set(twice.builds["worker"]) == {"w1", "w1#2"}


def test_an_exclusive_lock_serialises_builders_that_have_a_worker_each(saturated):
    # Given two builders, unit on w1 and lint on w2, that may share an exclusive lock
    def candidate(lock: MasterLock | None) -> Pipeline:
        locks = [lock.access("exclusive")] if lock else []
        return Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
            schedulers=[AnyBranchScheduler("on-push", builders=["unit", "lint"])],
            builders=[
                Builder(
                    name, workers=[worker], steps=[Shell("make", name="test")], collapse_requests=False, locks=locks
                )
                for name, worker in (("unit", "w1"), ("lint", "w2"))
            ],
        )

    with History(saturated) as history:
        free = history.replay(candidate(None), durations={"lint": BUILD})
        locked = history.replay(candidate(MasterLock("deploy")), durations={"lint": BUILD})
    # Then without the lock both build at once; with it, one at a time: eighty builds end 80 x 60 s later
    assert len(free.builds) == len(locked.builds) == 80
    assert free.builds["finished_at"].max() == pd.Timestamp(T0 + 40 * BUILD, unit="s", tz="UTC")
    assert locked.builds["finished_at"].max() == pd.Timestamp(T0 + 80 * BUILD, unit="s", tz="UTC")
    one_by_one = locked.builds.sort_values("started_at")
    assert (one_by_one["started_at"].iloc[1:].array >= one_by_one["finished_at"].iloc[:-1].array).all()


def test_a_lock_taken_by_a_step_holds_only_while_the_step_runs(saturated):
    # Given a builder whose step "test" takes an exclusive lock, after a step that needs none
    deploy = MasterLock("deploy")
    candidate = Pipeline(
        workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
        schedulers=[AnyBranchScheduler("on-push", builders=["unit"])],
        builders=[
            Builder(
                "unit",
                workers=["w1", "w2"],
                steps=[
                    Shell("make", name="compile"),
                    Shell("make test", name="test", locks=[deploy.access("exclusive")]),
                ],
                collapse_requests=False,
            )
        ],
    )
    with History(saturated) as history:
        replay = history.replay(candidate)
    # Then "compile" (never recorded) takes no time, and the locked steps run one at a time: the
    # builds that wait for the lock hold their worker meanwhile
    assert any("unit: compile" in note for note in replay.notes)
    builds = replay.builds.sort_values("started_at")
    ends = builds["finished_at"].sort_values()
    assert (ends.diff().dropna() >= pd.Timedelta(seconds=BUILD)).all()
    assert ends.iloc[-1] == pd.Timestamp(T0 + 40 * BUILD, unit="s", tz="UTC")


async def test_turning_collapsing_off_adds_the_builds_it_saved(tmp_path):
    # Given a real master whose one worker builds slower than changes come, so requests collapse
    db = f"sqlite:///{tmp_path / 'collapse.sqlite'}"
    real = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[AnyBranchScheduler("on-push", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("sleep 0.4", name="test")])],
    )
    async with flowbot.Master(real, db=db) as master:
        await master.start_local_workers()
        for i in range(12):
            await master.add_change(Change(branch="main", revision=f"r{i}", repository="repo"))
            await asyncio.sleep(0.1)
        await master.wait_idle(timeout=60)
        built = len([build_json(b) for b in await master.store.builds.query(limit=100)])
    assert built < 12  # some collapsed

    # When the history is replayed with collapsing, and without
    without = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[AnyBranchScheduler("on-push", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("sleep 0.4", name="test")], collapse_requests=False)],
    )
    with History(db) as history:
        same = history.replay(real)
        off = history.replay(without)

    # Then the recorded side is what happened, and without collapsing every change is built
    compared = off.compare()
    assert compared.loc["unit", ("builds", "recorded")] == built
    assert compared.loc["unit", ("collapsed", "recorded")] == 12 - built
    assert compared.loc["unit", ("builds", "replayed")] == built + (12 - built) == 12
    assert compared.loc["unit", ("collapsed", "replayed")] == 0
    assert sorted(off.builds["revision"]) == sorted(f"r{i}" for i in range(12))
    # And with it the replay collapses too, each collapsed request into a newer one of the same source
    collapsed = same.requests.dropna(subset=["collapsed_into"])
    assert len(collapsed) >= 1 and (collapsed["collapsed_into"] > collapsed["request"]).all()
    assert len(same.builds) + len(collapsed) == 12


def test_requests_no_change_caused_are_replayed_and_timed_schedulers_run_their_own(tmp_path):
    # Given a history with a forced request, a request of a builder since removed, and changes
    async def write() -> None:
        store = await Store.open(url)
        try:
            (first,) = await change(store, "r1", T0)
            await record(store, first, 1, "w1", T0)
            stamp = (SourceStamp(repository="repo", branch="main", revision="r1"),)
            (forced,) = await store.requests.add_buildset(BuildsetSpec("force", ("unit",), stamp, priority=5), T0 + 600)
            await record(store, forced, 2, "w1", T0 + 600, took=90)
            await store.requests.add_buildset(BuildsetSpec("force", ("gone",), stamp), T0 + 700)
            (last,) = await change(store, "r2", T0 + 3600)
            await record(store, last, 3, "w1", T0 + 3600)
        finally:
            await store.close()

    url = f"sqlite:///{tmp_path / 'mixed.sqlite'}"
    asyncio.run(write())
    candidate = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[
            AnyBranchScheduler("on-push", builders=["unit"]),
            ForceScheduler("force", builders=["unit"]),
            Periodic("every-20-minutes", builders=["unit"], period=1200, branch="main"),
        ],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("make", name="test")])],
    )
    with History(url) as history:
        replay = history.replay(candidate)
    made = replay.requests.set_index("request")
    # Then the forced request comes when it was made, the one for the missing builder is noted,
    # and the Periodic runs every 20 minutes of the hour replayed
    assert made["recorded_request"].notna().sum() == 1
    assert any("1 recorded request(s) for builders the pipeline does not have" in n for n in replay.notes)
    periodic = made[made["recorded_request"].isna() & made["revision"].isna()]
    assert periodic["submitted_at"].tolist() == [pd.Timestamp(T0 + 1200 * k, unit="s", tz="UTC") for k in (1, 2)]
    forced = replay.builds[replay.builds["request"] == made.index[made["recorded_request"].notna()][0]]
    assert forced["duration"].tolist() == [pd.Timedelta(seconds=90)]  # its own recorded length


def test_a_builder_that_never_ran_needs_a_duration(saturated):
    with History(saturated) as history, pytest.raises(ValueError, match=r"\['lint'\] never ran.*durations="):
        history.replay(pipeline(builders=("unit", "lint")))
    with History(saturated) as history, pytest.raises(ValueError, match="does not declare"):
        history.replay(pipeline(), workers={"w9": 2})


def test_a_new_head_of_a_pull_request_stops_the_build_of_the_old_one_and_withdraws_the_waiting_one(tmp_path):
    # Given pull request #2 pushed to three times, ten seconds apart, and a push to main meanwhile,
    # each built in turn on w1 in 60 s
    async def write() -> None:
        store = await Store.open(url)
        try:
            heads = [("refs/pull/2/head", "a1", T0), ("main", "m1", T0 + 5), ("refs/pull/2/head", "a2", T0 + 10)]
            heads.append(("refs/pull/2/head", "a3", T0 + 20))
            for number, (branch, revision, at) in enumerate(heads, 1):
                properties = {"pr_number": 2, "pr_title": "Add a feature"} if branch != "main" else {}
                new = Change(branch=branch, revision=revision, repository="repo", when=at, properties=properties)
                stamp = SourceStamp(repository="repo", branch=branch, revision=revision)
                spec = BuildsetSpec(
                    "on-push", ("unit",), (stamp,), properties={k: (v, "Change") for k, v in properties.items()}
                )
                _, (request,) = await store.changes.add(new, [Release("on-push", "", (), spec)], at)
                await record(store, request, number, "w1", T0 + BUILD * (number - 1))
        finally:
            await store.close()

    url = f"sqlite:///{tmp_path / 'pull-request.sqlite'}"
    asyncio.run(write())

    # When the history is replayed through a pipeline that cancels superseded heads (the default), and one that does not
    with History(url) as history:
        cancelling = history.replay(pipeline(collapse=False))
        keeping = history.replay(
            Pipeline(
                workers=[Worker("w1", secret="s")],
                schedulers=[AnyBranchScheduler("on-push", builders=["unit"])],
                builders=[
                    Builder(
                        "unit",
                        workers=["w1"],
                        steps=[Shell("make", name="test")],
                        collapse_requests=False,
                        cancel_superseded=False,
                    )
                ],
            )
        )

    # Then a2 stopped a1's build at once (main's build took the worker), a3 withdrew a2, and a3 was built after main
    builds = cancelling.builds
    assert builds["revision"].tolist() == ["a1", "m1", "a3"]
    assert (builds["duration"] / pd.Timedelta(seconds=1)).tolist() == [10.0, 60.0, 60.0]
    requests = cancelling.requests.set_index("revision")
    assert requests["superseded_by"].tolist() == [
        requests.loc["a2", "request"],
        pd.NA,
        requests.loc["a3", "request"],
        pd.NA,
    ]
    # And without it, every head is built
    assert keeping.builds["revision"].tolist() == ["a1", "m1", "a2", "a3"]
    assert keeping.requests["superseded_by"].isna().all()


def test_a_matrix_replays_one_build_per_cell_on_the_workers_that_take_it() -> None:
    # Given a python x os matrix on a linux and a mac worker, and one change
    candidate = Pipeline(
        workers=[
            Worker("penguin", secret="s", properties={"os": "linux"}),
            Worker("apple", secret="s", properties={"os": "mac"}),
        ],
        schedulers=[AnyBranchScheduler("on-push", builders=["test"])],
        builders=[
            Builder(
                "test",
                workers=["penguin", "apple"],
                steps=[Shell("make", name="test")],
                matrix=Matrix(axes={"python": ["3.12", "3.13"], "os": ["linux", "mac"]}),
            )
        ],
    )
    simulation = Simulation(candidate, lambda builder, worker, request, recorded: [BUILD])
    simulation.changes([Change(branch="main", revision="r1", repository="repo", when=T0)], [T0])

    # When it runs
    simulation.run()

    # Then each cell builds once, with its values as properties, on the worker of its os, two at a time
    built = sorted((r.cell["python"], r.cell["os"], worker, started) for r, worker, started, _ in simulation.builds)
    assert built == [
        ("3.12", "linux", "penguin", T0),
        ("3.12", "mac", "apple", T0),
        ("3.13", "linux", "penguin", T0 + BUILD),
        ("3.13", "mac", "apple", T0 + BUILD),
    ]
    assert all(r.properties["os"] == (r.cell["os"], "Matrix") for r, *_ in simulation.builds)
