"""Group commit: many writes from one event-loop turn share one transaction.

Each write is a function of a connection; the writer runs every write queued during a turn of
the loop (and, on a thread, while the previous transaction was busy) in one transaction, and
resolves each caller's future when that transaction has committed. Whoever must act on a write
as soon as it is stored (announce it, count it) says so with :meth:`GroupWriter.then`: the writer
calls it as it resolves that write, in the order the writes were made, rather than through a
callback of the future, which costs a turn of the loop each. Under load a transaction
carries dozens of writes; when idle it carries one and costs one commit. If a batch fails, its
writes are retried one per transaction, so one bad write fails alone; the writes after it wait
for the next turn, so whoever watched the bad one knows of its failure before they run.

The writer keeps one connection of its own rather than taking one from the pool per
transaction: a pool checkout and the reset on its return cost more than a small transaction. A
connection that fails is let go; a batch that fails on a kept connection (one a restarted
PostgreSQL server dropped, say) is tried once more on a fresh one before anything is given up.

When the database cannot take writes at all (a server that is down or restarting, a full disk:
see :func:`~flowbot.store.engine.unavailable`), the writer holds on to them. Each write says how
long it may wait for the database to come back (``wait``): a build's records as long as it
takes, a log chunk a while, a new change or request not at all, so whoever sent it hears at
once and may send it again. Held writes are tried again in the order they were made, backing off
from :data:`~flowbot.defaults.STORE_RETRY_MIN` to :data:`~flowbot.defaults.STORE_RETRY_MAX`
seconds (a probe stands in when nothing is held), and the outage is logged when it
starts, every :data:`~flowbot.defaults.STORE_OUTAGE_REMINDER` seconds while it lasts, and when it
ends, however many writes it holds up.

Where the database is a network server (PostgreSQL) transactions run on the store's one thread,
so the loop never waits for the network. An embedded SQLite commit in WAL mode costs tens of
microseconds and never syncs (checkpoints, which do, run on the store's thread), so there the
writer commits in the loop itself and saves two thread hand-offs per transaction. There a
transaction takes at most :data:`~flowbot.defaults.STORE_INLINE_BATCH` writes, the rest going on
in the next turn of the loop (after the callbacks of those committed), so a burst of writes
never holds the loop for long.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from ..defaults import STORE_INLINE_BATCH, STORE_OUTAGE_REMINDER, STORE_RETRY_MAX, STORE_RETRY_MIN
from ..errors import StoreUnavailable
from .engine import close_quietly, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds after an inline commit before the checkpoint that syncs it to the database file.
CHECKPOINT_DELAY = 1.0
Op = Callable[[sa.Connection], Any]


class _Outcome(enum.Enum):
    COMMITTED = enum.auto()
    #: The write failed and would fail again: its caller gets the error.
    FAILED = enum.auto()
    #: The database could not take it: held for another try while the write may wait.
    UNAVAILABLE = enum.auto()
    #: Not tried (a write before it failed): queued again at the head.
    NOT_RUN = enum.auto()


@dataclass(eq=False, slots=True)
class _Write:
    op: Op
    future: asyncio.Future
    #: Loop time when it was made, and until which it may wait for an unavailable database.
    submitted: float
    deadline: float
    #: Called with the future once it is resolved (see :meth:`GroupWriter.then`).
    hooks: list[Callable[[asyncio.Future], None]] | None = None


@dataclass(eq=False, slots=True)
class _Outage:
    """The database cannot take writes: since when, why, and how often it was tried."""

    since: float
    error: StoreUnavailable
    attempts: int = 0
    reminded: float = 0.0

    def refusal(self) -> StoreUnavailable:
        return StoreUnavailable(f"{self.error}; try again once it is back")


class GroupWriter:
    """Queues write operations and commits them in batches, inline or on ``executor``.

    ``failure`` turns what a write or its commit raised into what its caller gets; a
    :class:`~flowbot.errors.StoreUnavailable` means the database cannot take writes now.
    ``probe`` is the write tried during an outage when no other waits (it must leave nothing
    behind), and ``on_available`` is called when the database takes writes again. ``batch`` is
    the most writes an inline transaction takes.
    """

    def __init__(
        self,
        engine: sa.Engine,
        executor: Executor,
        *,
        inline: bool = False,
        checkpoint: Callable[[], bool] | None = None,
        failure: Callable[[Exception], Exception] = lambda exc: exc,
        probe: Op = lambda conn: conn.exec_driver_sql("SELECT 1"),
        on_available: Callable[[], None] | None = None,
        batch: int = STORE_INLINE_BATCH,
    ):
        self._probe = probe
        self._batch = batch
        self._engine = engine
        self._failure = failure
        self._executor = executor
        self.inline = inline
        self.on_available = on_available
        self._checkpoint = checkpoint
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_failing = False
        self._pending: list[_Write] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._connection: sa.Connection | None = None
        self._outage: _Outage | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._closing = False

    @property
    def available(self) -> bool:
        """False while the database cannot take writes (from the first failed try to the first good one)."""
        return self._outage is None

    @property
    def held(self) -> int:
        """How many writes wait for the database to come back."""
        return len(self._pending) if self._outage is not None else 0

    def submit(self, op: Callable[[sa.Connection], T], *, wait: float = 0.0) -> asyncio.Future[T]:
        """Queue ``op``; the future resolves with its return value once it is committed.

        ``wait`` is how many seconds the write may wait for a database that cannot take it
        (``math.inf``: as long as it takes); past that it fails with StoreUnavailable.
        """
        loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._outage is not None and wait <= 0:
            future.set_exception(self._outage.refusal())
            return future
        now = loop.time()
        self._pending.append(_Write(op, future, now, now + wait))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            # Gather what this turn of the loop writes and what the next two turns add: a build's
            # end frees its worker, the dispatcher's pass (one turn later) starts the next build,
            # whose task (one more) sends its command and queues its start. All of it then shares
            # one commit, which comes after that command has left: three hops, microseconds.
            loop.call_soon(loop.call_soon, loop.call_soon, self._flush)
        return future

    def then(self, future: asyncio.Future, hook: Callable[[asyncio.Future], None]) -> None:
        """Call ``hook(future)`` once the write of ``future`` (one :meth:`submit` returned) is
        committed or has failed: at once, as the writer resolves it, if ``future`` is the last
        write made (as when a hook is given as soon as its write is made); otherwise as a callback
        of the future. Hooks given at once run in the order their writes were made;
        one that raises is logged, and the others still run."""
        if self._pending and (write := self._pending[-1]).future is future:
            if write.hooks is None:
                write.hooks = [hook]
            else:
                write.hooks.append(hook)
            return
        future.add_done_callback(hook)

    def _settled(self, write: _Write) -> None:
        """Run the hooks of ``write``, whose future is resolved."""
        hooks, write.hooks = write.hooks, None
        for hook in hooks or ():
            try:
                hook(write.future)
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "a hook of a stored write failed", "exception": exc, "future": write.future}
                )

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is committed (or failed); writes still held
        for an unavailable database after ``timeout`` seconds fail."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            self._give_up()
            await self._idle.wait()
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
            self._checkpoint_timer = None

    def _give_up(self) -> None:
        """Fail the writes held for the database (the master is stopping): their records are not made."""
        self._closing = True  # an outage that starts from now on gives its writes up at once
        outage = self._outage
        if outage is None:
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        writes, self._pending = self._pending, []
        error = StoreUnavailable(f"{outage.error}; the master stopped before it came back")
        for write in writes:
            if not write.future.done():
                write.future.set_exception(error)
            self._settled(write)
        log.error("%d write(s) held for the database are given up: %s", len(writes), error)
        self._busy = False
        self._idle.set()

    def _start_checkpoint(self) -> None:
        """Move committed pages from the log into the database, on the store's thread (it syncs)."""
        self._checkpoint_timer = None
        try:
            started = self._executor.submit(self._checkpoint)
        except RuntimeError:  # the store closed meanwhile, with a checkpoint of its own
            return
        started.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: Any) -> None:
        """Say when checkpoints start failing (a full disk) and when they work again, not every time."""
        failure = done.exception()
        if failure is not None and not self._checkpoint_failing:
            log.warning(
                "checkpoint failed (%s); committed writes stay in the write-ahead log meanwhile", describe(failure)
            )
        elif failure is None and self._checkpoint_failing:
            log.info("checkpoints work again")
        self._checkpoint_failing = failure is not None
        if failure is None and done.result() is False:  # the log is long and a reader held on: soon again
            self._loop.call_soon_threadsafe(self._checkpoint_soon)

    def _checkpoint_soon(self) -> None:
        if self._checkpoint_timer is None:
            self._checkpoint_timer = self._loop.call_later(CHECKPOINT_DELAY, self._start_checkpoint)

    def _flush(self) -> None:
        if self.inline:  # what is left goes on in the loop's next turn (see _resolve)
            batch, self._pending = self._pending[: self._batch], self._pending[self._batch :]
            self._resolve(batch, self._run(batch))
            return
        batch, self._pending = self._pending, []
        done = self._executor.submit(self._run, batch)
        done.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._resolve_from, batch, f))

    def close(self) -> None:
        """Let go of the writer's connection (on the thread that writes, after :meth:`drain`)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            close_quietly(connection, "writer's")

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

    def _run(self, batch: list[_Write]) -> list[tuple[_Outcome, Any]]:
        try:
            return [(_Outcome.COMMITTED, value) for value in self._transaction([w.op for w in batch])]
        except Exception as exc:
            error = self._failure(exc)
            if isinstance(error, StoreUnavailable):  # one at a time would fail alike
                return [(_Outcome.UNAVAILABLE, error)] * len(batch)
            if len(batch) == 1:
                return [(_Outcome.FAILED, error)]
            log.warning("a batch of %d writes failed (%s); retrying them one by one", len(batch), error)
        results: list[tuple[_Outcome, Any]] = []
        for write in batch:
            try:
                (value,) = self._transaction([write.op])
            except Exception as exc:
                error = self._failure(exc)
                if isinstance(error, StoreUnavailable):
                    return results + [(_Outcome.UNAVAILABLE, error)] * (len(batch) - len(results))
                results.append((_Outcome.FAILED, error))
                return results + [(_Outcome.NOT_RUN, None)] * (len(batch) - len(results))
            results.append((_Outcome.COMMITTED, value))
        return results

    def _resolve_from(self, batch: list[_Write], done: Any) -> None:
        try:
            results = done.result()
        except Exception as exc:  # the executor itself failed (shut down)
            results = [(_Outcome.FAILED, exc)] * len(batch)
        self._resolve(batch, results)

    def _resolve(self, batch: list[_Write], results: list[tuple[_Outcome, Any]]) -> None:
        again: list[_Write] = []
        unavailable: StoreUnavailable | None = None
        committed = failed = False
        for write, (outcome, value) in zip(batch, results, strict=True):
            if outcome is _Outcome.UNAVAILABLE:
                unavailable = value
            if write.future.done():  # cancelled by its caller
                self._settled(write)
                continue
            if outcome is _Outcome.COMMITTED:
                committed = True
                write.future.set_result(value)
            elif outcome is _Outcome.FAILED:
                failed = True
                write.future.set_exception(value)
            else:
                again.append(write)
                continue
            if write.hooks is not None:
                self._settled(write)
        self._pending = again + self._pending
        if self.inline and committed and self._checkpoint is not None and self._checkpoint_timer is None:
            self._checkpoint_timer = self._loop.call_later(CHECKPOINT_DELAY, self._start_checkpoint)
        if unavailable is not None:
            self._unavailable(unavailable)
        elif committed and self._outage is not None:
            self._available_again()
        if self._outage is not None:
            if self._closing:
                self._give_up()
            else:
                self._retry_later()
        elif self._pending and not self.inline and not failed:
            self._flush()
        elif self._pending:  # written by callbacks of this batch, or after a failure they must hear of first
            self._loop.call_soon(self._flush)
        else:
            self._busy = False
            self._idle.set()

    # -- outages ----------------------------------------------------------------------------------

    def _unavailable(self, error: StoreUnavailable) -> None:
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(now, error, reminded=now)
            log.error(
                "database outage: %s; %d write(s) wait for the database, and what is new is refused until it is back",
                _cause(error),
                len(self._pending),
            )
        outage.error = error
        outage.attempts += 1
        if now - outage.reminded >= STORE_OUTAGE_REMINDER:
            outage.reminded = now
            log.warning(
                "database outage for %.0f s: %s; %d write(s) wait for the database",
                now - outage.since,
                _cause(error),
                len(self._pending),
            )
        self._expire()

    def _expire(self) -> None:
        """Fail the held writes that may wait no longer."""
        now = self._loop.time()
        keep = []
        for write in self._pending:
            if write.future.done():
                self._settled(write)
                continue
            if write.deadline > now:
                keep.append(write)
                continue
            if write.deadline > write.submitted:  # it waited as long as it could
                write.future.set_exception(StoreUnavailable(str(self._outage.error)))
            else:
                write.future.set_exception(self._outage.refusal())
            self._settled(write)
        self._pending = keep

    def _retry_later(self) -> None:
        if self._closing or self._retry_timer is not None:
            return
        delay = min(STORE_RETRY_MIN * 2 ** min(self._outage.attempts - 1, 16), STORE_RETRY_MAX)
        self._retry_timer = self._loop.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        self._expire()
        if not self._pending:  # nothing waits: find out whether the database is back all the same
            probe = self._loop.create_future()
            probe.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure is the outage's
            self._pending.append(_Write(self._probe, probe, self._loop.time(), math.inf))
        # After the failures _expire set: whoever watched those hears of them before the rest runs.
        self._loop.call_soon(self._flush)

    def _available_again(self) -> None:
        outage, self._outage = self._outage, None
        log.warning("database outage over after %.1f s: writes are stored again", time.monotonic() - outage.since)
        if self.on_available is not None:
            self.on_available()


def _cause(error: StoreUnavailable) -> str:
    return describe(error.__cause__ or error)
