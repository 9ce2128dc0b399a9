"""Indexing stored log chunks for search, in short batches, on a thread and a connection of their own.

A trigger queues every new chunk's id in ``log_search_pending`` (migration ``0013_log_compression``
says what the index is on each database). :func:`run` takes the queue a moment after chunks
arrive, in batches of about :data:`BATCH_BYTES` of text, each one short transaction on the
indexer's own connection and thread: decompressing and tokenizing never run on the event loop.
The index takes each line of a chunk once: search finds lines, so that is all it needs.
Chunks of builders declared with ``search_logs=False`` leave the queue unindexed (on SQLite they
are listed in ``log_search_skipped``, so that :func:`forget` tells the index nothing of them):
their logs are stored and shown as any other, and search does not find them.
On SQLite a batch holds the database's one write lock, which the store's own commits (made on the
loop) then wait for; so a batch is small, and is followed by a pause as long as it took, which
bounds both the wait and the indexer's share of the database however much a step prints. Search
reads queued chunks by scanning them, so what is not indexed yet is still found.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from . import schema as t
from .engine import close_quietly
from .log_codec import unpack

log = logging.getLogger(__name__)

#: The table of queued chunk ids.
QUEUE_TABLE = f"{t.LOG_SEARCH_TABLE}_pending"
#: SQLite's table of chunk ids let go unindexed (migration ``0015_log_search_skipped``).
SKIPPED_TABLE = f"{t.LOG_SEARCH_TABLE}_skipped"
#: Seconds between a chunk's arrival and its batch: long enough to gather a batch under load.
DELAY = 0.5
#: The most chunks indexed in one transaction ...
BATCH = 500
#: ... and about the most text (two full chunks: tens of milliseconds of SQLite's tokenizer).
BATCH_BYTES = 128 * 1024
#: Seconds before trying again after a batch failed.
RETRY = 30.0

_queue = sa.table(QUEUE_TABLE, sa.column("chunk_id"))
_skipped = sa.table(SKIPPED_TABLE, sa.column("chunk_id"))
_c = t.log_chunks.c


def index_queued(
    conn: sa.Connection, limit: int = BATCH, max_bytes: int | None = None, unsearched: Collection[str] = ()
) -> int:
    """Take up to ``limit`` queued chunks, oldest first, stopping once ``max_bytes`` of text are
    indexed; the chunks of builders in ``unsearched`` are let go unindexed. Returns how many."""
    taken, indexed, size = [], [], 0
    for chunk_id, content, compressed, builder in conn.execute(
        sa.select(_c.id, _c.content, _c.compressed, t.builds.c.builder)
        .join(_queue, _queue.c.chunk_id == _c.id)
        .join(t.steps, t.steps.c.id == _c.step_id)
        .join(t.builds, t.builds.c.id == t.steps.c.build_id)
        .order_by(_c.id)
        .limit(limit)
    ):
        taken.append(chunk_id)
        if builder in unsearched:
            continue
        text = _searched(unpack(content, compressed))
        indexed.append((chunk_id, text))
        size += len(text)
        if max_bytes is not None and size >= max_bytes:
            break
    if not taken:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    if indexed:
        if sqlite:
            insert = f"INSERT INTO {t.LOG_SEARCH_TABLE}(rowid, content) VALUES (?, ?)"
        else:
            insert = f"INSERT INTO {t.LOG_SEARCH_TABLE}(chunk_id, content) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        conn.exec_driver_sql(insert, indexed)
    if sqlite and len(indexed) < len(taken):
        kept = {chunk_id for chunk_id, _ in indexed}
        conn.execute(sa.insert(_skipped), [{"chunk_id": c} for c in taken if c not in kept])
    conn.execute(sa.delete(_queue).where(_queue.c.chunk_id.in_(taken)))
    return len(taken)


def _searched(text: str) -> str:
    """What the index takes of a chunk's text: each of its lines once (search finds lines, and a
    flood of one line, or a progress bar's, costs the index one line)."""
    return "\n".join(dict.fromkeys(text.split("\n")))


def forget(conn: sa.Connection, chunks: sa.ColumnElement[bool]) -> None:
    """Take the indexed chunks that ``chunks`` selects out of SQLite's index, before they are deleted.

    SQLite's index keeps no text, so it is told again the text it took in; PostgreSQL's index table
    follows its chunks by itself, as the queue does on both.
    """
    if conn.dialect.name != "sqlite" or not sa.inspect(conn).has_table(QUEUE_TABLE):
        return
    queued = sa.select(_queue.c.chunk_id).where(_queue.c.chunk_id == _c.id).exists()
    skipped = sa.select(_skipped.c.chunk_id).where(_skipped.c.chunk_id == _c.id).exists()
    rows = conn.execute(sa.select(_c.id, _c.content, _c.compressed).where(chunks, ~queued, ~skipped)).all()
    if not rows:
        return
    conn.exec_driver_sql(
        f"INSERT INTO {t.LOG_SEARCH_TABLE}({t.LOG_SEARCH_TABLE}, rowid, content) VALUES ('delete', ?, ?)",
        [(chunk_id, _searched(unpack(content, compressed))) for chunk_id, content, compressed in rows],
    )


def trigrams(pattern: str) -> str:
    """SQLite's index query for the chunks that may hold ``pattern`` (three characters or more):
    those holding each of its trigrams, any case."""
    grams = dict.fromkeys(pattern[i : i + 3].lower() for i in range(len(pattern) - 2))
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


class _Indexer:
    """The queue's batches, on the indexer's thread and connection."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._connection: sa.Connection | None = None

    def batch(self, unsearched: frozenset[str]) -> tuple[int, float]:
        """Index one batch, but for the chunks of builders in ``unsearched``; returns how many
        chunks it took, and the seconds it took."""
        began = time.perf_counter()
        if self._connection is None:
            self._connection = self._engine.connect()
        try:
            with self._connection.begin():
                indexed = index_queued(self._connection, BATCH, BATCH_BYTES, unsearched)
        except Exception:
            self.close()  # a connection that failed is not used again
            raise
        return indexed, time.perf_counter() - began

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            close_quietly(connection, "log indexer's")


async def run(engine: sa.Engine, queued: asyncio.Event, unsearched: Callable[[], frozenset[str]] = frozenset) -> None:
    """Index the queue whenever ``queued`` is set (chunks arrived), until cancelled; ``unsearched``
    names the builders whose logs are not indexed (asked before each batch: the pipeline may change)."""
    loop = asyncio.get_running_loop()
    indexer = _Indexer(engine)
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbot-log-search")
    try:
        while True:
            await queued.wait()
            await asyncio.sleep(DELAY)
            queued.clear()
            while True:
                try:
                    indexed, took = await loop.run_in_executor(thread, indexer.batch, unsearched())
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("log search indexing failed: %s; it tries again in %g s", exc, RETRY)
                    await asyncio.sleep(RETRY)
                    queued.set()
                    break
                if not indexed:
                    break
                await asyncio.sleep(took)  # the store's own writes have the database as long again
    finally:
        await asyncio.shield(loop.run_in_executor(thread, indexer.close))
        thread.shutdown(wait=False)
