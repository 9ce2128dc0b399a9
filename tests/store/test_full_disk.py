"""A database that cannot take more (a full disk): writes fail with a clear error, what was
accepted stays, and the master carries on once there is room again."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.errors import StoreError
from flowbot.master import Master
from flowbot.record_json import build_json
from flowbot.store import Store

from .test_store import NOW, buildset


async def test_a_commit_that_fails_fails_its_own_write_and_the_writer_goes_on(tmp_path) -> None:
    # Given a SQLite store
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite'}")

    # When, in one group commit, a good write is queued beside one whose statements pass but whose
    # commit fails (deferred foreign keys are checked at commit, as a full disk fails there)
    def fails_at_commit(conn: sa.Connection) -> None:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.exec_driver_sql("INSERT INTO steps (build_id, number, name, hidden, summary) VALUES (999, 0, 'x', 0, '')")

    good = store.requests.add_buildset(buildset("unit"), NOW)
    bad = store.submit(fails_at_commit)
    outcomes = await asyncio.gather(good, bad, return_exceptions=True)

    # Then the good write is stored, the bad one fails alone with a store error saying why
    (request,) = outcomes[0]
    assert isinstance(outcomes[1], StoreError) and "FOREIGN KEY constraint failed" in str(outcomes[1])
    # And the writer keeps working
    (later,) = await store.requests.add_buildset(buildset("lint"), NOW + 1)
    assert [r.id for r in await store.requests.pending()] == [request.id, later.id]
    await store.close()


@asynccontextmanager
async def database_full(store: Store) -> AsyncIterator[None]:
    """Let the SQLite database grow no more (``max_page_count``), as if its disk were full: on the
    connections opened from now on, and on the one the store's writer keeps."""

    def cap(dbapi_connection, _record) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    def set_cap(conn: sa.Connection, pages: int | None) -> None:
        if pages is None:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    sa.event.listen(store.engine, "connect", cap)
    store.engine.dispose()
    await store.submit(lambda conn: set_cap(conn, None))
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", cap)
        store.engine.dispose()
        # Behind whatever the full database holds back, however long that takes.
        await store.submit(lambda conn: set_cap(conn, 2**31 - 2), wait=math.inf)


async def test_a_full_database_refuses_new_work_clearly_and_the_master_carries_on(tmp_path) -> None:
    # Given a master on SQLite that has run a build
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("echo built")])],
    )
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    async with Master(pipeline, db=url, http="127.0.0.1:0", workers="tcp://127.0.0.1:0") as master:
        await master.start_local_workers()
        await master.force("unit")
        await master.wait_idle(timeout=60)

        # When the database can take no more
        async with database_full(master.store):
            # Then a forced build is refused, saying why, in Python and over HTTP (503, not a traceback)
            with pytest.raises(StoreError, match="database or disk is full"):
                await master.force("unit", reason="x" * 100_000)
            body = '{"reason": "' + "y" * 100_000 + '"}'
            with pytest.raises(HTTPClientError) as refused:
                await AsyncHTTPClient().fetch(f"{master.http_url}/api/builders/unit/force", method="POST", body=body)
            assert refused.value.code == 503
            assert b"database or disk is full" in refused.value.response.body

        # And once there is room again, builds run and are recorded beside the first one
        await master.force("unit")
        await master.wait_idle(timeout=60)
        builds = [build_json(b) for b in await master.store.builds.query()]
        assert [(b["number"], b["result"]) for b in builds] == [(2, "SUCCESS"), (1, "SUCCESS")]


async def test_a_write_after_the_server_dropped_the_writers_connection_is_kept(postgres_db: str) -> None:
    # Given a PostgreSQL store that has written once (its writer keeps that connection)
    store = await Store.open(postgres_db)
    try:
        (first,) = await store.requests.add_buildset(buildset("unit"), NOW)

        # When the server ends every other session of the database (a restart or a failover would)
        admin = sa.create_engine(postgres_db, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            ended = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar()
        admin.dispose()
        assert ended >= 1

        # Then the next write is stored all the same, on a fresh connection
        (second,) = await store.requests.add_buildset(buildset("lint"), NOW + 1)
        assert [r.id for r in await store.requests.pending()] == [first.id, second.id]
    finally:
        await store.close()
