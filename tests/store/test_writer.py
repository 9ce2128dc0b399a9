"""The store's writer (``flowbot/store/writer.py``) when the database cannot take writes: a
PostgreSQL server stopped under it, a SQLite file on a filesystem that is full. Records of what
happened wait for the database and are written once it is back, in order; what is new is refused
at once; nothing needs a restart."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from flowbot.errors import StoreUnavailable
from flowbot.record_json import build_detail_json
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.store.writer import GroupWriter

from .test_store import NOW, buildset


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_builds_records_wait_for_a_stopped_database_while_new_work_is_refused(stoppable_postgres) -> None:
    # Given a store on a PostgreSQL server, and a build that has started
    store = await Store.open(stoppable_postgres.create_database())
    came_back = []
    store.when_available(lambda: came_back.append(time.monotonic()))
    try:
        (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
        build, step = Ref(), Ref()
        await store.builds.start(request, 1, "w1", NOW, "master", build)

        # When the server stops while the build goes on
        stoppable_postgres.stop()
        records = [
            store.steps.start(build, 0, "test", NOW + 1, step),
            store.logs.append(step, "stdio", 0, "one\ntwo", "oo"),
            store.steps.finish(step, Result.SUCCESS, NOW + 2),
            store.builds.finish(build, request, Result.SUCCESS, NOW + 3),
        ]
        await wait_until(lambda: not store.available, 10, "the store to see the database is gone")

        # Then the build's records wait, and what is new is refused at once, saying why
        await asyncio.sleep(0.5)
        assert not any(record.done() for record in records)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="database is unavailable"):
            await store.requests.add_buildset(buildset("lint"), NOW + 4)
        assert time.monotonic() - started < 0.1
        assert store.held_writes >= len(records)

        # And once the server is back, the records are written, in order, with no restart
        stoppable_postgres.start()
        await asyncio.wait_for(asyncio.gather(*records), 15)
        assert store.available and len(came_back) == 1
        stored = build_detail_json(await store.builds.get(build.id))
        assert (stored["result"], stored["finished_at"], stored["steps"][0]["result"]) == (
            "SUCCESS",
            NOW + 3,
            "SUCCESS",
        )
        assert await store.logs.lines(build.id, 0) == [("o", "one"), ("o", "two")]
        assert await store.requests.pending() == []
        (later,) = await store.requests.add_buildset(buildset("lint"), NOW + 5)
        assert [r.id for r in await store.requests.pending()] == [later.id]
    finally:
        await store.close()


async def test_a_write_that_may_wait_a_while_fails_when_the_database_stays_away(stoppable_postgres) -> None:
    # Given a store whose database has stopped
    store = await Store.open(stoppable_postgres.create_database())
    try:
        stoppable_postgres.stop()

        # When a write that may wait a second is made
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.submit(lambda conn: conn.exec_driver_sql("SELECT 1"), wait=1.0)

        # Then it fails once its second is over (at the next try), not before, not much after
        assert 1.0 <= time.monotonic() - started < 4.0
    finally:
        stoppable_postgres.start()
        await store.close()


async def test_a_store_closed_while_its_database_is_away_gives_up_what_waits_for_it(stoppable_postgres) -> None:
    # Given a store holding a build's record for a stopped database
    store = await Store.open(stoppable_postgres.create_database())
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build = Ref()
    stoppable_postgres.stop()
    start = store.builds.start(request, 1, "w1", NOW, "master", build)

    # When the master stops meanwhile
    started = time.monotonic()
    await store.close()

    # Then it does, after a few seconds' wait, and the record fails saying why
    assert time.monotonic() - started < 10
    with pytest.raises(StoreUnavailable, match="stopped before it came back"):
        await start


async def test_writes_held_by_a_full_disk_are_written_once_there_is_room_again(small_disk) -> None:
    # Given a store on a small filesystem, and a build that has started
    disk = small_disk(16 * 1024 * 1024)
    store = await Store.open(f"sqlite:///{disk.path / 'state.sqlite'}")
    try:
        (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
        build, step = Ref(), Ref()
        store.builds.start(request, 1, "w1", NOW, "master", build)
        await store.steps.start(build, 0, "test", NOW + 1, step)

        # When the filesystem is full and the build writes a long log
        disk.fill()
        line = "x" * 99
        chunks = [store.logs.append(step, "stdio", 1000 * i, "\n".join([line] * 1000), "o" * 1000) for i in range(8)]
        end = [
            store.steps.finish(step, Result.SUCCESS, NOW + 2),
            store.builds.finish(build, request, Result.SUCCESS, NOW + 3),
        ]
        await wait_until(lambda: not store.available, 10, "the store to see the disk is full")
        await asyncio.sleep(1.0)
        assert not all(write.done() for write in chunks + end)
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            await store.requests.add_buildset(buildset("lint"), NOW + 4)

        # Then freeing space brings writes back, with no restart: the log is whole, the build ended
        disk.free()
        await asyncio.wait_for(asyncio.gather(*chunks, *end), 15)
        assert len(await store.logs.lines(build.id, 0)) == 8000
        assert (build_detail_json(await store.builds.get(build.id)))["result"] == "SUCCESS"
        await store.requests.add_buildset(buildset("lint"), NOW + 5)
    finally:
        await store.close()


async def test_a_store_closed_on_a_full_disk_leaves_its_last_writes_for_the_next_start(small_disk, caplog) -> None:
    # Given a store on a small filesystem that has just written a long log (not yet checkpointed)
    disk = small_disk(16 * 1024 * 1024)
    url = f"sqlite:///{disk.path / 'state.sqlite'}"
    store = await Store.open(url)
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()
    store.builds.start(request, 1, "w1", NOW, "master", build)
    store.steps.start(build, 0, "test", NOW + 1, step)
    await store.logs.append(step, "stdio", 0, "\n".join(["x" * 99] * 20000), "o" * 20000)

    # When the filesystem is full as the store closes
    disk.fill()
    await store.close()

    # Then it closes all the same, saying its last checkpoint failed
    assert "the last checkpoint failed (database or disk is full)" in caplog.text
    # And once there is room, the next start has every line
    disk.free()
    again = await Store.open(url)
    try:
        assert len(await again.logs.lines(build.id, 0)) == 20000
    finally:
        await again.close()


async def test_a_store_closing_after_a_slow_write_gives_up_if_the_database_then_goes_away(
    stoppable_postgres, monkeypatch
) -> None:
    # Given a store that waits a second for its writes when it closes, busy with a write that takes three
    monkeypatch.setattr("flowbot.store.store.STORE_STOP_WAIT", 1.0)
    store = await Store.open(stoppable_postgres.create_database())
    slow = store.keep(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(3)"))
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(1.5)

    # When the database goes away after that second, in the middle of the write
    stoppable_postgres.stop()

    # Then the store still closes, giving the write up, instead of waiting for the database for ever
    await asyncio.wait_for(closing, 10)
    with pytest.raises(StoreUnavailable):
        await slow


async def test_a_burst_of_writes_in_the_loop_is_committed_in_bounded_batches_in_order(tmp_path) -> None:
    # Given a writer committing in the loop (as on SQLite), at most three writes a transaction
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'burst.sqlite'}")
    commits: list[int] = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(len(ran) - sum(commits)))
    ran: list[int] = []
    heard: list[tuple[int, int]] = []  # (write, how many writes had run when its caller heard)
    with ThreadPoolExecutor(max_workers=1) as executor:
        writer = GroupWriter(engine, executor, inline=True, batch=3)

        # When eight writes are made in one turn of the loop
        futures = [writer.submit(lambda conn, i=i: ran.append(i) or i) for i in range(8)]
        for i, future in enumerate(futures):
            future.add_done_callback(lambda f, i=i: heard.append((i, len(ran))))
        assert await asyncio.gather(*futures) == list(range(8))
        await writer.drain()
        writer.close()
    engine.dispose()

    # Then they are committed three at a time, in the order they were made, and each caller
    # hears of its write before any write of a later transaction runs
    assert ran == list(range(8))
    assert commits == [3, 3, 2]
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 6), (4, 6), (5, 6), (6, 8), (7, 8)]
