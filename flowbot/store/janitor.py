"""The janitor: deletes old logs, then old builds, as a :class:`~flowbot.Retention` says.

Buildbot's janitor once held a database for three hours. This one never holds it for long: it
deletes a batch of rows per transaction, sized so a transaction takes about
:data:`~flowbot.defaults.JANITOR_BATCH_SECONDS`, rests between batches, and its transactions queue
behind the master's own writes in the store's one writer (on SQLite that is the only way to write
without waiting on a lock). Logs go first: the limit for logs is usually the shorter one, and log
chunks are most of a store's size.

Each batch examines a bounded number of rows, however long the history: old logs are found by
walking the logs that are left (weeks of them), never the builds (years of them, whose logs went
long ago). From one sweep to the next, each rule's walk resumes where everything before was
settled, so a master's sweeps read the logs still within their limits and those written since;
its first sweep also reads the logs that other rules keep longer. Old requests are deleted one
builder at a time, from an index by builder and completion: a batch reads the requests it deletes,
never those of builders that a longer limit keeps.

Deleting a build request deletes its builds, their steps, log chunks and test results (foreign
keys cascade, and on SQLite the search index's triggers follow); a buildset goes with its last
request. Changes are kept.

The files builds stored on the master (artifacts) go before their builds do: a batch deletes their
rows and the files they name, except a file that another build's row names too (a later upload
to the same place) or that changed since it was stored. Empty directories left behind go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from ..defaults import (
    JANITOR_BATCH_SECONDS,
    JANITOR_FIRST_BATCH,
    JANITOR_MAX_BATCH,
    JANITOR_MIN_BATCH,
    JANITOR_PAUSE_SECONDS,
)
from ..errors import StoreError
from ..retention import Retention
from . import log_search
from . import schema as t
from .store import Store

log = logging.getLogger(__name__)

_b, _r, _s, _l, _a = t.builds.c, t.buildrequests.c, t.steps.c, t.log_chunks.c, t.artifacts.c


@dataclass
class Swept:
    """What one sweep removed."""

    log_chunks: int = 0
    requests: int = 0
    #: Artifacts' rows deleted (their files too, unless another build's row names the same file).
    artifacts: int = 0


@dataclass(frozen=True)
class Walk:
    """How far one rule's walk through the logs went, in a sweep and from one sweep to the next."""

    #: The last step examined in this sweep.
    at: int = 0
    #: Every step up to this one is settled: its logs are gone, or not the rule's to delete. The next
    #: sweep starts here: at the logs of the rule's builds still too young or running, and newer ones.
    settled: int = 0


async def run(store: Store, retention: Retention, artifacts: Path | None = None) -> None:
    """Sweep now and then every ``retention.interval`` seconds, until cancelled; ``artifacts`` is the
    master's artifacts directory."""
    walks: dict[str | None, Walk] = {}
    while True:
        try:
            swept = await sweep(store, retention, time.time(), walks, artifacts=artifacts)
        except StoreError as exc:
            log.warning("the janitor could not finish: %s; it tries again in %s", exc, retention.every)
        else:
            if swept.log_chunks or swept.requests:
                log.info(
                    "janitor: removed %d log chunks and %d build requests with their builds",
                    swept.log_chunks,
                    swept.requests,
                )
            if swept.artifacts:
                log.info("janitor: removed %d artifacts of old builds, with their files", swept.artifacts)
        await asyncio.sleep(retention.interval)


