"""The master's lock table: who holds which lock, and who waits for it.

A holder takes all its locks at once or none (so two builds never each hold half of what the
other needs); waiters are served in the order they came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from ..locks import LockAccess

Scope = tuple[str, str]


class LockTable:
    """Holders of every lock scope; see :mod:`flowbot.locks` for the kinds and modes."""

    def __init__(self) -> None:
        self._holders: dict[Scope, dict[object, str]] = {}
        self._waiters: list[tuple[list[tuple[Scope, str, int]], object, asyncio.Future[None]]] = []

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

    def try_acquire(self, accesses: Iterable[LockAccess], worker: str, owner: object) -> bool:
        """Take every lock now if all are free (and nobody waits for them); else take none."""
        claims = self._claims(accesses, worker)
        if not claims:
            return True
        waiting = {scope for waiter_claims, _, _ in self._waiters for scope, _, _ in waiter_claims}
        if any(scope in waiting for scope, _, _ in claims) or not self._free(claims):
            return False
        self._take(claims, owner)
        return True

    async def acquire(self, accesses: Iterable[LockAccess], worker: str, owner: object) -> float:
        """Wait until every lock can be taken, take them; returns the seconds spent waiting."""
        claims = self._claims(accesses, worker)
        if not claims:
            return 0.0
        if not self._waiters and self._free(claims):
            self._take(claims, owner)
            return 0.0
        started = time.monotonic()
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((claims, owner, future))
        try:
            await future
        except asyncio.CancelledError:
            self._waiters = [w for w in self._waiters if w[2] is not future]
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
        for claims, waiter, future in self._waiters:
            if not future.done() and self._free(claims):
                self._take(claims, waiter)
                future.set_result(None)
            elif not future.done():
                still_waiting.append((claims, waiter, future))
        self._waiters = still_waiting

    def holders(self, name: str) -> dict[str, list[str]]:
        """For views: the holders' descriptions of each scope of lock ``name``."""
        return {
            scope[1] or "master": [f"{owner}:{mode}" for owner, mode in holders.items()]
            for scope, holders in self._holders.items()
            if scope[0] == name
        }
