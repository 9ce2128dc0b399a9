"""Log chunks stored compressed (``flowbot/store/log_codec.py``) and indexed for search off the event
loop (``flowbot/store/log_search.py``), on SQLite and PostgreSQL: what goes in comes back, chunks
from before compression read alike, and search finds both before and after they are indexed."""

from __future__ import annotations

import asyncio
import threading

import sqlalchemy as sa

from flowbot.analysis import History
from flowbot.records import BuildsetSpec, SourceStamp
from flowbot.store import Ref, Store, log_search
from flowbot.store import schema as t
from flowbot.store.log_search import QUEUE_TABLE

from .test_janitor import count
from .test_store import rows

NOW = 1_700_000_000.0
LINES = [f"tests/test_parser.py::test_case_{n} PASSED [{n % 100:3d}%]" for n in range(3000)]


async def _step(store: Store) -> tuple[int, Ref]:
    spec = BuildsetSpec(scheduler="force", builders=("unit",), sourcestamps=(SourceStamp(repository="r"),))
    (request,) = await store.requests.add_buildset(spec, NOW)
    build, step = Ref(), Ref()
    await asyncio.gather(
        store.builds.start(request, 1, "w1", NOW, "master", build), store.steps.start(build, 0, "test", NOW, step)
    )
    return build.id, step


async def test_a_chunk_is_stored_compressed_and_reads_back_as_it_went_in(db_url):
    # Given a log of 3,000 lines in two chunks, and a chunk written before chunks were compressed
    store = await Store.open(db_url)
    build_id, step = await _step(store)
    await store.logs.append(step, "stdio", 0, "\n".join(LINES[:2000]), "o" * 2000)
    await store.logs.append(step, "stdio", 2000, "\n".join(LINES[2000:]), "o" * 999 + "e")
    old = "naïve café\nfatal: segmentation fault (core dumped)"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            t.log_chunks.insert(),
            {"step_id": step.id, "log": "old", "first_line": 0, "last_line": 1, "content": old, "streams": "oe"},
        )
    engine.dispose()

    # Then the new chunks hold no text, only a compressed copy a fraction of its size
    chunks = await rows(store, t.log_chunks, t.log_chunks.c.log == "stdio")
    assert [chunk.content for chunk in chunks] == ["", ""]
    assert sum(len(chunk.compressed) for chunk in chunks) * 5 < len("\n".join(LINES))

    # And every read gives the lines back as they went in, old chunk and new alike
    assert await store.logs.lines(build_id, 0) == [("o", line) for line in LINES[:-1]] + [("e", LINES[-1])]
    page = await store.logs.page(build_id, 0, first=1990, count=20)
    assert page.lines == [("o", line) for line in LINES[1990:2010]] and page.total == 3000
    assert (await store.logs.tail(build_id, 0, lines=3)) == (
        [("o", LINES[-3]), ("o", LINES[-2]), ("e", LINES[-1])],
        2997,
    )
    assert await store.logs.lines(build_id, 0, "old") == [
        ("o", "naïve café"),
        ("e", "fatal: segmentation fault (core dumped)"),
    ]
    assert await store.logs.first_error(build_id, 0, "old") == 1
    await store.close()

    # And search finds lines of both, queued and then indexed
    for queued in (3, 0):
        with History(db_url) as history:
            assert history.search_logs("test_case_2999")["line"].tolist() == [LINES[2999]]
            assert history.search_logs("SEGMENTATION")["line"].tolist() == ["fatal: segmentation fault (core dumped)"]
            assert history.search_logs("zz").empty and len(history.search_logs("PASSED", limit=2500)) == 2500
            texts = history.build(build_id).logs["text"].tolist()
            assert texts.count("fatal: segmentation fault (core dumped)") == 1 and LINES[-1] in texts
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            assert log_search.index_queued(conn) == queued
        engine.dispose()


async def test_the_index_is_fed_on_a_thread_and_a_connection_of_its_own(db_url):
    # Given a store with chunks queued for search, and a record of where each statement on the
    # index runs
    store = await Store.open(db_url)
    _, step = await _step(store)
    padded = [f"{line} {'.' * 60}" for line in LINES]  # 100 bytes a line: 50 KB a chunk
    for first in range(0, 3000, 500):
        await store.logs.append(step, "stdio", first, "\n".join(padded[first : first + 500]), "o" * 500)
    where: list[tuple[int, int]] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if t.LOG_SEARCH_TABLE in statement and "INSERT" in statement:
            where.append((threading.get_ident(), id(conn.connection.dbapi_connection)))

    # When the master's indexer runs
    indexer = asyncio.create_task(log_search.run(store.engine, store.logs.queued))
    try:
        while await count(store, sa.table(QUEUE_TABLE, sa.column("chunk_id"))):
            await asyncio.sleep(0.05)
    finally:
        indexer.cancel()
        await asyncio.gather(indexer, return_exceptions=True)

    # Then it took every chunk in, in batches, none on the event loop's thread, all on one
    # connection; and the store still writes meanwhile
    assert len(where) >= 2  # a batch holds at most two full chunks of text
    assert threading.get_ident() not in {thread for thread, _ in where}
    assert len({thread for thread, _ in where}) == 1 and len({connection for _, connection in where}) == 1
    await store.logs.append(step, "stdio", 3000, "after", "o")
    await store.close()
    with History(db_url) as history:
        assert len(history.search_logs("test_case_1", limit=5000)) == 1 + 10 + 100 + 1000


async def test_sqlite_index_weighs_less_than_the_compressed_chunks(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    store = await Store.open(url)
    _, step = await _step(store)
    lines = [f"{n:08d} src/module_{n % 37}.c:{n % 1000}: compiled in {n % 97} ms" for n in range(60_000)]
    for first in range(0, len(lines), 1500):
        await store.logs.append(step, "stdio", first, "\n".join(lines[first : first + 1500]), "o" * 1500)
    await store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        while log_search.index_queued(conn):
            pass
    with engine.connect() as conn:
        compressed = conn.exec_driver_sql("SELECT sum(length(compressed)) FROM log_chunks").scalar()
        index = conn.exec_driver_sql(f"SELECT sum(length(block)) FROM {t.LOG_SEARCH_TABLE}_data").scalar()
    engine.dispose()
    assert 0 < index < compressed


async def test_the_index_takes_each_line_of_a_chunk_once_and_search_still_finds_every_line(db_url):
    # Given a chunk that repeats its lines, as a flood or a progress bar does
    store = await Store.open(db_url)
    _, step = await _step(store)
    await store.logs.append(step, "stdio", 0, "\n".join(["waiting for lock", "retrying"] * 500), "o" * 1000)
    await store.close()

    # When it is indexed
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        assert log_search.index_queued(conn) == 1
        if engine.dialect.name == "postgresql":  # the index's own copy: each line once
            assert conn.exec_driver_sql("SELECT content FROM log_search").scalar() == "waiting for lock\nretrying"
    engine.dispose()

    # Then search finds every line that holds the text, numbered where it is in the log
    with History(db_url) as history:
        found = history.search_logs("retrying", limit=5000)
    assert found["line_number"].tolist() == list(range(2, 1001, 2))