async def sweep(
    store: Store,
    retention: Retention,
    now: float,
    walks: dict[str | None, Walk] | None = None,
    *,
    artifacts: Path | None = None,
) -> Swept:
    """Apply ``retention`` once: the logs past their limit, the artifacts past theirs, then the builds.

    ``walks`` carries each rule's walk through the logs (by builder, None for the others') from
    one sweep of the same ``retention`` to the next; without it, the walks start from the oldest log.
    ``artifacts`` is the artifacts directory whose files the artifacts' rows name (None: only the
    rows go).
    """
    swept, walks = Swept(), {} if walks is None else walks
    own = list(retention.per_builder)
    rules = [(None, _b.builder.not_in(own), retention.limits())]
    rules += [(name, _b.builder == name, retention.limits(name)) for name in own]
    for rule, build_is, (logs, builds) in rules:
        if logs is not None:
            settled = walks.get(rule, Walk()).settled
            purge = partial(_purge_logs, which=build_is, cutoff=now - logs)
            removed, walks[rule] = await _in_batches(store, purge, Walk(settled, settled))
            swept.log_chunks += removed
        kept = retention.artifacts_limit(rule)
        if kept is not None:
            purge = partial(_purge_artifacts, which=build_is, cutoff=now - kept, root=artifacts)
            swept.artifacts += (await _in_batches(store, purge, Walk()))[0]
        if builds is not None:
            # One builder at a time: its old requests are a range of an index, with no one else's among them.
            names = [rule] if rule is not None else [name for name in await store.read(_builders) if name not in own]
            for name in names:
                purge = partial(_purge_requests, builder=name, cutoff=now - builds)
                swept.requests += (await _in_batches(store, purge, Walk()))[0]
    return swept


#: Deletes one batch, examining at most so many rows from where the walk is; says whether there
#: may be more, how many rows it deleted, and where the walk is now.
Purge = Callable[[sa.Connection, int, Walk], tuple[bool, int, Walk]]


