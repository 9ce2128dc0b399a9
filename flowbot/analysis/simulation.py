"""A master's scheduling and queue run on a simulated clock: changes and requests in, builds out, no workers.

It runs the pipeline model's own decisions, not copies of them: the schedulers classify, hold and
build changes (tree-stable timers and timed runs on the simulated clock), the builder's collapse
rule, ``next_build`` and ``next_worker`` hooks and the queue's priorities are those of
:mod:`flowbot.master.policy` and :class:`~flowbot.master.queue.BuildQueue`, a new head of a pull
request (or branch) supersedes the waiting requests and running builds of older ones as
:mod:`flowbot.superseding` says, and locks are taken in
a :class:`~flowbot.master.locks.LockTable` (a builder's for the whole build, a step's while it
runs, waiting in line as on a master). Only time is simulated: a build takes what a duration model
says (see :mod:`flowbot.analysis.replay`), and every worker is connected, never paused or lost.

Builds that are triggered, and those of ``Dependent`` schedulers, come in as recorded requests;
``Trigger`` steps and build results are not simulated.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from ..builder import Builder
from ..locks import LockAccess
from ..master.locks import LockTable
from ..master.policy import assignment_pass, collapsed, pick, takes_build
from ..master.queue import BuildQueue
from ..matrix import fits
from ..pipeline import Pipeline
from ..records import BuildRequest, BuildsetSpec, Change
from ..schedulers.base import Scheduler, classifications
from ..store.matrices import with_cell
from ..superseding import Superseding

log = logging.getLogger(__name__)


class Durations(Protocol):
    """How long each step of a build of ``request`` takes on ``worker`` (seconds, in the builder's
    step order); ``recorded`` is the recorded request it replays, if it replays one."""

    def __call__(self, builder: Builder, worker: str, request: BuildRequest, recorded: int | None) -> list[float]: ...


class _Build:
    """A simulated build, step by step."""

    __slots__ = ("builder", "index", "locks", "request", "started", "steps", "stopped", "worker")

    def __init__(self, builder: Builder, request: BuildRequest, worker: str, started: float, steps: list[float]):
        self.builder = builder
        self.request = request
        self.worker = worker
        self.started = started
        self.steps = steps
        #: The lock accesses of each step (a build of a builder whose steps take none runs as one step).
        self.locks: list[list[LockAccess]] = [step.locks for step in builder.steps]
        #: The step it is at, and whether a newer request superseded it (it ended then).
        self.index = 0
        self.stopped = False


class Simulation:
    """A pipeline's master on a clock of its own.

    Args:
        pipeline: the candidate pipeline.
        durations: how long a build's steps take on a worker.
        workers: how many of each worker to simulate (instances of the same name, as a launcher
            would start), by name; a worker left out counts once (a worker with a launcher: its
            ``max_instances``). ``durations`` is asked about an instance under its worker's name.

    Raises:
        ValueError: ``workers`` names a worker the pipeline does not declare, or a count below 1.
    """

    def __init__(self, pipeline: Pipeline, durations: Durations, workers: Mapping[str, int] | None = None):
        unknown = set(workers or {}) - {w.name for w in pipeline.workers}
        if unknown:
            raise ValueError(f"workers= names {sorted(unknown)}, which the pipeline does not declare")
        self.pipeline = pipeline
        self.durations = durations
        self.now = 0.0
        self.queue = BuildQueue()
        self.locks = LockTable()
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._ids = itertools.count(1)
        self._builders = {b.name: b for b in pipeline.builders}
        self._superseding = Superseding(pipeline.builders)
        self._building: dict[int, _Build] = {}  # by request id
        self._properties = {w.name: w.properties for w in pipeline.workers}
        #: Each simulated worker: its limit, and the worker it is an instance of.
        self.limits: dict[str, int | None] = {}
        self.base: dict[str, str] = {}
        instances: dict[str, list[str]] = {}
        for spec in pipeline.workers:
            count = (workers or {}).get(spec.name, spec.max_instances if spec.launcher is not None else 1)
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"workers={{{spec.name!r}: {count!r}}}: give a whole number of at least 1")
            if spec.launcher is not None:
                names = [spec.instance_name(n) for n in range(1, count + 1)]
            else:
                names = [spec.name, *(f"{spec.name}#{n}" for n in range(2, count + 1))]
            instances[spec.name] = names
            for name in names:
                self.limits[name], self.base[name] = spec.max_builds, spec.name
        #: The simulated workers each builder may run on, and the builders each worker serves.
        self._workers = {b.name: [n for w in b.workers for n in instances.get(w, ())] for b in pipeline.builders}
        self._serves: dict[str, list[str]] = {name: [] for name in self.limits}
        for builder, names in self._workers.items():
            for name in names:
                self._serves[name].append(builder)
        self._running: dict[str, list[str]] = {name: [] for name in self.limits}
        #: How many builds each worker runs (its load), and the workers below their limit: the
        #: only ones a build can start on (both kept as builds start and end, for speed).
        self._loads = dict.fromkeys(self.limits, 0)
        self._spare = set(self.limits)
        self._locking = [b.name for b in pipeline.builders if b.locks]
        self._held: dict[tuple[str, str], list[Change]] = {}
        self._timers: dict[tuple[str, str], int] = {}
        #: Every simulated request, with the recorded one it stands for (None: made by a scheduler).
        self.requests: list[tuple[BuildRequest, int | None]] = []
        self._recorded: dict[int, int] = {}  # simulated request id -> the recorded request it replays
        #: Simulated request id -> the request it was collapsed into.
        self.collapsed: dict[int, int] = {}
        #: Simulated request id -> the newer request that superseded it (waiting, or its build running).
        self.superseded: dict[int, int] = {}
        #: ``(request, worker, started, finished)`` of each build, as they finish.
        self.builds: list[tuple[BuildRequest, str, float, float]] = []

    # -- the clock ----------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._events, (when, next(self._order), action, args))

    def run(self) -> None:
        """Run every event, in time order, until nothing is left to happen."""
        events = self._events
        while events:
            when, _, action, args = heapq.heappop(events)
            self.now = when
            action(*args)

    # -- what comes in ------------------------------------------------------------------------------

    def changes(self, changes: Iterable[Change], times: Iterable[float]) -> None:
        """Changes received at ``times``, for the pipeline's schedulers."""
        schedulers = self.pipeline.schedulers
        for change, when in zip(changes, times, strict=True):
            self.at(when, self._change, change, schedulers)

    def timed(self, since: float, until: float) -> None:
        """Run the timed schedulers (Periodic, Nightly) from ``since``, until ``until``."""
        for scheduler in self.pipeline.schedulers:
            if scheduler.timed:
                self._arm_run(scheduler, since, until)

    def requests_made(self, requests: Iterable[BuildRequest]) -> None:
        """Recorded requests that no change caused (forced, triggered...), at the time they were submitted."""
        for request in requests:
            self.at(request.submitted_at, self._replayed, request)

    def _change(self, change: Change, schedulers: list[Scheduler]) -> None:
        # As the master's scheduling decides (flowbot.master.scheduling) and the store applies it.
        for scheduler, classification in classifications(schedulers, change):
            key = (scheduler.name, classification.key)
            if scheduler.holds(classification):
                self._held.setdefault(key, []).append(change)
                if scheduler.restarts_timer(classification.important):
                    generation = self._timers[key] = self._timers.get(key, 0) + 1
                    self.at(self.now + scheduler.tree_stable_timer, self._stable, scheduler, key, generation)
            else:
                self._submit(scheduler, scheduler.changes_buildset, [*self._held.pop(key, ()), change])

    def _stable(self, scheduler: Scheduler, key: tuple[str, str], generation: int) -> None:
        if self._timers.get(key) == generation and key in self._held:  # not restarted since
            self._submit(scheduler, scheduler.changes_buildset, self._held.pop(key))

    def _arm_run(self, scheduler: Scheduler, after: float, until: float) -> None:
        when = scheduler.next_run(after)
        if when is not None and when < until:
            self.at(when, self._timed_run, scheduler, until)

    def _timed_run(self, scheduler: Scheduler, until: float) -> None:
        self._submit(scheduler, scheduler.timed_buildset, self._held.pop((scheduler.name, ""), []))
        self._arm_run(scheduler, self.now, until)

    def _submit(self, scheduler: Scheduler, make: Callable[[list[Change]], BuildsetSpec | None], changes: list) -> None:
        try:
            spec = make(changes)
        except Exception:
            log.exception("scheduler %s failed to make a buildset; its changes are left out", scheduler.name)
            return
        spec = self.pipeline.with_cells(spec)
        if spec is None:
            return
        buildset = next(self._ids)
        self._enqueue(
            [
                BuildRequest(
                    next(self._ids),
                    buildset,
                    builder,
                    spec.sourcestamps,
                    reason=spec.reason,
                    properties=with_cell(spec.properties, cell),
                    priority=spec.priority,
                    submitted_at=self.now,
                    from_changes=bool(spec.change_ids),
                    cell=cell,
                )
                for builder in spec.builders
                for cell in spec.cells.get(builder) or (None,)
            ],
            None,
        )

    def _replayed(self, recorded: BuildRequest) -> None:
        self._enqueue([replace(recorded, id=next(self._ids), submitted_at=self.now)], recorded.id)

    def _enqueue(self, requests: list[BuildRequest], recorded: int | None) -> None:
        queue = self.queue
        for request in requests:
            self.requests.append((request, recorded))
            if recorded is not None:
                self._recorded[request.id] = recorded
            self._supersede(request)
            for old in collapsed(self._builders.get(request.builder), request, queue):
                queue.remove(old.id)
                self.collapsed[old.id] = request.id
            queue.add(request)
        self._offer({r.builder for r in requests})

    def _supersede(self, new: BuildRequest) -> None:
        """Withdraw the waiting requests ``new`` supersedes and stop the builds it supersedes."""
        rule = self._superseding
        if rule.reason(new) is None:
            return
        for old in [r for r in self.queue.pending(new.builder) if rule.supersedes(new, r)]:
            self.queue.remove(old.id)
            self.superseded[old.id] = new.id
        for build in [b for b in self._building.values() if rule.supersedes(new, b.request)]:
            self.superseded[build.request.id] = new.id
            owner = (build.request.id, build.index)
            self.locks.withdraw(owner)
            self.locks.release(owner)
            build.stopped = True
            self._finish(build)

    # -- builds -------------------------------------------------------------------------------------

    def _offer(self, builders: Iterable[str]) -> None:
        """An assignment pass over ``builders``, when a build could start at all."""
        if self._spare and self.queue:
            assignment_pass(self.queue, self._start_one, builders, self._full)

    def _fits(self, request: BuildRequest, worker: str) -> bool:
        """Whether simulated ``worker`` takes the matrix cell ``request`` builds, as the master's dispatcher asks."""
        return fits(request.cell or {}, self._properties[self.base[worker]])

    def _full(self) -> bool:
        return not self._spare

    def _start_one(self, name: str) -> bool:
        builder = self._builders.get(name)
        spare = self._spare
        if builder is None or not spare:
            return False
        running, limits = self._running, self.limits
        free = [w for w in self._workers[name] if w in spare and takes_build(name, limits[w], running[w])]
        fits_cell = self._fits if builder.matrix is not None else None
        picked = pick(builder, free, self.queue, self.locks, self._loads.__getitem__, fits_cell)
        if picked is None:
            return False
        request, worker = picked
        self.queue.remove(request.id)
        running[worker].append(name)
        load = self._loads[worker] = self._loads[worker] + 1
        if limits[worker] is not None and load >= limits[worker]:
            spare.discard(worker)
        steps = self.durations(builder, self.base[worker], request, self._recorded.get(request.id))
        build = _Build(builder, request, worker, self.now, steps)
        if not any(build.locks):
            build.steps, build.locks = [sum(steps)], [[]]  # one event for the whole build
        self._building[request.id] = build
        self._step(build, 0)
        return True

    def _step(self, build: _Build, index: int) -> None:
        if index == len(build.steps):
            self._finish(build)
            return
        build.index = index
        accesses = build.locks[index]
        if accesses:
            owner = (build.request.id, index)

            def granted() -> bool:
                if build.stopped:
                    return False
                self.at(self.now + build.steps[index], self._step_done, build, index)
                return True

            if not self.locks.take_or_wait(accesses, build.worker, owner, granted):
                return  # waits in line; granted() runs the step
        self.at(self.now + build.steps[index], self._step_done, build, index)

    def _step_done(self, build: _Build, index: int) -> None:
        if build.stopped:
            return  # it ended when it was superseded
        if build.locks[index]:
            self.locks.release((build.request.id, index))
            self._offer(self._locking)
        self._step(build, index + 1)

    def _finish(self, build: _Build) -> None:
        request, worker = build.request, build.worker
        del self._building[request.id]
        self._running[worker].remove(build.builder.name)
        self._loads[worker] -= 1
        self._spare.add(worker)
        self.locks.release(request.id)
        self.builds.append((request, worker, build.started, self.now))
        self._offer(self._serves[worker] if not build.builder.locks else {*self._serves[worker], *self._locking})
