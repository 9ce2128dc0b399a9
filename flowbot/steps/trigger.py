"""``Trigger``: start builds on Triggerable schedulers, optionally waiting for their results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fields import FLAG, PROPERTIES, TEXT, checked, list_of, refuse
from ..results import Result, worst
from .base import BuildContext, Step


class Trigger(Step):
    """Start a buildset on each of ``schedulers`` (``Triggerable`` ones) with this build's sources.

    Args:
        schedulers: names of Triggerable schedulers.
        wait_for_finish: wait for the triggered builds; the step takes the worst of their results.
        set_properties: properties to give the triggered builds (renderables allowed).
        copy_properties: names of this build's properties to pass on.
        update_sourcestamp: give them the revision this build checked out (its ``got_revision``),
            as Buildbot does, so a build forced without a revision and its triggered builds build
            the same commit; False gives them this build's request as it was (the branch's head
            when it named no revision).
    """

    default_name = "trigger"

    @checked(
        schedulers=list_of(TEXT, "a list of scheduler names", single=True),
        wait_for_finish=FLAG,
        set_properties=PROPERTIES,
        copy_properties=list_of(TEXT, "a list of property names", single=True),
        update_sourcestamp=FLAG,
    )
    def __init__(
        self,
        schedulers: Iterable[str],
        *,
        wait_for_finish: bool = False,
        set_properties: dict[str, Any] | None = None,
        copy_properties: Iterable[str] = (),
        update_sourcestamp: bool = True,
        **flags: Any,
    ):
        super().__init__(**flags)
        self.schedulers = list(schedulers)
        if not self.schedulers:
            raise refuse(self, "schedulers", "needs at least one scheduler")
        self.wait_for_finish = wait_for_finish
        self.set_properties = dict(set_properties or {})
        self.copy_properties = list(copy_properties)
        self.update_sourcestamp = update_sourcestamp

    async def run(self, build: BuildContext) -> Result:
        properties = {
            name: (build.properties[name], "Trigger") for name in self.copy_properties if name in build.properties
        }
        properties.update({name: (value, "Trigger") for name, value in build.render(self.set_properties).items()})
        results = await build.trigger(
            self.schedulers, properties, wait=self.wait_for_finish, update_sourcestamp=self.update_sourcestamp
        )
        if not self.wait_for_finish or not results:
            return Result.SUCCESS
        outcome = worst(*results)
        # A triggered build that was retried or skipped still leaves this step successful.
        return Result.SUCCESS if outcome in (Result.SKIPPED, Result.RETRY) else outcome
