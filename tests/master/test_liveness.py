"""A master that is itself busy loses no worker, and says how late its event loop ran."""

from __future__ import annotations

import asyncio
import time

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.master.events import EventKind
from flowbot.results import Result


async def test_a_worker_is_not_lost_while_the_master_holds_its_own_loop(tmp_path) -> None:
    # Given an embedded master that loses a worker after 0.6 s of silence, and a local worker running a build
    master = flowbot.Master(
        Pipeline(
            workers=[Worker("w1", secret="busy")],
            schedulers=[ForceScheduler("force", builders=["unit"])],
            builders=[Builder("unit", workers=["w1"], steps=[Shell("sleep 3", name="sleep")])],
        ),
        basedir=tmp_path,
        http=None,
        heartbeat=0.2,
        liveness=3,
    )
    lost: list[dict] = []
    await master.start()
    try:
        master.events.subscribe(lost.append, (EventKind.WORKER_LOST,))
        await master.start_local_workers()
        await master.force("unit")
        while not master.running:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)

        # When the master's own work holds its event loop for 2 s, three times the liveness window
        time.sleep(2.0)

        # Then the worker, which spoke all along, is not lost, and its build ends well
        await master.wait_idle(timeout=30)
        assert lost == []
        assert [b.result for b in await master.store.builds.query(limit=5)] == [Result.SUCCESS]
        # And the master measured the stall
        assert master.loop_lag.max >= 1.9
        assert master.loop_lag.histogram.collect()[0].samples
    finally:
        await master.stop()
