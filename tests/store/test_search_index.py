"""Migration ``0002_analysis`` on a database that already has history: its logs become searchable, and it reverts."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from flowbot.analysis import History
from flowbot.store import Store
from flowbot.store.engine import alembic_config, create_engine


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
