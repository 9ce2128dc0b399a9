"""Group commit: many writes from one event-loop turn share one transaction.

Each write is a function of a connection; the writer runs every write queued during a turn of
the loop (and, on a thread, while the previous transaction was busy) in one transaction, and
resolves each caller's future when that transaction has committed. Under load a transaction
carries dozens of writes; when idle it carries one and costs one commit. If a batch fails, its
writes are retried one per transaction, so one bad write fails alone.

The writer keeps one connection of its own rather than taking one from the pool per
transaction: a pool checkout and the reset on its return cost more than a small transaction. A
connection that fails is let go; a batch that fails on a kept connection (one a restarted
PostgreSQL server dropped, say) is tried once more on a fresh one before anything is given up.

Where the database is a network server (PostgreSQL) transactions run on the store's one thread,
so the loop never waits for the network. An embedded SQLite commit in WAL mode costs tens of
microseconds and never syncs (checkpoints, which do, run on the store's thread), so there the
writer commits in the loop itself and saves two thread hand-offs per transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import sqlalchemy as sa

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds after an inline commit before the checkpoint that syncs it to the database file.
CHECKPOINT_DELAY = 1.0
Op = Callable[[sa.Connection], Any]


class GroupWriter:
    """Queues write operations and commits them in batches, inline or on ``executor``.

    ``failure`` turns what a write or its commit raised into what its caller gets.
    """

    def __init__(
        self,
        engine: sa.Engine,
        executor: Executor,
        *,
        inline: bool = False,
        checkpoint: Callable[[], None] | None = None,
        failure: Callable[[Exception], Exception] = lambda exc: exc,
    ):
        self._engine = engine
        self._failure = failure
        self._executor = executor
        self.inline = inline
        self._checkpoint = checkpoint
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._pending: list[tuple[Op, asyncio.Future]] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._connection: sa.Connection | None = None

    def submit(self, op: Callable[[sa.Connection], T]) -> asyncio.Future[T]:
        """Queue ``op``; the future resolves with its return value once it is committed."""
        loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((op, future))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            # Gather what this turn of the loop writes and what the next two turns add: a build's
            # end frees its worker, the dispatcher's pass (one turn later) starts the next build,
            # whose task (one more) sends its command and queues its start. All of it then shares
            # one commit, which comes after that command has left: three hops, microseconds.
            loop.call_soon(loop.call_soon, loop.call_soon, self._flush)
        return future

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        await self._idle.wait()
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
            self._checkpoint_timer = None

    def _start_checkpoint(self) -> None:
        """Move committed pages from the log into the database, on the store's thread (it syncs)."""
        self._checkpoint_timer = None
        done = self._executor.submit(self._checkpoint)
        done.add_done_callback(lambda f: f.exception() and log.warning("checkpoint failed: %s", f.exception()))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self.inline:
            self._resolve(batch, self._run(batch))
            if self._checkpoint is not None and self._checkpoint_timer is None:
                self._checkpoint_timer = self._loop.call_later(CHECKPOINT_DELAY, self._start_checkpoint)
            return
        done = self._executor.submit(self._run, batch)
        done.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._resolve_from, batch, f))

    def close(self) -> None:
        """Let go of the writer's connection (on the thread that writes, after :meth:`drain`)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except Exception as exc:  # a connection the server dropped cannot even say goodbye
                log.debug("closing the writer's connection failed: %s", exc)

    def _transaction(self, ops: list[Op]) -> list[Any]:
        """Run ``ops`` in one transaction and commit; a kept connection that fails is tried again
        once, fresh. Raises what the ops or the commit raised (a full disk fails in the commit)."""
        kept = self._connection is not None
        while True:
            if self._connection is None:
                self._connection = self._engine.connect()
            connection = self._connection
            try:
                with connection.begin():
                    return [op(connection) for op in ops]
            except Exception:
                self.close()
                if not kept:
                    raise
                kept = False

    def _run(self, batch: list[tuple[Op, asyncio.Future]]) -> list[tuple[bool, Any]]:
        try:
            return [(True, value) for value in self._transaction([op for op, _ in batch])]
        except Exception as exc:
            if len(batch) == 1:
                return [(False, self._failure(exc))]
            log.warning("a batch of %d writes failed (%s); retrying them one by one", len(batch), exc)
        results: list[tuple[bool, Any]] = []
        for op, _ in batch:
            try:
                (value,) = self._transaction([op])
            except Exception as exc:
                results.append((False, self._failure(exc)))
            else:
                results.append((True, value))
        return results

    def _resolve_from(self, batch: list[tuple[Op, asyncio.Future]], done: Any) -> None:
        try:
            results = done.result()
        except Exception as exc:  # the executor itself failed (shut down)
            results = [(False, exc)] * len(batch)
        self._resolve(batch, results)

    def _resolve(self, batch: list[tuple[Op, asyncio.Future]], results: list[tuple[bool, Any]]) -> None:
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending and not self.inline:
            self._flush()
        elif self._pending:  # written by callbacks of this batch: next turn, with what else comes
            self._loop.call_soon(self._flush)
        else:
            self._busy = False
            self._idle.set()
