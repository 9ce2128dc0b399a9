"""Timed schedulers keep their schedule through restarts and reconfigures."""

from __future__ import annotations

import asyncio

import flowbot
from flowbot import AnyBranchScheduler, Builder, Periodic, Pipeline, Shell, Worker
from flowbot.records import Change


def every(seconds: float) -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[Periodic("every", builders=["b"], period=seconds)],
        builders=[Builder("b", workers=["w1"], steps=[Shell("true")])],
    )


async def test_a_periodic_scheduler_runs_though_the_master_is_reconfigured_more_often_than_its_period(tmp_path):
    # Given a master with a Periodic of 1.5 s
    master = flowbot.Master(every(1.5), db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        # When the pipeline is applied again every 0.3 s for 3 s (a notebook cell run again and again)
        for _ in range(10):
            await asyncio.sleep(0.3)
            await master.reconfigure(every(1.5))
        # Then its period still ran out, once or twice: the wait did not start over each time
        requests = await master.store.requests.query()
        assert 1 <= len(requests) <= 2, requests
    finally:
        await master.stop()


async def test_a_periodic_scheduler_counts_its_period_across_master_restarts(tmp_path):
    db = f"sqlite:///{tmp_path / 'm.db'}"
    # Given a master that armed a Periodic of 1.5 s and stopped a second later
    first = flowbot.Master(every(1.5), db=db)
    await first.start()
    await asyncio.sleep(1.0)
    await first.stop()

    # When a master starts again on the same store
    again = flowbot.Master(every(1.5), db=db)
    await again.start()
    try:
        # Then the run comes half a second later, not a whole period after the restart
        await asyncio.sleep(1.0)
        assert len(await again.store.requests.query()) >= 1
    finally:
        await again.stop()


async def test_a_schedulers_buildset_is_made_once_though_the_batch_that_stores_its_change_is_tried_again(
    tmp_path, caplog
):
    # Given a master whose scheduler counts the buildsets it makes
    made: list[list[str | None]] = []

    class Counting(AnyBranchScheduler):
        def changes_buildset(self, changes):
            made.append([c.revision for c in changes])
            return super().changes_buildset(changes)

    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[Counting("counting", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("true")])],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        # When its change is written in one batch with a write that fails, so that the writes of
        # the batch are tried again one by one
        def refused(conn):
            raise ValueError("refused")

        async def failing_write():
            await master.store.submit(refused)

        added, failed = await asyncio.gather(
            master.add_change(Change(branch="main", revision="r1")), failing_write(), return_exceptions=True
        )
        assert "retrying them one by one" in caplog.text
        assert isinstance(failed, ValueError)

        # Then the change and its build request are stored, and the scheduler's code ran once
        change_id, request_ids = added
        assert len(request_ids) == 1
        assert made == [["r1"]]
        (request,) = await master.store.requests.pending()
        assert request.id == request_ids[0] and request.from_changes
        assert [c.id for c in await master.store.changes.recent()] == [change_id]
    finally:
        await master.stop()
