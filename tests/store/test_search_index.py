"""Log search's index: built over an existing history by the migrations, fed from a queue in
batches on a thread and a connection of its own (migration ``0013_log_compression``)."""

from __future__ import annotations

import asyncio

import pandas as pd
import sqlalchemy as sa
from alembic import command

from flowbot import Builder, ForceScheduler, Pipeline, Retention, Shell, Worker
from flowbot.analysis import History
from flowbot.master import Master
from flowbot.results import Result
from flowbot.store import Ref, Store, janitor
from flowbot.store import schema as t
from flowbot.store.engine import alembic_config, create_engine
from flowbot.store.log_search import QUEUE_TABLE, index_queued, trigrams

from ..analysis.conftest import HOUR, T0, write_history
from .test_janitor import count


def _at(engine: sa.Engine, revision: str, direction: str = "upgrade") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)


async def test_logs_written_before_the_migration_are_found_after_it(db_url: str):
    # Given a database at the initial schema with a build whose log mentions a timeout
    engine = create_engine(db_url)
    _at(engine, "0001")
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO buildsets (id, scheduler, reason, properties, submitted_at) VALUES (1, 'force', '', '{}', 1)",
            "INSERT INTO buildrequests (id, buildset_id, builder, priority, submitted_at) VALUES (1, 1, 'unit', 0, 1)",
            "INSERT INTO builds (id, request_id, builder, number, worker, started_at, summary)"
            " VALUES (1, 1, 'unit', 1, 'w1', 2, '')",
            "INSERT INTO steps (id, build_id, number, name, hidden, summary) VALUES (1, 1, 0, 'test', false, '')",
            "INSERT INTO log_chunks (step_id, log, first_line, last_line, content, streams)"
            " VALUES (1, 'stdio', 0, 1, 'connecting\nTimeout after 30 s', 'oe')",
        ):
            conn.exec_driver_sql(sql)
    engine.dispose()

    # When a store opens it (migrating to the newest schema)
    store = await Store.open(db_url)
    await store.close()

    # Then the old log is found, through the index the migration built
    with History(db_url) as history:
        found = history.search_logs("timeout AFTER")
        assert found[["build_id", "line_number", "stream", "line"]].values.tolist() == [
            [1, 2, "stderr", "Timeout after 30 s"]
        ]

    # And the migration reverts cleanly, and applies again
    engine = create_engine(db_url)
    _at(engine, "0001", "downgrade")
    assert "test_results" not in sa.inspect(engine).get_table_names()
    _at(engine, "head")
    assert "test_results" in sa.inspect(engine).get_table_names()
    engine.dispose()


def _indexed(url: str, text: str, table: str = t.LOG_SEARCH_TABLE) -> int:
    """Chunks that SQLite's search index ``table`` itself finds for ``text``."""
    query = trigrams(text) if table == t.LOG_SEARCH_TABLE else f'"{text}"'  # the old index kept positions
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (query,)).scalar()
        # FTS5 checks its index: raises if a delete ever told it of a row or a text it never held
        conn.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
    engine.dispose()
    return count


def _index_all(url: str, size: int) -> list[int]:
    """Index the whole queue, ``size`` chunks a batch, as the master's indexer does; the batches' sizes."""
    engine = create_engine(url)
    batches = []
    with engine.connect() as conn:
        while True:
            with conn.begin():
                batch = index_queued(conn, size)
            if not batch:
                break
            batches.append(batch)
    engine.dispose()
    return batches


async def test_sqlite_finds_new_logs_before_and_after_they_are_indexed(tmp_path):
    # Given a SQLite store with a history whose log chunks are queued, not yet indexed
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    store = await Store.open(url)
    await write_history(store)
    assert store.logs.queues_search
    with History(url) as history:
        before = history.search_logs("segmentation")
    assert len(before) == 1 and _indexed(url, "segmentation") == 0

    # When the queue is indexed, a few chunks per batch
    batches = _index_all(url, 4)

    # Then every chunk went through the index once, and search finds the same lines through it
    assert sum(batches) == await count(store, t.log_chunks) and batches[0] == 4
    assert _indexed(url, "segmentation") == 1
    with History(url) as history:
        pd.testing.assert_frame_equal(history.search_logs("segmentation"), before)

    # And removing logs, indexed ones and freshly queued ones alike, keeps the index sound
    build, step = Ref(), Ref()
    (request,) = await store.requests.pending()
    await asyncio.gather(
        store.builds.start(request, 99, "w1", T0 + 10 * HOUR, "master", build),
        store.steps.start(build, 0, "test", T0 + 10 * HOUR, step),
        store.logs.append(step, "stdio", 0, "segmentation fault again", "e"),
        store.steps.finish(step, Result.FAILURE, T0 + 10 * HOUR + 1),
        store.builds.finish(build, request, Result.FAILURE, T0 + 10 * HOUR + 1),
    )
    swept = await janitor.sweep(store, Retention(logs="1d"), now=T0 + 100 * 86400)
    assert swept.log_chunks > 0 and await count(store, t.log_chunks) == 0
    assert _indexed(url, "segmentation") == 0
    with History(url) as history:
        assert history.search_logs("segmentation").empty
    await store.close()


