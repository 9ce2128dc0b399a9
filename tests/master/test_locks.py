"""The master's lock table: counting and exclusive access, per master and per worker, in order."""

from __future__ import annotations

import asyncio

from flowbot import MasterLock, WorkerLock
from flowbot.master.locks import LockTable


def test_counting_holders_share_up_to_max_count_and_exclusive_holders_are_alone() -> None:
    table = LockTable()
    lock = MasterLock("db", max_count=2)
    assert table.try_acquire([lock.access("counting")], "w1", "a")
    assert table.try_acquire([lock.access("counting")], "w2", "b")
    assert not table.try_acquire([lock.access("counting")], "w1", "c")
    assert not table.try_acquire([lock.access("exclusive")], "w1", "d")
    table.release("a")
    table.release("b")
    assert table.try_acquire([lock.access("exclusive")], "w1", "d")
    assert not table.try_acquire([lock.access("counting")], "w1", "e")


def test_worker_locks_are_per_worker() -> None:
    table = LockTable()
    disk = WorkerLock("disk", max_count=1, max_count_for_worker={"big": 2})
    assert table.try_acquire([disk.access()], "w1", "a")
    assert table.try_acquire([disk.access()], "w2", "b")
    assert not table.try_acquire([disk.access()], "w1", "c")
    assert table.try_acquire([disk.access()], "big", "d") and table.try_acquire([disk.access()], "big", "e")


def test_all_or_nothing_and_waiters_are_served_when_locks_free_up() -> None:
    async def scenario() -> None:
        table = LockTable()
        a, b = MasterLock("a"), MasterLock("b")
        assert table.try_acquire([b.access("exclusive")], "w", "holder")
        # Needing both, it takes neither while b is busy
        assert not table.try_acquire([a.access(), b.access()], "w", "both")
        assert table.try_acquire([a.access()], "w", "only-a")
        table.release("only-a")
        waiter = asyncio.ensure_future(table.acquire([a.access(), b.access()], "w", "waiter"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        table.release("holder")
        waited = await asyncio.wait_for(waiter, 1)
        assert waited >= 0.04
        assert not table.try_acquire([a.access()], "w", "late")

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        table = LockTable()
        lock = MasterLock("x")
        table.try_acquire([lock.access()], "w", "holder")
        waiter = asyncio.ensure_future(table.acquire([lock.access()], "w", "waiter"))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        table.release("holder")
        assert table.try_acquire([lock.access()], "w", "next")

    asyncio.run(scenario())
