"""An embedded master's life in a notebook: what it keeps open, and what it lets go of."""

from __future__ import annotations

import gc
import weakref

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker


def pipeline() -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="nb")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("echo hi")])],
    )


async def test_the_history_is_one_object_that_lets_go_of_the_database_when_the_master_stops(tmp_path) -> None:
    master = flowbot.Master(pipeline(), basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("unit")
        await master.wait_idle(timeout=30)
        # One History (one engine, one pool of connections) however often a notebook asks
        history = master.history
        assert master.history is history
        assert list(history.builds()["result"].astype(str)) == ["SUCCESS"]
        assert history.engine.pool.checkedin() == 1
    finally:
        await master.stop()
    assert history.engine.pool.checkedin() == 0


async def test_a_master_a_notebook_dropped_is_collected_with_nothing_left_running(tmp_path) -> None:
    # Given a master that ran local workers, stopped, as a cell that is run again leaves the old one
    master = flowbot.Master(pipeline(), basedir=tmp_path, http=None)
    await master.start()
    await master.start_local_workers()
    (process,) = master.local_workers.processes.values()
    await master.stop()

    # When the notebook lets go of it
    dropped = weakref.ref(master)
    del master
    gc.collect()

    # Then nothing keeps it alive, and its worker is gone
    assert dropped() is None
    assert process.poll() is not None


async def test_a_dropped_master_that_started_workers_on_demand_is_collected(tmp_path) -> None:
    master = flowbot.Master(
        Pipeline(
            workers=[flowbot.LocalWorker("fresh")],
            schedulers=[ForceScheduler("force", builders=["unit"])],
            builders=[Builder("unit", workers=["fresh"], steps=[Shell("echo hi")])],
        ),
        basedir=tmp_path,
        http=None,
    )
    await master.start()
    await master.force("unit")
    await master.wait_idle(timeout=60)
    await master.stop()

    dropped = weakref.ref(master)
    del master
    gc.collect()

    assert dropped() is None
