"""Build history analysis: test results, indexes for history queries, and log search.

On SQLite, log search is an FTS5 table with the trigram tokenizer over ``log_chunks`` (external
content: the text is stored once), kept in step by triggers; case-insensitive substring search then
uses the index. On PostgreSQL it is a pg_trgm GIN index on ``log_chunks.content``, which serves
``ILIKE '%...%'``. Without the trigram tokenizer (SQLite older than 3.34) or the extension (a role
that may not create it), the migration still succeeds and search scans the chunks instead.

Caveat for later migrations: SQLite's batch mode rebuilds a table it alters, which drops its
triggers; a migration that alters ``log_chunks`` must create the triggers below again.

Revision ID: 0002_analysis
Revises: 0002_model
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0002_analysis"
down_revision = "0002_model"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE log_chunks_fts USING fts5("
    "content, content='log_chunks', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER log_chunks_fts_insert AFTER INSERT ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER log_chunks_fts_delete AFTER DELETE ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER log_chunks_fts_update AFTER UPDATE OF content ON log_chunks BEGIN "
    "INSERT INTO log_chunks_fts(log_chunks_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO log_chunks_fts(rowid, content) VALUES (new.id, new.content); END",
    "INSERT INTO log_chunks_fts(log_chunks_fts) VALUES ('rebuild')",  # chunks stored before this migration
]


def upgrade() -> None:
    op.create_table(
        "test_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(length=255), nullable=False),
        sa.Column("classname", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_test_results_build_id_builds"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_test_results_step_id_steps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_results")),
    )
    with op.batch_alter_table("test_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_test_results_build_id"), ["build_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_results_step_id"), ["step_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_results_name_classname"), ["name", "classname"], unique=False)
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_builds_builder_started_at"), ["builder", "started_at"], unique=False)
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_received_at"), ["received_at"], unique=False)

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _create_sqlite_search(bind)
    elif bind.dialect.name == "postgresql":
        _create_postgresql_search(bind)


def _create_sqlite_search(bind: sa.Connection) -> None:
    try:
        bind.exec_driver_sql("CREATE VIRTUAL TABLE temp.trigram_probe USING fts5(x, tokenize='trigram')")
    except sa.exc.OperationalError as exc:
        log.warning("SQLite %s has no FTS5 trigram tokenizer (%s); log search will scan", _sqlite_version(bind), exc)
        return
    bind.exec_driver_sql("DROP TABLE temp.trigram_probe")
    for statement in _SQLITE_SEARCH:
        bind.exec_driver_sql(statement)


def _sqlite_version(bind: sa.Connection) -> str:
    return bind.exec_driver_sql("SELECT sqlite_version()").scalar()


def _create_postgresql_search(bind: sa.Connection) -> None:
    savepoint = bind.begin_nested()  # a refused extension must not abort the whole migration
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("cannot create the pg_trgm extension (%s); log search will scan", exc.orig)
        return
    savepoint.commit()
    bind.exec_driver_sql("CREATE INDEX ix_log_chunks_content_trgm ON log_chunks USING gin (content gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS log_chunks_fts_{trigger}")
        bind.exec_driver_sql("DROP TABLE IF EXISTS log_chunks_fts")
    elif bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP INDEX IF EXISTS ix_log_chunks_content_trgm")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_changes_received_at"))
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builds_builder_started_at"))
    op.drop_table("test_results")
