"""The janitor: deletes old logs, then old builds, as a :class:`~flowbot.Retention` says.

Buildbot's janitor once held a database for three hours. This one never holds it for long: it
deletes a batch of rows per transaction, sized so a transaction takes about
:data:`BATCH_SECONDS`, rests between batches, and its transactions queue behind the master's own
writes in the store's one writer (on SQLite that is the only way to write without waiting on a
lock). Logs go first:
the limit for logs is usually the shorter one, and log chunks are most of a store's size.

Deleting a build request deletes its builds, their steps, log chunks and test results (foreign
keys cascade, and on SQLite the search index's triggers follow); a buildset goes with its last
request. Changes are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import StoreError
from ..retention import Retention
from . import schema as t
from .store import Store

log = logging.getLogger(__name__)

#: How long one batch should hold the database, in seconds; batch sizes adapt to it.
BATCH_SECONDS = 0.02
#: Shortest pause between batches. The pause is at least as long as the batch took, so the
#: janitor never takes more than half of the store's time (on SQLite the writes run in the
#: master's event loop) and the master's own writes and readers always get their turn.
PAUSE_SECONDS = 0.01
#: Builds (for logs) or requests (for builds) in the first batch, and the most in any batch.
FIRST_BATCH, MAX_BATCH = 50, 5000

_b, _r, _s, _l = t.builds.c, t.buildrequests.c, t.steps.c, t.log_chunks.c


@dataclass
class Swept:
    """What one sweep removed."""

    log_chunks: int = 0
    requests: int = 0


async def run(store: Store, retention: Retention) -> None:
    """Sweep now and then every ``retention.interval`` seconds, until cancelled."""
    while True:
        try:
            swept = await sweep(store, retention, time.time())
        except StoreError as exc:
            log.warning("the janitor could not finish: %s; it tries again in %s", exc, retention.every)
        else:
            if swept.log_chunks or swept.requests:
                log.info(
                    "janitor: removed %d log chunks and %d build requests with their builds",
                    swept.log_chunks,
                    swept.requests,
                )
        await asyncio.sleep(retention.interval)


async def sweep(store: Store, retention: Retention, now: float) -> Swept:
    """Apply ``retention`` once: the logs past their limit, then the builds past theirs."""
    swept = Swept()
    own = list(retention.per_builder)
    rules = [(_b.builder.not_in(own), _r.builder.not_in(own), retention.limits())]
    rules += [(_b.builder == name, _r.builder == name, retention.limits(name)) for name in own]
    for build_is, request_is, (logs, builds) in rules:
        if logs is not None:
            swept.log_chunks += await _in_batches(store, _purge_logs, build_is, now - logs)
        if builds is not None:
            swept.requests += await _in_batches(store, _purge_requests, request_is, now - builds)
    return swept


Purge = Callable[[sa.Connection, sa.ColumnElement[bool], float, int, list[float]], tuple[int, int]]


async def _in_batches(store: Store, purge: Purge, which: sa.ColumnElement[bool], cutoff: float) -> int:
    """Run ``purge`` batch after batch until it finds nothing; returns the rows it deleted."""
    size, deleted, position = FIRST_BATCH, 0, [float("-inf")]
    while True:
        began = time.perf_counter()
        # The janitor belongs to the store: its deletes take the same queue as every other write.
        seen, removed = await store._submit(lambda conn, size=size: purge(conn, which, cutoff, size, position))
        took = time.perf_counter() - began
        deleted += removed
        if seen < size:
            return deleted
        if took > BATCH_SECONDS:
            size = max(1, size // 2)
        elif took < BATCH_SECONDS / 4:
            size = min(MAX_BATCH, size * 2)
        await asyncio.sleep(max(PAUSE_SECONDS, took))


def _purge_logs(
    conn: sa.Connection, which: sa.ColumnElement[bool], cutoff: float, size: int, position: list[float]
) -> tuple[int, int]:
    """Delete the log chunks of the next ``size`` finished builds that started before ``cutoff``.

    ``position`` holds the start time reached so far, so a sweep reads each old build once.
    """
    has_logs = sa.exists().where(_s.build_id == _b.id, _l.step_id == _s.id)
    rows = conn.execute(
        sa.select(_b.id, _b.started_at)
        .where(which, _b.started_at < cutoff, _b.started_at >= position[0], _b.finished_at.is_not(None), has_logs)
        .order_by(_b.started_at)
        .limit(size)
    ).all()
    if not rows:
        return 0, 0
    position[0] = rows[-1].started_at
    steps = sa.select(_s.id).where(_s.build_id.in_([row.id for row in rows]))
    removed = conn.execute(sa.delete(t.log_chunks).where(_l.step_id.in_(steps))).rowcount
    return len(rows), removed


def _purge_requests(
    conn: sa.Connection, which: sa.ColumnElement[bool], cutoff: float, size: int, _position: list[float]
) -> tuple[int, int]:
    """Delete the next ``size`` requests completed before ``cutoff``, with their builds, and emptied buildsets."""
    rows = conn.execute(
        sa.select(_r.id, _r.buildset_id).where(which, _r.complete_at < cutoff).order_by(_r.complete_at).limit(size)
    ).all()
    if not rows:
        return 0, 0
    removed = conn.execute(sa.delete(t.buildrequests).where(_r.id.in_([row.id for row in rows]))).rowcount
    emptied = sa.and_(
        t.buildsets.c.id.in_({row.buildset_id for row in rows}),
        ~sa.exists().where(_r.buildset_id == t.buildsets.c.id),
    )
    conn.execute(sa.delete(t.buildsets).where(emptied))
    return len(rows), removed
