"""Indexing queued log chunks for search, in batches, behind the builds that wrote them.

On SQLite a trigger queues every new log chunk's id (migration ``0004_log_search_queue`` says
why); :meth:`.logs.Logs.index_forever` indexes the queue a moment after chunks arrive, through
the store's writer like every other write, so a batch never waits on a lock and never delays a
build's own writes by more than one batch. Search reads queued chunks by scanning them, so what
is not indexed yet is still found. Other databases index as they insert, and have no queue.
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import LOG_SEARCH_TABLE

#: The table of queued chunk ids.
QUEUE_TABLE = f"{LOG_SEARCH_TABLE}_pending"
#: Seconds between a chunk's arrival and its batch: long enough to gather a batch under load.
DELAY = 0.5
#: The most chunks indexed in one transaction (about 10 ms of short chunks).
BATCH = 500
#: Seconds before trying again after a batch failed.
RETRY = 30.0

_INDEX = (
    f"INSERT INTO {LOG_SEARCH_TABLE}(rowid, content) SELECT c.id, c.content FROM log_chunks AS c "
    f"JOIN {QUEUE_TABLE} AS q ON q.chunk_id = c.id WHERE q.chunk_id <= ?"
)
_DEQUEUE = f"DELETE FROM {QUEUE_TABLE} WHERE chunk_id <= ?"


def index_queued(conn: sa.Connection, limit: int = BATCH) -> int:
    """Index up to ``limit`` queued chunks, oldest first; returns how many."""
    queued = conn.exec_driver_sql(f"SELECT chunk_id FROM {QUEUE_TABLE} ORDER BY chunk_id LIMIT ?", (limit,)).all()
    if queued:
        upto = (queued[-1][0],)
        conn.exec_driver_sql(_INDEX, upto)
        conn.exec_driver_sql(_DEQUEUE, upto)
    return len(queued)
