"""The base class of schedulers: they turn changes and events into buildsets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..location import caller
from ..records import BuildsetSpec, Change, SourceStamp


class Scheduler:
    """Base class for schedulers; every hook is a no-op, subclasses override what they need.

    Args:
        name: unique among the pipeline's schedulers.
        builders: names of the builders it requests builds from.
        properties: properties of every build it requests.
        priority: requests with a higher priority start first.
    """

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

    def on_change(self, change: Change) -> BuildsetSpec | None:
        """A change arrived; return the buildset it should start, or None to ignore it."""
        return None

    def buildset(
        self,
        sourcestamps: Iterable[SourceStamp],
        reason: str,
        *,
        builders: Iterable[str] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> BuildsetSpec:
        """A buildset for ``builders`` (all of this scheduler's when None)."""
        return BuildsetSpec(
            scheduler=self.name,
            builders=tuple(self.builders if builders is None else builders),
            sourcestamps=tuple(sourcestamps),
            reason=reason,
            properties={**self.properties, **(properties or {}), "scheduler": self.name},
            priority=self.priority,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, builders={self.builders!r})"
