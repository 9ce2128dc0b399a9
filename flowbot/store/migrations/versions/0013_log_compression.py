"""Log chunks are stored compressed, and log search gets an index of its own, fed off the event loop.

A chunk's text goes into the new ``log_chunks.compressed`` column as Zstandard (see
:mod:`flowbot.store.log_codec`); chunks already stored keep theirs in ``content`` and read as before.
The old indexes read ``content`` in the database, which compressed chunks no longer fill, so both
make way for ``log_search``, fed by the master from the queue ``log_search_pending`` (which a
trigger fills as chunks arrive, and every chunk already stored joins here, so it is found again):

- SQLite: an FTS5 table with the trigram tokenizer that keeps no text (``content=''``) and no
  positions (``detail=none``): for each trigram, which chunks hold it. Search asks for the chunks
  holding every trigram of the text, and reads their lines to keep those that hold it. Such an
  index weighs a few percent of the text, a fraction of the compressed chunks, where the old one
  (with positions) weighed more than the text.
- PostgreSQL: a table of each chunk's text (which PostgreSQL compresses itself) with the pg_trgm
  GIN index, which serves ``ILIKE``.

Without the trigram tokenizer or the pg_trgm extension (migration ``0002_analysis`` says when),
there is no index and no queue, and search reads every chunk.

Revision ID: 0013_log_compression
Revises: 0012_matrices
"""

import sqlalchemy as sa
import zstandard
from alembic import op

revision = "0013_log_compression"
down_revision = "0012_matrices"
branch_labels = None
depends_on = None

_QUEUE = "CREATE TABLE log_search_pending (chunk_id {id} PRIMARY KEY REFERENCES log_chunks(id) ON DELETE CASCADE)"
_SQLITE = [
    "CREATE VIRTUAL TABLE log_search USING fts5(content, content='', detail=none, tokenize='trigram')",
    _QUEUE.format(id="INTEGER"),
    "CREATE TRIGGER log_search_queue AFTER INSERT ON log_chunks BEGIN "
    "INSERT INTO log_search_pending(chunk_id) VALUES (new.id); END",
]
_POSTGRESQL = [
    "CREATE TABLE log_search (chunk_id INTEGER PRIMARY KEY REFERENCES log_chunks(id) ON DELETE CASCADE,"
    " content TEXT NOT NULL)",
    "CREATE INDEX ix_log_search_content_trgm ON log_search USING gin (content gin_trgm_ops)",
    _QUEUE.format(id="INTEGER"),
    "CREATE FUNCTION log_search_queue() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO log_search_pending(chunk_id) VALUES (new.id); RETURN NULL; END $$",
    "CREATE TRIGGER log_search_queue AFTER INSERT ON log_chunks FOR EACH ROW EXECUTE FUNCTION log_search_queue()",
]
#: The old SQLite index as migration ``0004_log_search_queue`` left it.
_OLD_SQLITE = [
    "CREATE VIRTUAL TABLE log_chunks_fts USING fts5("
    "content, content='log_chunks', content_rowid='id', tokenize='trigram')",
    "CREATE TABLE log_chunks_fts_pending (chunk_id INTEGER PRIMARY KEY)",
    "INSERT INTO log_chunks_fts_pending(chunk_id) SELECT id FROM log_chunks",
    "CREATE TRIGGER log_chunks_fts_insert AFTER INSERT ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts_pending(chunk_id) VALUES (new.id); END",
    "CREATE TRIGGER log_chunks_fts_delete AFTER DELETE ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) "
    "SELECT 'delete', old.id, old.content WHERE NOT EXISTS "
    "(SELECT 1 FROM log_chunks_fts_pending WHERE chunk_id = old.id); "
    "DELETE FROM log_chunks_fts_pending WHERE chunk_id = old.id; END",
    "CREATE TRIGGER log_chunks_fts_update AFTER UPDATE OF content ON log_chunks WHEN NOT EXISTS "
    "(SELECT 1 FROM log_chunks_fts_pending WHERE chunk_id = old.id) BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
]


def _tables(bind: sa.Connection) -> set[str]:
    return set(sa.inspect(bind).get_table_names())


def upgrade() -> None:
    op.add_column("log_chunks", sa.Column("compressed", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and "log_chunks_fts" in _tables(bind):
        for trigger in ("insert", "delete", "update"):
            bind.exec_driver_sql(f"DROP TRIGGER log_chunks_fts_{trigger}")
        bind.exec_driver_sql("DROP TABLE log_chunks_fts_pending")
        bind.exec_driver_sql("DROP TABLE log_chunks_fts")
        _create(bind, _SQLITE)
    elif bind.dialect.name == "postgresql" and _has_trigram_index(bind):
        bind.exec_driver_sql("DROP INDEX ix_log_chunks_content_trgm")
        _create(bind, _POSTGRESQL)


def _has_trigram_index(bind: sa.Connection) -> bool:
    return any(index["name"] == "ix_log_chunks_content_trgm" for index in sa.inspect(bind).get_indexes("log_chunks"))


def _create(bind: sa.Connection, statements: list[str]) -> None:
    for statement in statements:
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql("INSERT INTO log_search_pending(chunk_id) SELECT id FROM log_chunks")


def downgrade() -> None:
    bind = op.get_bind()
    chunks = sa.table("log_chunks", sa.column("id"), sa.column("content"), sa.column("compressed"))
    for chunk_id, compressed in bind.execute(
        sa.select(chunks.c.id, chunks.c.compressed).where(chunks.c.compressed.is_not(None))
    ):
        text = zstandard.decompress(bytes(compressed)).decode()
        bind.execute(sa.update(chunks).where(chunks.c.id == chunk_id).values(content=text))
    if "log_search_pending" in _tables(bind):
        bind.exec_driver_sql("DROP TABLE log_search_pending")
        if bind.dialect.name == "sqlite":
            bind.exec_driver_sql("DROP TRIGGER log_search_queue")
            bind.exec_driver_sql("DROP TABLE log_search")
            for statement in _OLD_SQLITE:
                bind.exec_driver_sql(statement)
        else:
            bind.exec_driver_sql("DROP TRIGGER log_search_queue ON log_chunks")
            bind.exec_driver_sql("DROP FUNCTION log_search_queue()")
            bind.exec_driver_sql("DROP TABLE log_search")
            bind.exec_driver_sql(
                "CREATE INDEX ix_log_chunks_content_trgm ON log_chunks USING gin (content gin_trgm_ops)"
            )
    op.drop_column("log_chunks", "compressed")  # in place: rebuilding the table would drop its triggers