async def test_a_master_indexes_what_its_builds_log(tmp_path):
    # Given a master on SQLite whose build prints a rare word
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("echo quasar-7 detected")])],
    )
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    async with Master(pipeline, db=url, http=None, workers="tcp://127.0.0.1:0") as master:
        await master.start_local_workers()
        # When the build has run
        await master.force("unit")
        await master.wait_idle(timeout=60)
        # Then its log is found at once, and in the index soon after
        with master.history as history:
            found = history.search_logs("QUASAR-7")
            assert found.loc[found["stream"] == "stdout", "line"].tolist() == ["quasar-7 detected"]

        async def indexed() -> None:
            while await count(master.store, sa.table(QUEUE_TABLE, sa.column("chunk_id"))):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(indexed(), 10)
        assert _indexed(url, "quasar-7") >= 1


async def test_sqlite_downgrade_indexes_what_was_queued(tmp_path):
    # Given a SQLite store whose log chunks are all still queued
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    store = await Store.open(url)
    await write_history(store)
    await store.close()

    # When it goes back to the schema before the queue
    engine = create_engine(url)
    _at(engine, "0003_text", "downgrade")
    assert "log_chunks_fts_pending" not in sa.inspect(engine).get_table_names()
    engine.dispose()

    # Then the index holds every chunk, and the old triggers keep it in step again
    assert _indexed(url, "segmentation", "log_chunks_fts") == 1
    with History(url) as history:
        assert len(history.search_logs("segmentation")) == 1


async def test_a_builder_that_does_not_search_its_logs_keeps_them_out_of_the_index(db_url: str):
    # Given a store whose unit and lint builds logged "compiling", queued for the index
    store = await Store.open(db_url)
    try:
        await write_history(store)
        lint = await _chunks_of(store, "lint")
        assert lint and await _chunks_of(store, "unit")

        # When the queue is taken in with lint's logs left out of search (Builder(search_logs=False))
        engine = create_engine(db_url)
        with engine.connect() as conn:
            while True:
                with conn.begin():
                    if not index_queued(conn, 3, unsearched={"lint"}):
                        break
            in_index = conn.exec_driver_sql(
                f"SELECT rowid FROM {t.LOG_SEARCH_TABLE} WHERE {t.LOG_SEARCH_TABLE} MATCH 'com'"
                if store.dialect == "sqlite"
                else f"SELECT chunk_id FROM {t.LOG_SEARCH_TABLE}"
            ).scalars()
            indexed = set(in_index)
        engine.dispose()

        # Then the queue is empty, the index holds none of lint's chunks, and search finds unit's lines only
        assert await count(store, sa.table(QUEUE_TABLE, sa.column("chunk_id"))) == 0
        assert indexed and not indexed & lint
        with History(db_url) as history:
            assert set(history.search_logs("compiling")["builder"]) == {"unit"}
            assert history.search_logs("compiling", builder="lint").empty

        # And removing every log keeps the index sound (SQLite's is told only what it took in)
        swept = await janitor.sweep(store, Retention(logs="1d"), now=T0 + 100 * 86400)
        assert swept.log_chunks > 0 and await count(store, t.log_chunks) == 0
        if store.dialect == "sqlite":
            assert _indexed(db_url, "compiling") == 0
    finally:
        await store.close()


async def _chunks_of(store: Store, builder: str) -> set[int]:
    """The ids of ``builder``'s log chunks."""
    query = (
        sa.select(t.log_chunks.c.id)
        .join(t.steps, t.steps.c.id == t.log_chunks.c.step_id)
        .join(t.builds, t.builds.c.id == t.steps.c.build_id)
        .where(t.builds.c.builder == builder)
    )
    return set(await store.read(lambda conn: conn.execute(query).scalars().all()))
