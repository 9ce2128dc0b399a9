"""Dispatch policy: which waiting requests collapse, which request runs next, and on which worker.

These are the decisions of the master's dispatcher as pure functions over the queue
(:class:`~flowbot.master.queue.BuildQueue`) and the lock table
(:class:`~flowbot.master.locks.LockTable`), with no workers, store or event loop. The dispatcher
runs them on live state; :meth:`History.replay <flowbot.analysis.History.replay>` runs the very
same functions on a simulated clock, so a what-if answer follows the rules the master follows.
This module, the queue and the lock table import nothing of the master's machinery.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence

from ..builder import Builder, same_source
from ..records import BuildRequest
from .locks import LockTable
from .queue import BuildQueue
from .rerun import wanted_worker

log = logging.getLogger(__name__)


def collapsed(builder: Builder | None, new: BuildRequest, queue: BuildQueue) -> list[BuildRequest]:
    """The waiting requests that ``new`` collapses by its builder's ``collapse_requests`` rule.

    They end as SKIPPED. A rule function that raises stops the collapsing (it is logged): what it
    matched before stays collapsed, nothing after is.
    """
    rule = builder.collapse_requests if builder is not None else False
    if not rule:
        return []
    # Buildbot's rule compares sources, so only requests with the same ones are candidates.
    matches, candidates = (same_source, queue.same_source(new)) if rule is True else (rule, queue.pending(new.builder))
    found = []
    for old in candidates:
        if old.cell != new.cell:
            continue  # a matrix's cells are builds of their own, whatever the rule
        try:
            collapse = matches(new, old)
        except Exception:
            log.exception("collapse_requests of builder %s failed; not collapsing", new.builder)
            break
        if collapse:
            found.append(old)
    return found


def assignment_pass(
    queue: BuildQueue,
    start_one: Callable[[str], bool],
    builders: Iterable[str] | None = None,
    full: Callable[[], bool] | None = None,
) -> None:
    """Offer builders the chance to start a build, the most urgent first (see :class:`AssignmentPass`);
    the pass ends early once ``full()`` says no build can start anywhere."""
    AssignmentPass(queue, start_one, builders).run(full)


class AssignmentPass:
    """Builders offered the chance to start a build, the most urgent first, in one or more runs.

    Builders go by their first request in line (highest priority, then oldest); one whose
    ``start_one(name)`` starts a build goes back in line by its next request, one that cannot
    start one now cannot later in this pass. ``builders`` limits the pass to those that may have
    become able to start (the others' answer would not have changed).
    """

    def __init__(
        self, queue: BuildQueue, start_one: Callable[[str], bool], builders: Iterable[str] | None = None
    ) -> None:
        self._queue = queue
        self._start_one = start_one
        self._waiting = queue.heads(builders)
        heapq.heapify(self._waiting)

    def run(self, stop: Callable[[], bool] | None = None) -> bool:
        """Offer builders until none is left, or until ``stop()`` says so after an offer.

        Returns:
            Whether builders are left to offer (a later run goes on where this one stopped).
        """
        waiting, queue = self._waiting, self._queue
        while waiting:
            _, name = heapq.heappop(waiting)
            if self._start_one(name) and (place := queue.head(name)) is not None:
                heapq.heappush(waiting, (place, name))
            if waiting and stop is not None and stop():
                return True
        return False


def takes_build(builder: str, max_builds: int | None, running: Sequence[str]) -> bool:
    """Whether a worker running builds of the builders ``running`` takes one of ``builder``: one
    build per builder per worker, and at most ``max_builds`` in all."""
    return builder not in running and (max_builds is None or len(running) < max_builds)


def pick(
    builder: Builder,
    free: Sequence[str],
    queue: BuildQueue,
    locks: LockTable,
    load: Callable[[str], int],
    fits: Callable[[BuildRequest, str], bool] | None = None,
) -> tuple[BuildRequest, str] | None:
    """The request ``builder`` runs next and the worker it runs on, its locks taken; None when none can start.

    Args:
        free: the workers that take a build of ``builder`` now (see :func:`takes_build`).
        load: how many builds a worker runs; the least busy is tried first unless the builder's
            ``next_worker`` chooses.
        fits: whether a worker may run a matrix cell's request (see :func:`flowbot.matrix.fits`);
            a cell no free worker fits lets the next cell in line go first.
    """
    return pick_in_order(builder, sorted(free, key=load), queue, locks, fits)


def pick_in_order(
    builder: Builder,
    by_load: Iterable[str],
    queue: BuildQueue,
    locks: LockTable,
    fits: Callable[[BuildRequest, str], bool] | None = None,
) -> tuple[BuildRequest, str] | None:
    """:func:`pick`, given the free workers least busy first: an iterator of them is consumed no
    further than the first worker whose locks are free, unless ``next_worker`` needs them all."""
    workers = iter(by_load)
    first = next(workers, None)
    if first is None:
        return None
    request = queue.first(builder.name)
    if request is None:
        return None
    if builder.next_build is not None:
        request = choose(builder, queue.pending(builder.name))
    ordered = itertools.chain((first,), workers)
    if fits is None or request.cell is None:
        return _place(builder, request, rank(builder, ordered, request), locks)
    free = list(ordered)  # each cell of a matrix takes some workers only: every free one is looked at
    for cell in [request, *(r for r in queue.pending(builder.name) if r is not request)]:
        placed = _place(builder, cell, [w for w in rank(builder, free, cell) if fits(cell, w)], locks)
        if placed is not None:
            return placed
    return None


def _place(
    builder: Builder, request: BuildRequest, workers: Iterable[str], locks: LockTable
) -> tuple[BuildRequest, str] | None:
    for worker in workers:
        if locks.try_acquire(builder.locks, worker, request.id):
            return request, worker
    return None  # busy locks: the request waits, no worker is held


def choose(builder: Builder, pending: list[BuildRequest]) -> BuildRequest:
    """The builder's ``next_build`` choice among ``pending``, else the first in line."""
    try:
        chosen = builder.next_build(builder, pending)
        if chosen in pending:
            return chosen
        log.warning("next_build of %s returned %r, not a pending request", builder.name, chosen)
    except Exception:
        log.exception("next_build of builder %s failed; taking the first in line", builder.name)
    return pending[0]


def rank(builder: Builder, by_load: Iterable[str], request: BuildRequest) -> Iterable[str]:
    """The free workers (least busy first) in the order to try them: the builder's ``next_worker``
    choice, else as they come; only the worker a request names (a rerun's), if it names one."""
    wanted = wanted_worker(request)
    if wanted is not None:
        return (worker for worker in by_load if worker == wanted)
    if builder.next_worker is None:
        return by_load
    by_load = list(by_load)
    try:
        name = builder.next_worker(builder, by_load, request)
    except Exception:
        log.exception("next_worker of builder %s failed; taking the least busy worker", builder.name)
        return by_load
    return [worker for worker in by_load if worker == name]
