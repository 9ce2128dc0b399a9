"""The master's lock table: who holds which lock, and who waits for it.

A holder takes all its locks at once or none (so two builds never each hold half of what the
other needs); waiters are served in the order they came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from ..locks import LockAccess

Scope = tuple[str, str]


class LockTable:
    """Holders of every lock scope; see :mod:`flowbot.locks` for the kinds and modes.

    Nothing here needs an event loop: a waiter is a function called when its locks are taken for
    it (:meth:`take_or_wait`), which :meth:`acquire` turns into an awaitable and a simulation
    into an event on its own clock.
    """

    def __init__(self) -> None:
        self._holders: dict[Scope, dict[object, str]] = {}
        self._waiters: list[tuple[list[tuple[Scope, str, int]], object, Callable[[], bool]]] = []

    @staticmethod
    def _claims(accesses: Iterable[LockAccess], worker: str) -> list[tuple[Scope, str, int]]:
        """One claim per real lock, the strongest mode winning when a lock is named twice."""
        claims: dict[Scope, tuple[str, int]] = {}
        for access in accesses:
            scope = access.lock.scope(worker)
            mode = access.mode
            if claims.get(scope, ("counting", 0))[0] == "exclusive":
                mode = "exclusive"
            claims[scope] = (mode, access.lock.capacity(worker))
        return [(scope, mode, capacity) for scope, (mode, capacity) in claims.items()]

    def _free(self, claims: list[tuple[Scope, str, int]]) -> bool:
        for scope, mode, capacity in claims:
            holders = self._holders.get(scope, {})
            if mode == "exclusive" and holders:
                return False
            if mode == "counting" and ("exclusive" in holders.values() or len(holders) >= capacity):
                return False
        return True

    def _take(self, claims: list[tuple[Scope, str, int]], owner: object) -> None:
        for scope, mode, _ in claims:
            self._holders.setdefault(scope, {})[owner] = mode

    def free(self, accesses: Iterable[LockAccess], worker: str) -> bool:
        """Whether every lock could be taken now on ``worker`` (for views: takes nothing)."""
        return self._free(self._claims(accesses, worker))

    def try_acquire(self, accesses: Iterable[LockAccess], worker: str, owner: object) -> bool:
        """Take every lock now if all are free (and nobody waits for them); else take none."""
        if not accesses:  # most builders take none: no work on the dispatcher's path
            return True
        claims = self._claims(accesses, worker)
        if not claims:
            return True
        waiting = {scope for waiter_claims, _, _ in self._waiters for scope, _, _ in waiter_claims}
        if any(scope in waiting for scope, _, _ in claims) or not self._free(claims):
            return False
        self._take(claims, owner)
        return True

    def take_or_wait(
        self, accesses: Iterable[LockAccess], worker: str, owner: object, granted: Callable[[], bool]
    ) -> bool:
        """Take every lock now if all are free and nobody waits (True); else wait in line, first come
        first served: once all are free, ``granted()`` is called and they are taken for ``owner``
        if it returns True (False: the waiter gave up meanwhile)."""
        claims = self._claims(accesses, worker)
        if not claims:
            return True
        if not self._waiters and self._free(claims):
            self._take(claims, owner)
            return True
        self._waiters.append((claims, owner, granted))
        return False

    def withdraw(self, owner: object) -> None:
        """Take ``owner`` out of the line of waiters."""
        self._waiters = [waiter for waiter in self._waiters if waiter[1] is not owner]

    async def acquire(self, accesses: Iterable[LockAccess], worker: str, owner: object) -> float:
        """Wait until every lock can be taken, take them; returns the seconds spent waiting."""
        future = asyncio.get_running_loop().create_future()

        def granted() -> bool:
            if future.done():  # cancelled meanwhile
                return False
            future.set_result(None)
            return True

        if self.take_or_wait(accesses, worker, owner, granted):
            return 0.0
        started = time.monotonic()
        try:
            await future
        except asyncio.CancelledError:
            self.withdraw(owner)
            if future.done() and not future.cancelled():
                self.release(owner)  # granted just as it was cancelled
            raise
        return time.monotonic() - started

    def release(self, owner: object) -> None:
        """Give back every lock ``owner`` holds, and let waiters in."""
        for scope in [s for s, holders in self._holders.items() if owner in holders]:
            del self._holders[scope][owner]
            if not self._holders[scope]:
                del self._holders[scope]
        still_waiting = []
        for claims, waiter, granted in self._waiters:
            if self._free(claims):
                if granted():
                    self._take(claims, waiter)
            else:
                still_waiting.append((claims, waiter, granted))
        self._waiters = still_waiting

    def holders(self, name: str) -> dict[str, list[str]]:
        """For views: the holders' descriptions of each scope of lock ``name``."""
        return {
            scope[1] or "master": [f"{owner}:{mode}" for owner, mode in holders.items()]
            for scope, holders in self._holders.items()
            if scope[0] == name
        }
