"""Group commit: many writes from one event-loop turn share one transaction on one thread.

The master's loop never blocks on the database. Each write is a function of a connection; the
writer runs every write queued while the previous transaction was busy in the next transaction,
on a single thread, and resolves each caller's future when that transaction has committed. Under
load a transaction carries dozens of writes; when idle it carries one and costs one commit.
If a batch fails, its writes are retried one per transaction, so one bad write fails alone.
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
Op = Callable[[sa.Connection], Any]


class GroupWriter:
    """Queues write operations and commits them in batches on ``executor``."""

    def __init__(self, engine: sa.Engine, executor: Executor):
        self._engine = engine
        self._executor = executor
        self._pending: list[tuple[Op, asyncio.Future]] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, op: Callable[[sa.Connection], T]) -> asyncio.Future[T]:
        """Queue ``op``; the future resolves with its return value once it is committed."""
        loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((op, future))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            loop.call_soon(self._flush)  # gather whatever else this turn of the loop writes
        return future

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        await self._idle.wait()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        done = self._executor.submit(self._run, batch)
        done.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._resolve, batch, f))

    def _run(self, batch: list[tuple[Op, asyncio.Future]]) -> list[tuple[bool, Any]]:
        try:
            with self._engine.begin() as connection:
                return [(True, op(connection)) for op, _ in batch]
        except Exception as exc:
            if len(batch) == 1:
                return [(False, exc)]
            log.warning("a batch of %d writes failed (%s); retrying them one by one", len(batch), exc)
        results = []
        for op, _ in batch:
            try:
                with self._engine.begin() as connection:
                    results.append((True, op(connection)))
            except Exception as exc:
                results.append((False, exc))
        return results

    def _resolve(self, batch: list[tuple[Op, asyncio.Future]], done: Any) -> None:
        try:
            results = done.result()
        except Exception as exc:  # the executor itself failed (shut down)
            results = [(False, exc)] * len(batch)
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending:
            self._flush()
        else:
            self._busy = False
            self._idle.set()
