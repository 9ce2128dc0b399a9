"""The force scheduler: builds that people ask for by hand (CLI, API, web page, notebook)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fields import checked, instance, list_of
from ..records import BuildsetSpec, SourceStamp
from .base import Scheduler
from .parameters import Parameter, form_values, unique_names

#: Where force-form values come from, as build properties.
FORCE_SOURCE = "Force Build Form"


class ForceScheduler(Scheduler):
    """Lets people force builds of its builders, with a reason, a branch, a revision and typed
    ``params`` (see :mod:`flowbot.schedulers.parameters`) that become build properties."""

    @checked(
        params=list_of(instance(Parameter, "a parameter (StringParameter, IntParameter...)"), "a list of parameters")
    )
    def __init__(self, name: str, builders: Iterable[str], *, params: Iterable[Parameter] = (), **options: Any):
        super().__init__(name, builders, **options)
        self.params = list(params)
        unique_names(self, "params", self.params)

    def describe_params(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.params]

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

        ``properties`` are the values of the scheduler's parameters, checked and converted.

        Raises:
            ValueError: a builder this scheduler does not list, or a parameter that is unknown,
                missing or of the wrong type.
        """
        chosen = tuple(self.builders if builders is None else builders)
        if not chosen:
            raise ValueError("a forced build needs at least one builder")
        strangers = [b for b in chosen if b not in self.builders]
        if strangers:
            raise ValueError(f"force scheduler {self.name!r} does not list builder(s) {strangers}")
        values = form_values(self.params, properties, FORCE_SOURCE)
        if owner:
            values["owner"] = (owner, FORCE_SOURCE)
        values["reason"] = (reason or "forced", FORCE_SOURCE)
        stamp = SourceStamp(repository=repository, branch=branch, revision=revision, project=project)
        text = reason or "forced"
        if owner:
            text = f"{text} (forced by {owner})"
        return self.buildset([stamp], text, builders=chosen, properties=values)
