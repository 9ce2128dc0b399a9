"""The base class of schedulers: they turn changes and events into buildsets.

Schedulers are pure: they decide, the master acts. A scheduler says whether a change interests
it (:meth:`Scheduler.classify`), what buildset a group of changes makes
(:meth:`Scheduler.changes_buildset`), and, for timed schedulers, when it runs next
(:meth:`Scheduler.next_run`). The master keeps held changes and timers in the store, so a
restarted master picks them up where they were.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..fields import NAME, PROPERTIES, TEXT, checked, list_of, whole
from ..records import BuildsetSpec, Change, SourceStamp

log = logging.getLogger(__name__)


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
        codebases: the codebases its builds check out, when a pipeline builds several repositories
            together: their names, or ``{name: {"repository": ..., "branch": ..., "revision":
            ..., "project": ...}}`` with what a build uses of a codebase no change of it names (by
            default: the head of the branch its ``Git(codebase=...)`` step says). Changes of other
            codebases are left alone. None (the default): every change, whatever its codebase.
    """

    #: Seconds to wait after the last important change before building (None: build at once).
    tree_stable_timer: float | None = None
    #: Timed schedulers hold the changes they classify until their next run.
    timed = False
    #: Which changes it considers (all when None): a ChangeFilter or ``fn(change) -> bool``.
    change_filter: Any = None
    #: ``fn(change) -> bool``: changes it calls unimportant start no build (all are important when None).
    file_is_important: Any = None

    @checked(
        name=NAME,
        builders=list_of(TEXT, "a list of builder names", single=True),
        properties=PROPERTIES,
        priority=whole(),
    )
    def __init__(
        self,
        name: str,
        builders: Iterable[str],
        *,
        properties: dict[str, Any] | None = None,
        priority: int = 0,
        codebases: Mapping[str, Mapping[str, str | None]] | Iterable[str] | None = None,
    ):
        self.name = name
        self.builders = list(builders)
        self.properties = dict(properties or {})
        self.priority = priority
        #: What a build uses of each codebase no change names, by codebase (None: no codebases).
        self.codebases = _codebases(name, codebases)

    def takes_codebase(self, change: Change) -> bool:
        """Whether ``change`` is of a codebase this scheduler builds (any, without ``codebases``)."""
        return self.codebases is None or change.codebase in self.codebases

    def classify(self, change: Change) -> Classification | None:
        """Whether ``change`` interests this scheduler, and how; None ignores it."""
        return None

    def filtered(self, change: Change, key: str = "") -> Classification | None:
        """``change`` as the change filters take it, held under ``key``: None if it is of another
        codebase or ``change_filter`` leaves it out, else important as ``file_is_important`` says
        (an unimportant change is held, to ride along with the next build, and starts none).

        The one reading of the filters, for branch and timed schedulers alike.
        """
        if not self.takes_codebase(change):
            return None
        if self.change_filter is not None and not self.change_filter(change):
            return None
        return Classification(self.important(change), key)

    def important(self, change: Change) -> bool:
        """Whether ``change`` is important (``file_is_important``; every change, without it)."""
        return self.file_is_important is None or bool(self.file_is_important(change))

    def changes_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        """The buildset for ``changes`` (oldest first), when they are due; None builds nothing."""
        return None

    def holds(self, classification: Classification) -> bool:
        """Whether a change so classified is held (for a timer, or to ride along with the next
        important change) rather than built at once with those held before it."""
        return self.timed or self.tree_stable_timer is not None or not classification.important

    def restarts_timer(self, important: bool) -> bool:
        """Whether a held change, ``important`` or not, (re)starts the tree-stable timer of its key."""
        return important and not self.timed and self.tree_stable_timer is not None

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
        """A buildset for ``builders`` (all of this scheduler's when None), with a source stamp for
        each of its codebases that ``sourcestamps`` leave out.

        ``properties`` are ``{name: (value, source)}``; the scheduler's own come first.
        """
        merged = {name: (value, "Scheduler") for name, value in self.properties.items()}
        merged.update(properties or {})
        merged["scheduler"] = (self.name, "Scheduler")
        stamps = tuple(sourcestamps)
        named = {stamp.codebase for stamp in stamps}
        stamps += tuple(stamp for name, stamp in (self.codebases or {}).items() if name not in named)
        return BuildsetSpec(
            scheduler=self.name,
            builders=tuple(self.builders if builders is None else builders),
            sourcestamps=stamps,
            reason=reason,
            properties=merged,
            priority=self.priority,
            change_ids=tuple(change_ids),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, builders={self.builders!r})"


def classifications(schedulers: Iterable[Scheduler], change: Change) -> Iterator[tuple[Scheduler, Classification]]:
    """Each of ``schedulers`` that takes ``change``, with how; one that fails on it is logged and passed over."""
    for scheduler in schedulers:
        try:
            classification = scheduler.classify(change)
        except Exception:
            log.exception("scheduler %s failed on change %s; it does not take it", scheduler.name, change.revision)
            continue
        if classification is not None:
            yield scheduler, classification


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


_STAMP_FIELDS = ("repository", "branch", "revision", "project")


def _codebases(
    scheduler: str, codebases: Mapping[str, Mapping[str, str | None]] | Iterable[str] | None
) -> dict[str, SourceStamp] | None:
    """A scheduler's ``codebases=`` as the source stamp of each codebase that no change names.

    Raises:
        ValueError: not names, nor names with their defaults.
    """
    if codebases is None:
        return None
    if isinstance(codebases, str) or not isinstance(codebases, (Mapping, Iterable)):
        raise ValueError(f"scheduler {scheduler!r}: codebases must be a list of names or a dict; got {codebases!r}")
    given = codebases if isinstance(codebases, Mapping) else {name: {} for name in codebases}
    stamps = {}
    for name, defaults in given.items():
        if not isinstance(name, str) or not isinstance(defaults, Mapping):
            raise ValueError(f"scheduler {scheduler!r}: codebase {name!r} must be a name with a dict of its defaults")
        unknown = set(defaults) - set(_STAMP_FIELDS)
        if unknown:
            raise ValueError(
                f"scheduler {scheduler!r}: codebase {name!r} has unknown field(s) {sorted(unknown)}; "
                f"it takes {', '.join(_STAMP_FIELDS)}"
            )
        values = {key: value for key, value in defaults.items() if value is not None}
        if not all(isinstance(value, str) for value in values.values()):
            raise ValueError(f"scheduler {scheduler!r}: codebase {name!r}'s fields must be strings")
        stamps[name] = SourceStamp(codebase=name, **values)
    return stamps
