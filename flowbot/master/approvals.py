"""Builds that wait for a person's decision (an :class:`~flowbot.steps.approval.Approval` step).

The waiting lives in the master's memory: a master that restarts while a build waits ends the build
as RETRY, and its request runs again from the start, asking again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidRequest, NotFound
from .events import EventKind

if TYPE_CHECKING:
    from ..steps.approval import Approval, Decision
    from .build import RunningBuild


class Events(Protocol):
    def emit(self, kind: EventKind, **data: Any) -> None: ...


@dataclass(eq=False)
class _Waiting:
    build: RunningBuild
    step: Approval
    #: The step as the API shows it (its rendered prompt, its form), with the step number and since when.
    shown: dict[str, Any]
    decided: asyncio.Future[Decision]


class Approvals:
    """The builds that wait for approval, by build id."""

    def __init__(self, events: Events):
        self._events = events
        self._waiting: dict[int, _Waiting] = {}

    def wait(self, build: RunningBuild, step: Approval) -> asyncio.Future[Decision]:
        """Let people decide about ``build`` (whose start is stored), which waits at ``step``."""
        shown = {**step.describe(build), "step": build.current_step, "since": time.time()}
        decided = asyncio.get_running_loop().create_future()
        self._waiting[build.id] = _Waiting(build, step, shown, decided)
        self._announce(build, shown)
        return decided

    def done(self, build: RunningBuild) -> None:
        """``build`` waits no more (decided, timed out or stopped)."""
        if self._waiting.pop(build.id, None) is not None:
            self._announce(build, None)

    def waiting(self, build_id: int) -> dict[str, Any] | None:
        """What build ``build_id`` waits for (None when it waits for no decision)."""
        waiting = self._waiting.get(build_id)
        return waiting.shown if waiting is not None else None

    def all(self) -> list[dict[str, Any]]:
        """Every build that waits, oldest first: its id, builder, number and what it waits for."""
        return [
            {"build_id": w.build.id, "builder": w.build.builder, "number": w.build.number, "approval": w.shown}
            for w in sorted(self._waiting.values(), key=lambda w: w.shown["since"])
        ]

    def decide(
        self, build_id: int, approved: bool, *, by: str = "", comment: str = "", values: dict[str, Any] | None = None
    ) -> Decision:
        """Approve or reject build ``build_id``, with the values of its step's form.

        Raises:
            NotFound: the build waits for no decision (any more).
            InvalidRequest: a form value that is unknown, missing or of the wrong type.
        """
        waiting = self._waiting.get(build_id)
        if waiting is None or waiting.decided.done():
            raise NotFound(f"build {build_id} is not waiting for approval")
        try:
            decision = waiting.step.decide(approved, by, comment, values)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        waiting.decided.set_result(decision)
        return decision

    def _announce(self, build: RunningBuild, shown: dict[str, Any] | None) -> None:
        self._events.emit(
            EventKind.APPROVAL, build_id=build.id, builder=build.builder, number=build.number, approval=shown
        )
