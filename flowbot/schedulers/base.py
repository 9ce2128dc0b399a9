"""The base class of schedulers: they turn changes and events into buildsets.

Schedulers are pure: they decide, the master acts. A scheduler says whether a change interests
it (:meth:`Scheduler.classify`), what buildset a group of changes makes
(:meth:`Scheduler.changes_buildset`), and, for timed schedulers, when it runs next
(:meth:`Scheduler.next_run`). The master keeps held changes and timers in the store, so a
restarted master picks them up where they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..location import caller
from ..records import BuildsetSpec, Change, SourceStamp


@dataclass(frozen=True, slots=True)
class Classification:
    """How a scheduler takes a change."""

    #: Important changes start builds; unimportant ones only ride along with the next one.
    important: bool
    #: Held changes are grouped by this key (the branch, for schedulers with a timer per branch).
    key: str = ""


class Scheduler:
    """Base class for schedulers; every hook is a no-op, subclasses override what they need.

    Args:
        name: unique among the pipeline's schedulers.
        builders: names of the builders it requests builds from.
        properties: properties of every build it requests.
        priority: requests with a higher priority start first.
    """

    #: Seconds to wait after the last important change before building (None: build at once).
    tree_stable_timer: float | None = None
    #: Timed schedulers hold the changes they classify until their next run.
    timed = False

    def __init__(
        self,
        name: str,
        builders: Iterable[str],
        *,
        properties: dict[str, Any] | None = None,
        priority: int = 0,
    ):
        self.name = name
        self.builders = [builders] if isinstance(builders, str) else list(builders)
        self.properties = dict(properties or {})
        self.priority = priority
        self.defined_at = caller()

    def classify(self, change: Change) -> Classification | None:
        """Whether ``change`` interests this scheduler, and how; None ignores it."""
        return None

    def changes_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        """The buildset for ``changes`` (oldest first), when they are due; None builds nothing."""
        return None

    def next_run(self, after: float) -> float | None:
        """When a timed scheduler runs next after ``after`` (epoch seconds); None if never."""
        return None

    def timed_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        """The buildset of a timed run, given the changes held since the last one."""
        return None

    def buildset(
        self,
        sourcestamps: Iterable[SourceStamp],
        reason: str,
        *,
        builders: Iterable[str] | None = None,
        properties: dict[str, tuple[Any, str]] | None = None,
        change_ids: Iterable[int] = (),
    ) -> BuildsetSpec:
        """A buildset for ``builders`` (all of this scheduler's when None).

        ``properties`` are ``{name: (value, source)}``; the scheduler's own come first.
        """
        merged = {name: (value, "Scheduler") for name, value in self.properties.items()}
        merged.update(properties or {})
        merged["scheduler"] = (self.name, "Scheduler")
        return BuildsetSpec(
            scheduler=self.name,
            builders=tuple(self.builders if builders is None else builders),
            sourcestamps=tuple(sourcestamps),
            reason=reason,
            properties=merged,
            priority=self.priority,
            change_ids=tuple(change_ids),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, builders={self.builders!r})"


def changes_sourcestamps(changes: list[Change]) -> list[SourceStamp]:
    """One sourcestamp per codebase, from the newest change of each."""
    newest: dict[str, Change] = {}
    for change in changes:
        newest[change.codebase] = change
    return [change.sourcestamp() for change in newest.values()]


def changes_properties(changes: list[Change]) -> dict[str, tuple[Any, str]]:
    """The changes' properties (newer changes win), marked as coming from a change."""
    merged: dict[str, tuple[Any, str]] = {}
    for change in changes:
        merged.update({name: (value, "Change") for name, value in change.properties.items()})
    return merged
