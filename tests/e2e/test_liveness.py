"""Worker liveness when the master itself is busy: the time its loop could not listen is not the workers' silence."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

HEARTBEAT = 0.5
LIVENESS = 4  # a worker silent for 2 s is lost


def pipeline() -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["slow"])],
        builders=[Builder("slow", workers=["w1"], steps=[Shell("sleep 10")])],
    )


@contextlib.asynccontextmanager
async def master_with_workers(tmp_path) -> AsyncIterator[tuple[Any, list[dict]]]:
    """A master with its two workers connected, and the ``worker.lost`` events it emits."""
    master = flowbot.Master(
        pipeline(), db=f"sqlite:///{tmp_path / 'm.db'}", http=None, heartbeat=HEARTBEAT, liveness=LIVENESS
    )
    await master.start()
    lost: list[dict] = []
    master.events.subscribe(lambda event: lost.append(event) if event["type"] == "worker.lost" else None)
    try:
        await master.start_local_workers()
        yield master, lost
    finally:
        await master.stop()


async def test_a_master_whose_loop_is_held_longer_than_the_liveness_window_loses_no_worker(tmp_path) -> None:
    # Given a master with two workers, one of them running a build
    async with master_with_workers(tmp_path) as (master, lost):
        connections = dict(master.registry.connections)
        await master.force("slow")
        assert [b.worker for b in master.running.values()] == ["w1"]

        # When the master's loop is held for twice the liveness window (a long pass, a slow commit)
        time.sleep(2 * HEARTBEAT * LIVENESS)
        # and then runs for longer than the window again
        await asyncio.sleep(HEARTBEAT * LIVENESS * 1.5)

        # Then both workers are still the ones connected, and the build goes on
        assert lost == []
        assert master.registry.connections == connections
        assert [b.worker for b in master.running.values()] == ["w1"]
        await master.wait_idle(timeout=60)
        assert list(master.history.builds()["result"].astype(str)) == ["SUCCESS"]


async def test_a_liveness_check_right_after_the_master_was_held_loses_no_worker(tmp_path) -> None:
    # Given a master with two workers
    async with master_with_workers(tmp_path) as (master, lost):
        connections = dict(master.registry.connections)

        # When the master is held for twice the liveness window just before it checks its workers'
        # liveness, their heartbeats of that time still unread
        cutoffs = master.registry.cutoffs
        catch_up = cutoffs.catch_up
        held = []

        def held_once() -> None:
            if not held:
                held.append(True)
                time.sleep(2 * HEARTBEAT * LIVENESS)
            catch_up()

        cutoffs.catch_up = held_once
        await asyncio.sleep(HEARTBEAT * LIVENESS * 1.5)

        # Then the check waits for what they said: both are still the ones connected
        assert held and lost == []
        assert master.registry.connections == connections
