"""Locks: limits on how many builds or steps may use something at once.

``MasterLock("deploy", max_count=1)`` is one lock for the whole master; ``WorkerLock("disk",
max_count=2)`` is one lock per worker (``max_count_for_worker`` sets it per worker name). A builder
or a step takes locks through ``lock.access("counting")`` (shared, up to ``max_count`` holders) or
``lock.access("exclusive")`` (alone). Time spent waiting for locks is recorded with the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from .location import caller

MODES = ("counting", "exclusive")


class Lock:
    """Base of the two kinds of lock."""

    def __init__(self, name: str, max_count: int = 1):
        if not isinstance(max_count, int) or max_count < 1:
            raise ValueError(f"lock {name!r}: max_count must be a whole number above 0, not {max_count!r}")
        self.name = name
        self.max_count = max_count
        self.defined_at = caller()

    def access(self, mode: str = "counting") -> LockAccess:
        if mode not in MODES:
            raise ValueError(f"lock {self.name!r}: access mode must be one of {MODES}, not {mode!r}")
        return LockAccess(self, mode)

    def capacity(self, worker: str) -> int:
        return self.max_count

    def scope(self, worker: str) -> tuple[str, str]:
        """Which real lock a holder on ``worker`` uses: one per master, or one per worker."""
        return (self.name, "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, max_count={self.max_count})"


class MasterLock(Lock):
    """One lock for the whole master."""


class WorkerLock(Lock):
    """One lock per worker; ``max_count_for_worker`` gives some workers another count."""

    def __init__(self, name: str, max_count: int = 1, *, max_count_for_worker: dict[str, int] | None = None):
        super().__init__(name, max_count)
        self.max_count_for_worker = dict(max_count_for_worker or {})

    def capacity(self, worker: str) -> int:
        return self.max_count_for_worker.get(worker, self.max_count)

    def scope(self, worker: str) -> tuple[str, str]:
        return (self.name, worker)


@dataclass(frozen=True, slots=True)
class LockAccess:
    """A lock with the way it is taken."""

    lock: Lock
    mode: str

    def __repr__(self) -> str:
        return f"{self.lock.name}:{self.mode}"
