"""The tasks a worker owns (``flowbot_worker/tasks.py``): its commands and what runs beside them,
each failure logged, none left running once the worker has stopped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import flowbot_worker
import zmq
import zmq.asyncio
from flowbot_worker.worker import Worker

from ..support import unowned_tasks


def test_the_worker_starts_tasks_one_way():
    # Every task goes through Tasks.spawn, so none is unowned
    assert unowned_tasks(Path(flowbot_worker.__file__).parent) == []


async def test_a_workers_watch_on_its_parent_that_fails_is_logged_and_nothing_outlives_the_worker(
    tmp_path, monkeypatch, caplog
):
    # Given a worker that stops with its parent, dialing a master that never answers, whose watch
    # on its parent fails
    ctx = zmq.asyncio.Context()
    silent = ctx.socket(zmq.ROUTER)
    endpoint = f"tcp://127.0.0.1:{silent.bind_to_random_port('tcp://127.0.0.1')}"
    worker = Worker(endpoint, "w1", "s", tmp_path, exit_with_parent=True, context=ctx)
    started = asyncio.Event()

    async def broken() -> None:
        started.set()
        raise RuntimeError("no parent to watch")

    monkeypatch.setattr(worker, "_exit_with_parent", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="flowbot_worker.tasks"):
            running = asyncio.create_task(worker.run())
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0)

            # Then its failure is logged by name, while the worker goes on
            assert [r.getMessage() for r in caplog.records] == ["exit with parent failed: no parent to watch"]
            assert not running.done()

            # And once it has stopped, none of its tasks runs
            worker.stop()
            await asyncio.wait_for(running, 10)
        assert worker._tasks.named("") == []
    finally:
        silent.close(linger=0)
        ctx.term()


async def test_a_worker_that_stops_cancels_its_tasks_and_waits_for_them(tmp_path):
    # Given a worker whose watch on its parent runs (its parent lives on)
    ctx = zmq.asyncio.Context()
    silent = ctx.socket(zmq.ROUTER)
    endpoint = f"tcp://127.0.0.1:{silent.bind_to_random_port('tcp://127.0.0.1')}"
    worker = Worker(endpoint, "w1", "s", tmp_path, exit_with_parent=True, context=ctx)
    try:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        (watch,) = worker._tasks.named("exit with parent")

        # When it stops
        worker.stop()
        await asyncio.wait_for(running, 10)

        # Then the watch has ended, cancelled, by the time the worker's run returns
        assert watch.cancelled()
    finally:
        silent.close(linger=0)
        ctx.term()
