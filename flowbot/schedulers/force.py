"""The force scheduler: builds that people ask for by hand (CLI, API, web page, notebook)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..records import BuildsetSpec, SourceStamp
from .base import Scheduler


class ForceScheduler(Scheduler):
    """Lets people force builds of its builders, with a reason, a branch and a revision."""

    def force(
        self,
        builders: Iterable[str] | None = None,
        *,
        reason: str = "",
        branch: str | None = None,
        revision: str | None = None,
        repository: str = "",
        project: str = "",
        owner: str = "",
        properties: dict[str, Any] | None = None,
    ) -> BuildsetSpec:
        """A buildset for ``builders`` (all of this scheduler's when None).

        Raises:
            ValueError: a builder this scheduler does not list.
        """
        chosen = tuple(self.builders if builders is None else builders)
        if not chosen:
            raise ValueError("a forced build needs at least one builder")
        strangers = [b for b in chosen if b not in self.builders]
        if strangers:
            raise ValueError(f"force scheduler {self.name!r} does not list builder(s) {strangers}")
        stamp = SourceStamp(repository=repository, branch=branch, revision=revision, project=project)
        text = reason or "forced"
        if owner:
            text = f"{text} (forced by {owner})"
        return self.buildset([stamp], text, builders=chosen, properties=properties)
