"""The master's side of schedulers: held changes, tree-stable timers and timed runs.

Schedulers decide (see :mod:`flowbot.schedulers.base`); this module acts on their decisions and
keeps what must survive a restart in the store: changes held for a timer (written in the same
transaction as the change itself) and when a timed scheduler last ran, or was first armed. A master that starts
again re-arms every timer from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..records import Change
from ..schedulers.base import Scheduler, classifications
from ..store import Hold, Release

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)


def state_owner(scheduler: str) -> str:
    """The key a scheduler's remembered values are stored under."""
    return f"scheduler:{scheduler}"


class Scheduling:
    """Timers and held changes of the pipeline's schedulers."""

    def __init__(self, master: Master):
        self.master = master
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        #: (scheduler, key) pairs the store holds changes for: the others need no look at the
        #: store when a change is built at once (this master is the only one writing them).
        self._holding: set[tuple[str, str]] = set()

    def _schedulers(self) -> list[Scheduler]:
        return self.master.pipeline.schedulers

    # -- changes ------------------------------------------------------------------------------

    def decisions(self, change: Change) -> list[Hold | Release]:
        """What each scheduler does with ``change``: build it now, or hold it for later."""
        decisions: list[Hold | Release] = []
        for scheduler, classification in classifications(self._schedulers(), change):
            key = (scheduler.name, classification.key)
            if scheduler.holds(classification):
                decisions.append(Hold(*key, classification.important))
            else:
                decisions.append(Release(*key, scheduler.changes_buildset, held=key in self._holding))
        return decisions

    def held(self, decisions: list[Hold | Release], at: float) -> None:
        """The change and decisions are stored: track what is held, and (re)start the tree-stable
        timer of a scheduler that holds an important change."""
        for decision in decisions:
            if isinstance(decision, Release):
                self._holding.discard((decision.scheduler, decision.key))
                continue
            self._holding.add((decision.scheduler, decision.key))
            scheduler = self.master.pipeline.scheduler(decision.scheduler)
            if scheduler is not None and scheduler.restarts_timer(decision.important):
                self._arm(scheduler, decision.key, at + scheduler.tree_stable_timer)

    # -- timers -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Arm every timer from what the store holds."""
        stable: dict[tuple[str, str], float] = {}
        for name, key, important, received in await self.master.store.changes.held():
            self._holding.add((name, key))
            if important:
                stable[(name, key)] = max(stable.get((name, key), 0.0), received)
        for (name, key), last in stable.items():
            scheduler = self.master.pipeline.scheduler(name)
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
        state = await self.master.store.state.get(owner)
        since = state.get("last_run") or state.get("armed_at")
        if since is None:
            since = time.time()
            await self.master.store.state.set(owner, {"armed_at": since})
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
        self.master.spawn(self._release(scheduler, key), f"scheduler {scheduler.name}")

    async def _release(self, scheduler: Scheduler, key: str) -> None:
        now = time.time()
        make = scheduler.timed_buildset if scheduler.timed else scheduler.changes_buildset
        state = {"last_run": now} if scheduler.timed else {}
        try:
            requests = await self.master.store.changes.release(
                Release(scheduler.name, key, make), now, state_owner(scheduler.name), state
            )
            self._holding.discard((scheduler.name, key))
        except StoreError as exc:
            log.error("scheduler %s could not start its builds: %s", scheduler.name, exc)
            requests = []
        if requests:
            log.info("scheduler %s started %d build request(s)", scheduler.name, len(requests))
        self.master.enqueue(requests)
        if scheduler.timed and self.master.pipeline.scheduler(scheduler.name) is scheduler:
            self._arm_run(scheduler, now)