async def _in_batches(store: Store, purge: Purge, walk: Walk) -> tuple[int, Walk]:
    """Run ``purge`` batch after batch until it says it is done; returns the rows it deleted, and the walk.

    The walk moves on only once a batch has committed: a batch that fails is tried again from where it began.
    """
    size, deleted = JANITOR_FIRST_BATCH, 0
    smallest = min(JANITOR_MIN_BATCH, JANITOR_FIRST_BATCH)
    while True:
        began = time.perf_counter()
        # The janitor belongs to the store: its deletes take the same queue as every other write.
        more, removed, walk = await store.submit(lambda conn, size=size, walk=walk: purge(conn, size, walk))
        took = time.perf_counter() - began
        deleted += removed
        if not more:
            return deleted, walk
        if took > JANITOR_BATCH_SECONDS:
            size = max(smallest, size // 2)
        elif took < JANITOR_BATCH_SECONDS / 4:
            size = min(JANITOR_MAX_BATCH, size * 2)
        await asyncio.sleep(max(JANITOR_PAUSE_SECONDS, took))


def _purge_logs(
    conn: sa.Connection, size: int, walk: Walk, *, which: sa.ColumnElement[bool], cutoff: float
) -> tuple[bool, int, Walk]:
    """Delete the logs of finished builds that started before ``cutoff``, among the next ``size`` log chunks.

    The walk goes through the logs left, in step order from ``walk.at``, never through the builds:
    a store keeps weeks of logs and years of builds whose logs went long ago.
    """
    chunks = (
        conn.execute(sa.select(_l.step_id).where(_l.step_id > walk.at).order_by(_l.step_id).limit(size)).scalars().all()
    )
    if not chunks:
        return False, 0, walk
    steps = conn.execute(
        sa.select(_s.id, _b.started_at, _b.finished_at)
        .join(t.builds, _b.id == _s.build_id)
        .where(_s.id.in_(set(chunks)), which)
        .order_by(_s.id)
    ).all()
    doomed = [step.id for step in steps if step.started_at < cutoff and step.finished_at is not None]
    if walk.settled == walk.at:  # nothing before this batch waits for a later sweep
        waiting = next((step.id for step in steps if step.started_at >= cutoff or step.finished_at is None), None)
        walk = Walk(walk.at, chunks[-1] if waiting is None else waiting - 1)
    removed = 0
    if doomed:
        log_search.forget(conn, _l.step_id.in_(doomed))
        removed = conn.execute(sa.delete(t.log_chunks).where(_l.step_id.in_(doomed))).rowcount
    return len(chunks) == size, removed, Walk(chunks[-1], walk.settled)


def _purge_artifacts(
    conn: sa.Connection, size: int, walk: Walk, *, which: sa.ColumnElement[bool], cutoff: float, root: Path | None
) -> tuple[bool, int, Walk]:
    """Delete the next ``size`` artifacts of finished builds that started before ``cutoff``, and their files."""
    rows = conn.execute(
        sa.select(_a.id, _a.path, _a.mtime_ns)
        .join(t.builds, _b.id == _a.build_id)
        .where(which, _b.started_at < cutoff, _b.finished_at.is_not(None))
        .order_by(_a.id)
        .limit(size)
    ).all()
    if not rows:
        return False, 0, walk
    doomed = [row.id for row in rows]
    conn.execute(sa.delete(t.artifacts).where(_a.id.in_(doomed)))
    if root is not None:
        named = {row.path for row in rows}
        shared = set(conn.execute(sa.select(_a.path).where(_a.path.in_(named))).scalars())
        for row in rows:
            if row.path not in shared:
                _remove(root, row.path, row.mtime_ns)
    return len(rows) == size, len(rows), walk


def _remove(root: Path, path: str, mtime_ns: int) -> None:
    """Remove the artifact ``path`` under ``root`` if it is still the file stored, then the directories
    it leaves empty; never through a symbolic link, never outside ``root``."""
    target = root.joinpath(*path.split("/"))
    if os.path.commonpath([root, target]) != str(root) or target == root:
        return
    try:
        found = os.stat(target, follow_symlinks=False)
        inside = os.path.commonpath([os.path.realpath(target.parent), root]) == str(root)
        if found.st_mtime_ns == mtime_ns and inside:
            target.unlink()
    except OSError as exc:
        log.warning("janitor: could not remove the artifact %s: %s", target, exc.strerror)
        return
    parent = target.parent
    with contextlib.suppress(OSError):  # not empty: another file is there
        while parent != root and os.path.commonpath([root, parent]) == str(root):
            parent.rmdir()
            parent = parent.parent


def _builders(conn: sa.Connection) -> list[str]:
    """The builders that have requests, in order: one step down the ``(builder, complete_at)`` index each."""
    names: list[str] = []
    first = sa.select(sa.func.min(_r.builder))
    while (name := conn.execute(first.where(_r.builder > names[-1]) if names else first).scalar()) is not None:
        names.append(name)
    return names


def _purge_requests(
    conn: sa.Connection, size: int, walk: Walk, *, builder: str, cutoff: float
) -> tuple[bool, int, Walk]:
    """Delete ``builder``'s next ``size`` requests completed before ``cutoff``, with their builds, emptied
    buildsets, and the pull requests no buildset is left of."""
    rows = conn.execute(
        sa.select(_r.id, _r.buildset_id)
        .where(_r.builder == builder, _r.complete_at < cutoff)
        .order_by(_r.complete_at)
        .limit(size)
    ).all()
    if not rows:
        return False, 0, walk
    ids = [row.id for row in rows]
    builds = sa.select(_s.id).join(t.builds, _b.id == _s.build_id).where(_b.request_id.in_(ids))
    log_search.forget(conn, _l.step_id.in_(builds))  # their logs go with them
    removed = conn.execute(sa.delete(t.buildrequests).where(_r.id.in_(ids))).rowcount
    emptied = sa.and_(
        t.buildsets.c.id.in_({row.buildset_id for row in rows}),
        ~sa.exists().where(_r.buildset_id == t.buildsets.c.id),
    )
    pull_requests = set(conn.execute(sa.select(t.buildsets.c.pull_request_id).where(emptied)).scalars()) - {None}
    conn.execute(sa.delete(t.buildsets).where(emptied))
    if pull_requests:
        built = sa.exists().where(t.buildsets.c.pull_request_id == t.pull_requests.c.id)
        conn.execute(sa.delete(t.pull_requests).where(t.pull_requests.c.id.in_(pull_requests), ~built))
    return len(rows) == size, removed, walk
