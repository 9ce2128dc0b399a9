"""Opening a database: engine settings per dialect, and migrations to the current schema."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..defaults import WAL_CHECKPOINT_PATIENCE, WAL_TRUNCATE_BYTES
from ..errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = "flowbot.store:migrations"

#: SQLite's primary result codes that say the database cannot take work now, not that the work is wrong:
#: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 13, 14})
#: PostgreSQL's SQLSTATE classes of the same kind: rollbacks to try again (40), insufficient resources
#: (53, a full disk among them), operator intervention (57, a shutdown), system errors (58).
_POSTGRES_UNAVAILABLE = frozenset({"08", "40", "53", "57", "58"})
#: Seconds a SQLite connection waits for a lock before it gives up.
SQLITE_BUSY_TIMEOUT = 30


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    SQLite runs with ``synchronous=NORMAL`` in WAL mode: a committed transaction survives the
    master being killed (it is in the OS's cache), and only a power cut can lose the last ones.
    Automatic checkpoints are off: the store runs them on its own thread, since they sync
    (:func:`checkpoint`).
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the store checkpoints off the loop
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    try:
        return sa.create_engine(parsed, pool_size=4, max_overflow=4, pool_pre_ping=True)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise StoreError(f"no driver for {parsed.drivername}: {exc}") from None


def checkpoint(connection: sa.Connection) -> bool:
    """Move committed pages from SQLite's write-ahead log into the database file.

    A PASSIVE checkpoint never waits, but it never shortens the log either, and under steady
    writes and reads the log is seldom free to start again from its beginning. So once the log
    passes :data:`~flowbot.defaults.WAL_TRUNCATE_BYTES` the checkpoint is a TRUNCATE, which waits a moment
    (:data:`~flowbot.defaults.WAL_CHECKPOINT_PATIENCE`) for readers of older snapshots and
    writers to finish, and empties the log. Returns False when the log is over that and
    could not be emptied (a reader held on): try again soon.
    """
    database = connection.engine.url.database
    try:
        size = Path(f"{database}-wal").stat().st_size if database and database != ":memory:" else 0
    except FileNotFoundError:
        size = 0
    if size <= WAL_TRUNCATE_BYTES:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        return True
    connection.exec_driver_sql(f"PRAGMA busy_timeout={int(WAL_CHECKPOINT_PATIENCE * 1000)}")
    try:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
    if busy:
        log.debug("the write-ahead log (%d bytes) could not be emptied yet: a reader holds an older snapshot", size)
    return not busy


def close_quietly(connection: sa.Connection, whose: str) -> None:
    """Close a kept connection that may already be dead: a connection the server dropped cannot even
    say goodbye, and that is no error of ``whose``."""
    try:
        connection.close()
    except Exception as exc:
        log.debug("closing the %s connection failed: %s", whose, exc)


def unavailable(exc: BaseException) -> bool:
    """Whether a database error says the database cannot take work now (down, restarting,
    unreachable, busy, its disk full), so the same work may succeed later; False for work the
    database refuses as such (a constraint, a bug), which would fail again."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_UNAVAILABLE
    if type(exc).__module__.startswith("psycopg"):
        import psycopg

        if isinstance(exc, psycopg.InterfaceError):  # "the connection is closed"
            return True
        if isinstance(exc, psycopg.OperationalError):
            state = getattr(exc, "sqlstate", None)
            return state is None or state[:2] in _POSTGRES_UNAVAILABLE  # None: no server to answer
    return False


def describe(exc: BaseException) -> str:
    """The database's own words for ``exc``: the first line of the driver's message."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the database to the newest schema (a no-op when it is there already)."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.begin() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head:
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    log.info("database schema migrated from %s to %s", current or "empty", head)
