"""SQLite's log search index is kept up to date in batches, not in every build's transaction.

Indexing a log chunk with FTS5's trigram tokenizer in the transaction that stores it costs about
0.2 ms per transaction, most of it FTS5's own work at each commit: on a master running many short
builds that was a tenth of its time. Now the insert trigger only queues the chunk's id in
``log_chunks_fts_pending``, the master indexes what is queued in batches a moment later (about
20 microseconds a chunk), and search scans the few queued chunks, so results never miss a stored
line. The delete and update triggers touch the index only for chunks it holds: asking FTS5 to
delete a row it never indexed would corrupt it.

PostgreSQL is unchanged: its trigram index is a GIN index, which queues new entries by itself.

Revision ID: 0004_log_search_queue
Revises: 0003_text
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_log_search_queue"
down_revision = "0003_text"
branch_labels = None
depends_on = None

_QUEUED = "EXISTS (SELECT 1 FROM log_chunks_fts_pending WHERE chunk_id = old.id)"
_UPGRADE = [
    "CREATE TABLE log_chunks_fts_pending (chunk_id INTEGER PRIMARY KEY)",
    "DROP TRIGGER log_chunks_fts_insert",
    "DROP TRIGGER log_chunks_fts_delete",
    "DROP TRIGGER log_chunks_fts_update",
    "CREATE TRIGGER log_chunks_fts_insert AFTER INSERT ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts_pending(chunk_id) VALUES (new.id); END",
    "CREATE TRIGGER log_chunks_fts_delete AFTER DELETE ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) "
    f"SELECT 'delete', old.id, old.content WHERE NOT {_QUEUED}; "
    "DELETE FROM log_chunks_fts_pending WHERE chunk_id = old.id; END",
    f"CREATE TRIGGER log_chunks_fts_update AFTER UPDATE OF content ON log_chunks WHEN NOT {_QUEUED} BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
]
_DOWNGRADE = [
    "INSERT INTO log_chunks_fts(rowid, content) "
    "SELECT c.id, c.content FROM log_chunks AS c JOIN log_chunks_fts_pending AS p ON p.chunk_id = c.id",
    "DROP TRIGGER log_chunks_fts_insert",
    "DROP TRIGGER log_chunks_fts_delete",
    "DROP TRIGGER log_chunks_fts_update",
    "DROP TABLE log_chunks_fts_pending",
    "CREATE TRIGGER log_chunks_fts_insert AFTER INSERT ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER log_chunks_fts_delete AFTER DELETE ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER log_chunks_fts_update AFTER UPDATE OF content ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
]


def _has_search_index(bind: sa.Connection) -> bool:
    """False where SQLite had no trigram tokenizer: search scans there, and nothing changes."""
    return bind.dialect.name == "sqlite" and sa.inspect(bind).has_table("log_chunks_fts")


def upgrade() -> None:
    bind = op.get_bind()
    if _has_search_index(bind):
        for statement in _UPGRADE:
            bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if _has_search_index(bind):
        for statement in _DOWNGRADE:
            bind.exec_driver_sql(statement)
