"""Locks: limits on how many builds or steps may use something at once.

``MasterLock("deploy", max_count=1)`` is one lock for the whole master; ``WorkerLock("disk",
max_count=2)`` is one lock per worker (``max_count_for_worker`` sets it per worker name). A builder
or a step takes locks through ``lock.access("counting")`` (shared, up to ``max_count`` holders) or
``lock.access("exclusive")`` (alone). Time spent waiting for locks is recorded with the build.

Locks are one by name: two locks of the same name must be the same kind with the same counts, and
a builder's step may not take a lock its builder holds (it would wait for its own build for ever);
:func:`problems` finds both, which the pipeline reports as configuration errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .fields import NAME, TEXT, checked, instance, list_of, mapping, optional, whole

MODES = ("counting", "exclusive")

#: How many may hold a lock at once.
_COUNT = whole(minimum=1)


class Lock:
    """Base of the two kinds of lock."""

    @checked(name=NAME, max_count=_COUNT)
    def __init__(self, name: str, max_count: int = 1):
        self.name = name
        self.max_count = max_count

    def access(self, mode: str = "counting") -> LockAccess:
        if mode not in MODES:
            raise ValueError(f"lock {self.name!r}: access mode must be one of {MODES}, not {mode!r}")
        return LockAccess(self, mode)

    def capacity(self, worker: str) -> int:
        return self.max_count

    def scope(self, worker: str) -> tuple[str, str]:
        """Which real lock a holder on ``worker`` uses: one per master, or one per worker."""
        return (self.name, "")

    def settings(self) -> tuple[Any, ...]:
        """What two locks of the same name must share to be one lock."""
        return (type(self), self.max_count)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, max_count={self.max_count})"


class MasterLock(Lock):
    """One lock for the whole master."""


class WorkerLock(Lock):
    """One lock per worker; ``max_count_for_worker`` gives some workers another count."""

    @checked(
        max_count_for_worker=optional(mapping(TEXT, _COUNT, "a dict of worker names to whole numbers of at least 1"))
    )
    def __init__(self, name: str, max_count: int = 1, *, max_count_for_worker: dict[str, int] | None = None):
        super().__init__(name, max_count)
        self.max_count_for_worker = dict(max_count_for_worker or {})

    def capacity(self, worker: str) -> int:
        return self.max_count_for_worker.get(worker, self.max_count)

    def scope(self, worker: str) -> tuple[str, str]:
        return (self.name, worker)

    def settings(self) -> tuple[Any, ...]:
        return (*super().settings(), sorted(self.max_count_for_worker.items()))

    def __repr__(self) -> str:
        counts = f", max_count_for_worker={self.max_count_for_worker}" if self.max_count_for_worker else ""
        return f"WorkerLock({self.name!r}, max_count={self.max_count}{counts})"


@dataclass(frozen=True, slots=True)
class LockAccess:
    """A lock with the way it is taken."""

    lock: Lock
    mode: str

    def __repr__(self) -> str:
        return f"{self.lock.name}:{self.mode}"


#: The ``locks`` of a builder or a step.
ACCESSES = list_of(instance(LockAccess, "a lock access such as lock.access('exclusive')"), "a list of lock accesses")


def problems(builders: Iterable[Any]) -> list[tuple[str, Any]]:
    """How ``builders`` misuse locks, each problem with the object to blame (for its location).

    A lock named like an earlier, different lock would silently share its holders; a step taking
    a lock that its builder holds for the whole build may wait for its own build for ever.
    """
    found: list[tuple[str, Any]] = []
    used: dict[int, Lock] = {}  # every lock object, in the order of first use
    for builder in builders:
        held = _accesses(builder)
        used.update((id(access.lock), access.lock) for access in held)
        for step in getattr(builder, "steps", ()):
            for access in _accesses(step):
                used.setdefault(id(access.lock), access.lock)
                if access.lock.name in {a.lock.name for a in held}:
                    text = (
                        f"builder {builder.name!r} holds lock {access.lock.name!r} for the whole build and its step "
                        f"{step.name!r} takes it again, so the step may wait for its own build for ever; take the "
                        "lock on the builder or on its steps, not both"
                    )
                    found.append((text, step))
    named: dict[str, Lock] = {}
    for lock in used.values():
        first = named.setdefault(lock.name, lock)
        if first.settings() != lock.settings():
            where = f" (at {first.defined_at})" if first.defined_at else ""
            text = f"{lock!r} has the name of {first!r}{where}, and locks of the same name are one; give it its own"
            found.append((text, lock))
    return found


def _accesses(owner: Any) -> list[LockAccess]:
    return [access for access in getattr(owner, "locks", ()) if isinstance(access, LockAccess)]
