"""Migrations and engine settings (``flowbot/store/migrations/``, ``flowbot/store/engine.py``).

The tables in ``schema.py`` are what the code queries; the Alembic migrations are what a database
actually gets. These tests keep the two in step on both databases, and check the SQLite settings
the store's durability relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowbot.store import Store
from flowbot.store.engine import alembic_config
from flowbot.store.schema import include_object, metadata


async def test_the_migrated_database_matches_the_schema(db_url: str) -> None:
    # Given an empty database migrated by opening a store on it
    store = await Store.open(db_url)
    await store.close()

    # When Alembic compares it with the tables the code declares (types included)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
            differences = compare_metadata(context, metadata)
            revision = context.get_current_revision()
    finally:
        engine.dispose()

    # Then there is no difference: no table, column, type, index or constraint missing a migration
    assert differences == []
    # And the database records the newest migration
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_sqlite_runs_in_wal_mode_and_enforces_foreign_keys(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            # A step of a build that does not exist is refused, not stored as an orphan
            with pytest.raises(sa.exc.IntegrityError):
                conn.exec_driver_sql(
                    "INSERT INTO steps (build_id, number, name, hidden, summary) VALUES (12345, 0, 'orphan', 0, '')"
                )
    finally:
        await store.close()
