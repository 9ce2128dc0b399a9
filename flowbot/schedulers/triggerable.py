"""Schedulers fed by other builds: ``Trigger`` steps, and builds that succeed upstream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fields import TEXT, checked, list_of
from ..records import BuildsetSpec, SourceStamp
from .base import Scheduler


class Triggerable(Scheduler):
    """Builds only when a ``Trigger`` step names it; the triggering build's sources and chosen
    properties come along."""

    def triggered(
        self, sourcestamps: Iterable[SourceStamp], properties: dict[str, tuple[Any, str]], parent: str
    ) -> BuildsetSpec:
        return self.buildset(sourcestamps, f"triggered by {parent}", properties=properties)


class Dependent(Scheduler):
    """Builds the same sources after a build of ``upstream`` succeeds (SUCCESS or WARNINGS, as
    Buildbot's does).

    Args:
        upstream: the builder (or builders) whose successful builds start this scheduler's.
    """

    @checked(upstream=list_of(TEXT, "a list of builder names", single=True))
    def __init__(self, name: str, builders: Iterable[str], *, upstream: str | Iterable[str], **options: Any):
        super().__init__(name, builders, **options)
        self.upstream = list(upstream)

    def upstream_succeeded(
        self, sourcestamps: Iterable[SourceStamp], properties: dict[str, tuple[Any, str]], build: str
    ) -> BuildsetSpec:
        return self.buildset(sourcestamps, f"{build} succeeded", properties=properties)
