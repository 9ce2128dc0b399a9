"""Builders whose logs are not indexed for search (``Builder(search_logs=False)``): on SQLite the
chunks the indexer let go unindexed are listed, so that deleting them later tells the index
nothing of them (its contentless table must be told exactly what it took in). PostgreSQL's index
follows its chunks by itself and needs no list.

Revision ID: 0015_log_search_skipped
Revises: 0014_attempts
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_log_search_skipped"
down_revision = "0014_attempts"
branch_labels = None
depends_on = None


def _applies(bind: sa.Connection) -> bool:
    return bind.dialect.name == "sqlite" and "log_search" in sa.inspect(bind).get_table_names()


def upgrade() -> None:
    bind = op.get_bind()
    if _applies(bind):
        bind.exec_driver_sql(
            "CREATE TABLE log_search_skipped (chunk_id INTEGER PRIMARY KEY REFERENCES log_chunks(id) ON DELETE CASCADE)"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if _applies(bind) and "log_search_skipped" in sa.inspect(bind).get_table_names():
        # Earlier code indexes every chunk: what was let go is queued again.
        bind.exec_driver_sql("INSERT INTO log_search_pending(chunk_id) SELECT chunk_id FROM log_search_skipped")
        bind.exec_driver_sql("DROP TABLE log_search_skipped")
