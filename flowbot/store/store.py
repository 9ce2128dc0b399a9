"""The store: every record the master accepts, written before anything acts on it.

:class:`Store` is the master's only way into the database. It owns the engine, the one thread
the work runs on (the one bounded executor the master has) and the group-committing
:class:`~flowbot.store.writer.GroupWriter`, and composes one component per kind of record, each
owning its queries: :attr:`~Store.changes`, :attr:`~Store.requests` (and buildsets),
:attr:`~Store.matrices`, :attr:`~Store.builds`, :attr:`~Store.steps` (with test results and
artifacts), :attr:`~Store.logs`, :attr:`~Store.workers` and :attr:`~Store.state`. The same code
runs on SQLite and PostgreSQL.

While the database cannot take writes (a server restarting, a full disk), what is new (a change,
a forced build, a cancel) is refused at once with :class:`~flowbot.errors.StoreUnavailable`, so
its sender may try again, while the records of builds under way wait until the database is back
and are written then, in order: a build that started is recorded, and ends, whatever the outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sqlalchemy as sa

from ..defaults import STORE_STOP_WAIT
from ..errors import StoreError, StoreUnavailable
from .builds import Builds
from .changes import Changes
from .engine import checkpoint, create_engine, describe, migrate, unavailable
from .log_search import QUEUE_TABLE
from .logs import Logs
from .matrices import Matrices
from .pull_requests import PullRequests
from .requests import Requests
from .state import State, probe
from .steps import Steps
from .workers import Workers
from .writer import GroupWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    """Async access to the database at ``url``; call :meth:`open` before use."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbot-store")
        embedded = self.dialect == "sqlite"
        self._writer = GroupWriter(
            self.engine,
            self._executor,
            inline=embedded,
            checkpoint=self._checkpoint if embedded else None,
            failure=self._write_failed,
            probe=probe,
        )
        self.changes = Changes(self)
        self.requests = Requests(self)
        self.matrices = Matrices(self)
        self.builds = Builds(self)
        self.steps = Steps(self)
        self.logs = Logs(self)
        self.workers = Workers(self)
        self.state = State(self)
        self.pull_requests = PullRequests(self)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the current schema."""
        store = cls(url)

        def prepare(conn: sa.Connection) -> bool:
            migrate(store.engine)
            return sa.inspect(conn).has_table(QUEUE_TABLE)

        try:
            store.logs.queues_search = await store.read(prepare)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def available(self) -> bool:
        """False while the database cannot take writes (from a write it refused to one it took)."""
        return self._writer.available

    @property
    def held_writes(self) -> int:
        """How many writes wait for the database to come back."""
        return self._writer.held

    def when_available(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the database takes writes again after an outage."""
        self._writer.on_available = callback

    def _checkpoint(self) -> bool:
        with self.engine.connect() as connection:
            return checkpoint(connection)

    async def close(self) -> None:
        """Finish pending writes (giving up after a while those an unavailable database cannot
        take) and let go of the database."""
        loop = asyncio.get_running_loop()
        await self._writer.drain(STORE_STOP_WAIT)
        if self._writer.inline:
            self._writer.close()
        else:
            await loop.run_in_executor(self._executor, self._writer.close)
        if self.dialect == "sqlite":
            try:
                await loop.run_in_executor(self._executor, self._checkpoint)
            except sa.exc.SQLAlchemyError as exc:  # a full disk: the next start checkpoints what is left
                log.warning("the last checkpoint failed (%s); the write-ahead log keeps what it holds", describe(exc))
        await loop.run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)

    def submit(self, op: Callable[[sa.Connection], T], *, wait: float = 0.0) -> asyncio.Future[T]:
        """Queue a write; the future resolves once its transaction has committed. ``wait``: seconds
        it may wait for a database that cannot take it (``math.inf``: as long as it takes)."""
        return self._writer.submit(op, wait=wait)

    def keep(self, op: Callable[[sa.Connection], T]) -> asyncio.Future[T]:
        """Queue a write that records what has happened already (a build's progress): if the
        database cannot take it, it waits until it can."""
        return self._writer.submit(op, wait=math.inf)

    def then(self, write: asyncio.Future[T], hook: Callable[[asyncio.Future[T]], None]) -> None:
        """Call ``hook(write)`` as soon as ``write`` (a future :meth:`submit` or :meth:`keep`
        returned) is committed or has failed, without waiting for a turn of the loop (see
        :meth:`GroupWriter.then <flowbot.store.writer.GroupWriter.then>`)."""
        self._writer.then(write, hook)

    def _write_failed(self, exc: Exception) -> Exception:
        """A database's refusal of a write or of its commit as a StoreError, or as StoreUnavailable
        when the database cannot take writes now (down, restarting, its disk full)."""
        # The hot path runs some statements on the driver's cursor: its errors count too.
        if isinstance(exc, sa.exc.SQLAlchemyError | self.engine.dialect.loaded_dbapi.Error):
            return _store_error(exc, "database write failed")
        return exc

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` with a connection on the store's thread."""

        def run() -> T:
            with self.engine.connect() as connection:
                return fn(connection)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sa.exc.SQLAlchemyError as exc:
            raise _store_error(exc, "database read failed") from exc


def _store_error(exc: Exception, what: str) -> StoreError:
    """``exc`` from the database as the StoreError it means (StoreUnavailable when it may pass)."""
    if unavailable(exc):
        error: StoreError = StoreUnavailable(f"the database is unavailable ({describe(exc)})")
    else:
        error = StoreError(f"{what}: {getattr(exc, 'orig', None) or exc}")
    error.__cause__ = exc
    return error
