"""Migrations and engine settings (``flowbot/store/migrations/``, ``flowbot/store/engine.py``).

The tables in ``schema.py`` are what the code queries; the Alembic migrations are what a database
actually gets. These tests keep the two in step on both databases, and check the SQLite settings
the store's durability relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowbot.records import Change
from flowbot.store import Store
from flowbot.store.engine import alembic_config
from flowbot.store.schema import compare_type, include_object, metadata


def differences_and_revision(db_url: str) -> tuple[list, str | None]:
    """What Alembic finds different between the database and the declared tables (types included)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": compare_type, "include_object": include_object}
            context = MigrationContext.configure(conn, opts=opts)
            return compare_metadata(context, metadata), context.get_current_revision()
    finally:
        engine.dispose()


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_the_migrated_database_matches_the_schema(db_url: str) -> None:
    # Given an empty database migrated by opening a store on it
    store = await Store.open(db_url)
    await store.close()

    # When Alembic compares it with the tables the code declares
    differences, revision = differences_and_revision(db_url)

    # Then there is no difference: no table, column, type, index or constraint missing a migration
    assert differences == []
    # And the database records the newest migration
    assert revision == HEAD


EARLIER = [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()][1:]


@pytest.mark.parametrize("revision", EARLIER)
async def test_a_database_of_any_earlier_revision_upgrades_keeping_its_data(db_url: str, revision: str) -> None:
    # Given a database an older flowbot made, holding a change
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.execute(
                sa.text(
                    "INSERT INTO changes (repository, branch, revision, project, codebase, author, committer,"
                    " comments, revlink, when_at, received_at, properties)"
                    " VALUES ('repo', 'main', 'r1', '', '', 'alice', 'alice', 'old', '', 1, 1, '{}')"
                )
            )
    finally:
        engine.dispose()

    # When the current flowbot opens it
    store = await Store.open(db_url)
    try:
        # Then it is at the newest schema, with its data, and takes what the old schema refused
        await store.changes.add(Change(branch="b" * 300, author="a" * 300, revision="r2"), [], 2.0)
        assert [c.author for c in await store.changes.recent()] == ["a" * 300, "alice"]
    finally:
        await store.close()
    assert differences_and_revision(db_url) == ([], HEAD)


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


async def test_builds_stored_without_a_revision_get_the_one_they_checked_out(db_url: str) -> None:
    # Given builds an older flowbot stored: forced (no revision) with got_revision of one or two
    # codebases, one without got_revision, and one whose request named its revision
    engine = sa.create_engine(db_url)
    stored = {
        1: (None, {"got_revision": ["abc123", "Git Step"]}),
        2: (None, {"got_revision": [{"lib": "lib1", "app": "app1"}, "Git Step"]}),
        3: (None, {"buildername": ["unit", "Build"]}),
        4: ("asked", {"got_revision": ["other", "Git Step"]}),
        5: (None, None),
    }
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0008_test_locations")
            for n, (revision, properties) in stored.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO buildsets (id, scheduler, reason, properties, submitted_at)"
                        " VALUES (:n, 'force', '', '{}', 1)"
                    ),
                    {"n": n},
                )
                for codebase in ("app", "lib") if n == 2 else ("",):
                    conn.execute(
                        sa.text(
                            "INSERT INTO sourcestamps (buildset_id, codebase, repository, project)"
                            " VALUES (:n, :codebase, '', '')"
                        ),
                        {"n": n, "codebase": codebase},
                    )
                conn.execute(
                    sa.text(
                        "INSERT INTO buildrequests (id, buildset_id, builder, priority, submitted_at)"
                        " VALUES (:n, :n, 'unit', 0, 1)"
                    ),
                    {"n": n},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO builds (id, request_id, builder, number, worker, revision, started_at, summary,"
                        " properties) VALUES (:n, :n, 'unit', :n, 'w1', :revision, 1, '', :properties)"
                    ).bindparams(sa.bindparam("properties", type_=sa.JSON)),
                    {"n": n, "revision": revision, "properties": properties},
                )
    finally:
        engine.dispose()

    # When the current flowbot opens it
    store = await Store.open(db_url)
    try:
        builds = {b.id: b.revision for b in await store.builds.query()}
    finally:
        await store.close()

    # Then each build has the revision it built, of its first codebase; the rest are as they were
    assert builds == {1: "abc123", 2: "app1", 3: None, 4: "asked", 5: None}
