"""What a reconfigure changes and what it does to the work running and waiting, said before it applies.

A reconfigure never stops a build: running builds finish with the steps they began with, on the
worker they run on. What changes is what happens next, and :func:`preview` says it per builder
and worker from the live state, so a notebook cell run again (or ``dry_run=True``) shows it first.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from html import escape
from typing import TYPE_CHECKING, Protocol

from ..pipeline_diff import Edit, PipelineDiff, diff_table

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..records import BuildRequest


class Running(Protocol):
    """What the preview reads of a running build."""

    builder: str
    number: int
    worker: str


class Outcome(enum.StrEnum):
    """Where a reconfiguration stands."""

    #: Shown, not applied (``dry_run=True``).
    DRY_RUN = "not applied (dry run)"
    #: Being applied.
    APPLYING = "applying"
    #: In force.
    APPLIED = "applied"
    #: It could not be applied; the master goes on with the pipeline before.
    FAILED = "not applied"


@dataclass(frozen=True, slots=True)
class Reconfiguration:
    """What switching to another pipeline changes (:attr:`diff`) and does to the work now
    running and waiting (:attr:`effects`, one sentence each), and whether it is in force."""

    diff: PipelineDiff
    effects: tuple[str, ...]
    outcome: Outcome
    #: Why it could not be applied.
    error: str = ""

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED

    def ended(self, error: BaseException | None) -> Reconfiguration:
        """This reconfiguration, applied, or failed with ``error``."""
        if error is None:
            return replace(self, outcome=Outcome.APPLIED)
        return replace(self, outcome=Outcome.FAILED, error=f"{type(error).__name__}: {error}")

    def _verdict(self) -> str:
        return f"{self.outcome.value}: {self.error}" if self.error else self.outcome.value

    def __str__(self) -> str:
        lines = [f"Reconfiguration, {self._verdict()}", *("  " + line for line in str(self.diff).splitlines())]
        lines += ["What it does to the work:", *(f"  {effect}" for effect in self.effects)] if self.effects else []
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        effects = (
            "".join(f"<li>{escape(effect)}</li>" for effect in self.effects)
            or "<li>nothing running or waiting changes</li>"
        )
        return (
            f"<div class='flowbot-reconfiguration'><p><b>Reconfiguration</b>, {escape(self._verdict())}</p>"
            f"{diff_table(self.diff)}<p>What it does to the work:</p><ul>{effects}</ul></div>"
        )


def preview(
    old: Pipeline,
    new: Pipeline,
    *,
    running: Iterable[Running],
    pending: Iterable[BuildRequest],
    connected: Iterable[str],
    outcome: Outcome,
) -> Reconfiguration:
    """What switching from ``old`` to ``new`` changes, with the builds ``running``, the requests
    ``pending`` and the workers ``connected`` now."""
    changes = old.diff(new)
    builds: dict[str, list[Running]] = defaultdict(list)
    for build in running:
        builds[build.builder].append(build)
    waiting: dict[str, int] = defaultdict(int)
    for request in pending:
        waiting[request.builder] += 1
    effects: list[str] = []
    for name in changes.of("builder", Edit.REMOVED):
        effects += [f"{name} #{b.number} runs on to its end on {b.worker}" for b in builds[name]]
        if waiting[name]:
            effects.append(f"{_requests(waiting[name])} of {name} wait until a pipeline has {name} again")
    for name in changes.of("builder", Edit.CHANGED):
        effects += [f"{name} #{b.number} finishes with the steps it began with" for b in builds[name]]
        if waiting[name]:
            effects.append(f"{_requests(waiting[name])} of {name} run as the new pipeline defines it")
    for name in changes.of("builder", Edit.ADDED):
        if waiting[name]:
            effects.append(f"{_requests(waiting[name])} of {name}, kept from before, can start")
    connected = set(connected)
    on_worker: dict[str, list[Running]] = defaultdict(list)
    for build in (b for group in builds.values() for b in group):
        on_worker[build.worker].append(build)
    for name in changes.of("worker", Edit.REMOVED):
        if name in connected:
            finishing = ", ".join(f"{b.builder} #{b.number}" for b in on_worker[name])
            effects.append(
                f"worker {name} is connected but gets no new builds"
                + (f"; {finishing} finish there" if finishing else "")
            )
    return Reconfiguration(changes, tuple(effects), outcome)


def _requests(count: int) -> str:
    return f"{count} pending request{'s' if count != 1 else ''}"
