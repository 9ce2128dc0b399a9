"""The master's side of schedulers: held changes, tree-stable timers and timed runs.

Schedulers decide (see :mod:`flowbot.schedulers.base`), before anything is written, on the
changes they hold (:mod:`flowbot.schedulers.held`); this module acts on their decisions and keeps
what must survive a restart in the store: changes held for a timer (written in the same
transaction as the change itself) and when a timed scheduler last ran, or was first armed. A
master that starts again takes up what is held and re-arms every timer from the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..records import Change, Hold, Release
from ..schedulers.base import Scheduler
from ..schedulers.held import HeldChanges
from ..superseding import Superseding

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..records import BuildRequest
    from ..store import Store
    from .tasks import Spawn

log = logging.getLogger(__name__)


def state_owner(scheduler: str) -> str:
    """The key a scheduler's remembered values are stored under."""
    return f"scheduler:{scheduler}"


class Scheduling:
    """Timers and held changes of the pipeline's schedulers.

    Args:
        pipeline: the pipeline running now (its schedulers and builders).
        store: the store (once open), where held changes and timed runs are kept.
        spawn: runs a timer's release as a task the master owns.
        enqueue: queues the requests a release stored.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        store: Callable[[], Store],
        spawn: Spawn,
        enqueue: Callable[[list[BuildRequest]], None],
    ):
        self._pipeline = pipeline
        self._store = store
        self._spawn = spawn
        self._enqueue = enqueue
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        #: What the store holds (this master is the only one writing it), for decisions made before the write.
        self._held = HeldChanges()

    def _schedulers(self) -> list[Scheduler]:
        return self._pipeline().schedulers

    def superseding(self) -> Superseding:
        """Which requests the new ones of the pipeline's builders supersede."""
        return Superseding(self._pipeline().builders)

    # -- changes ------------------------------------------------------------------------------

    def decisions(self, change: Change) -> list[Hold | Release]:
        """What each scheduler does with ``change`` (not stored yet): build it now, with what it
        held under the same key, or hold it for later. :meth:`stored` or :meth:`not_stored` follows."""
        decisions = self._held.decide(self._schedulers(), change)
        return [d if isinstance(d, Hold) else self._with_cells(d) for d in decisions]

    def _with_cells(self, release: Release) -> Release:
        """``release`` with its buildset given the cells of its builders that have a matrix."""
        if release.buildset is None:
            return release
        return dataclasses.replace(release, buildset=self._pipeline().with_cells(release.buildset))

    def stored(self, decisions: list[Hold | Release], change: Change, at: float) -> None:
        """The change (with its id) and decisions are stored: hold it where they say, and
        (re)start the tree-stable timer of a scheduler that holds an important change."""
        self._held.stored(decisions, change)
        for decision in decisions:
            if isinstance(decision, Release):
                continue
            scheduler = self._pipeline().scheduler(decision.scheduler)
            if scheduler is not None and scheduler.restarts_timer(decision.important):
                self._arm(scheduler, decision.key, at + scheduler.tree_stable_timer)

    def not_stored(self, decisions: list[Hold | Release]) -> None:
        """The change could not be stored: what the decisions let go of is held again."""
        self._held.not_stored(decisions)

    # -- timers -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take up what the store holds and arm every timer from it."""
        held = await self._store().changes.held()
        self._held.load(held)
        stable: dict[tuple[str, str], float] = {}
        for each in held:
            key = (each.scheduler, each.key)
            if each.important:
                stable[key] = max(stable.get(key, 0.0), each.received_at)
        for (name, key), last in stable.items():
            scheduler = self._pipeline().scheduler(name)
            if scheduler is not None and scheduler.restarts_timer(True):
                self._arm(scheduler, key, last + scheduler.tree_stable_timer)
        for scheduler in self._schedulers():
            if scheduler.timed:
                self._arm_run(scheduler, await self._counting_from(scheduler))

    async def _counting_from(self, scheduler: Scheduler) -> float:
        """When a timed scheduler's wait began: its last run, or else when it was first armed. Both
        are kept, so neither a restart nor a reconfigure starts a period over (a master restarted
        more often than a Periodic's period would otherwise never run it)."""
        owner = state_owner(scheduler.name)
        state = await self._store().state.get(owner)
        since = state.get("last_run") or state.get("armed_at")
        if since is None:
            since = time.time()
            await self._store().state.set(owner, {"armed_at": since})
        return since

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self, scheduler: Scheduler, key: str, when: float) -> None:
        previous = self._timers.pop((scheduler.name, key), None)
        if previous is not None:
            previous.cancel()
        delay = max(when - time.time(), 0.0)
        self._timers[(scheduler.name, key)] = asyncio.get_running_loop().call_later(delay, self._fire, scheduler, key)

    def _arm_run(self, scheduler: Scheduler, last_run: float) -> None:
        when = scheduler.next_run(last_run)
        if when is not None:
            self._arm(scheduler, "", when)

    def _fire(self, scheduler: Scheduler, key: str) -> None:
        self._timers.pop((scheduler.name, key), None)
        self._spawn(self._release(scheduler, key), f"scheduler {scheduler.name}")

    async def _release(self, scheduler: Scheduler, key: str) -> None:
        now = time.time()
        make = scheduler.timed_buildset if scheduler.timed else scheduler.changes_buildset
        state = {"last_run": now} if scheduler.timed else {}
        release = self._with_cells(self._held.release(scheduler, key, make))
        try:
            requests = await self._store().changes.release(
                release, now, state_owner(scheduler.name), state, self.superseding()
            )
        except StoreError as exc:
            self._held.not_stored([release])
            log.error("scheduler %s could not start its builds: %s", scheduler.name, exc)
            requests = []
        if requests:
            log.info("scheduler %s started %d build request(s)", scheduler.name, len(requests))
        self._enqueue(requests)
        if scheduler.timed and self._pipeline().scheduler(scheduler.name) is scheduler:
            self._arm_run(scheduler, now)
