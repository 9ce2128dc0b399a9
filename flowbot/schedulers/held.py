"""The changes schedulers hold, and what they decide about a new one, before anything is written.

A scheduler either holds a change (for its tree-stable timer or its next timed run, or to ride
along with the next important change) or builds it at once with whatever it held under the same
key (see :meth:`~flowbot.schedulers.base.Scheduler.holds`). The master keeps what is held here as
well as in the store (it is the only one writing it), so a scheduler's own code
(``changes_buildset``, ``timed_buildset``) runs here, on the event loop, before the write: never
inside a database transaction, nor again when a failed batch of writes is retried. The store
writes the decisions as they are (:class:`~flowbot.records.Hold`, :class:`~flowbot.records.Release`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..records import BuildsetSpec, Change, HeldChange, Hold, Release
from .base import Scheduler, classifications

#: A scheduler's decision on changes, oldest first (``changes_buildset``, ``timed_buildset``).
MakeBuildset = Callable[[list[Change]], BuildsetSpec | None]


class HeldChanges:
    """The changes each scheduler holds, by key, oldest first, as the store holds them."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], list[Change]] = {}

    def load(self, held: Iterable[HeldChange]) -> None:
        """Take up what the store holds (oldest first), at start."""
        self._held.clear()
        for each in held:
            self._held.setdefault((each.scheduler, each.key), []).append(each.change)

    def decide(self, schedulers: Iterable[Scheduler], change: Change) -> list[Hold | Release]:
        """What each scheduler does with ``change``, not stored yet: hold it, or build it now with
        what it held under the same key (let go of here: :meth:`stored` or :meth:`not_stored` follows)."""
        decisions: list[Hold | Release] = []
        try:
            for scheduler, classification in classifications(schedulers, change):
                if scheduler.holds(classification):
                    decisions.append(Hold(scheduler.name, classification.key, classification.important))
                else:
                    decisions.append(self.release(scheduler, classification.key, scheduler.changes_buildset, change))
        except BaseException:
            self.not_stored(decisions)
            raise
        return decisions

    def release(self, scheduler: Scheduler, key: str, make: MakeBuildset, new: Change | None = None) -> Release:
        """Let go of what ``scheduler`` holds under ``key`` and build it (and ``new``) as ``make``
        says; the changes are back if ``make`` fails or the release is :meth:`not_stored`."""
        taken = self._held.pop((scheduler.name, key), [])
        try:
            buildset = make(taken + ([new] if new is not None else []))
        except BaseException:
            self._put_back(scheduler.name, key, taken)
            raise
        if buildset is None and scheduler.timed:
            # A timed run that builds nothing (only unimportant changes came) lets go of none of them:
            # they ride along with the next run that builds, as Buildbot's onlyIfChanged keeps them.
            self._put_back(scheduler.name, key, taken)
            taken = []
        return Release(scheduler.name, key, tuple(taken), buildset)

    def stored(self, decisions: Iterable[Hold | Release], change: Change) -> None:
        """``change`` (with its id) and the decisions about it are stored: hold it where they say."""
        for decision in decisions:
            if isinstance(decision, Hold):
                self._held.setdefault((decision.scheduler, decision.key), []).append(change)

    def not_stored(self, decisions: Iterable[Hold | Release]) -> None:
        """The decisions could not be stored: what their releases let go of is held again."""
        for decision in decisions:
            if isinstance(decision, Release):
                self._put_back(decision.scheduler, decision.key, list(decision.changes))

    def _put_back(self, scheduler: str, key: str, changes: list[Change]) -> None:
        if changes:
            self._held[(scheduler, key)] = changes + self._held.get((scheduler, key), [])
