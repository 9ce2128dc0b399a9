"""What the reporters that set commit statuses share (GitHub's, GitLab's): a state when a build
starts, and one by its result when it ends, each with a short description."""

from __future__ import annotations

from ..records import Build
from ..results import Result
from .base import Reporter
from .summary import steps_said


class CommitStatusReporter(Reporter):
    """Base class of commit status reporters: a subclass gives its states and :meth:`set_status`."""

    #: The state of a commit whose build started.
    started_state = "pending"
    #: The states of a commit by its build's result.
    states: dict[Result, str] = {}
    #: Its steps' summaries make the description (``unit: 3 failed, 120 passed``).
    wants_details = True

    async def build_started(self, build: Build) -> None:
        await self.set_status(build, self.started_state, f"build #{build.number} started")

    async def build_finished(self, build: Build) -> None:
        assert build.result is not None
        seconds = f" in {build.duration:.0f} s" if build.duration is not None else ""
        said = steps_said(build)
        description = f"build #{build.number}: {build.result.name}{seconds}" + (f" ({said})" if said else "")
        await self.set_status(build, self.states[build.result], description)

    async def set_status(self, build: Build, state: str, description: str) -> None:
        """Set the status of each commit ``build`` was of."""
        raise NotImplementedError
