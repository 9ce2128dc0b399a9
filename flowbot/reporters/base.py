"""The base class of reporters, and the report of a build that they receive.

Reporters are the graph's last nodes: they consume builds as they start and finish and tell people
or other systems (GitHub, an HTTP endpoint, mail). A reporter subclasses :class:`Reporter` and
overrides the hooks it needs, each a coroutine; every hook is a no-op here. The master runs hooks
off the build path, one reporter at a time in order, each with its own queue: a slow or failing
endpoint delays only its own reports, never a build. A hook that raises is retried with back-off
(:class:`~flowbot.errors.ReportRejected` is not retried) and then logged and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..defaults import REPORT_ATTEMPTS, REPORT_BACKOFF
from ..errors import ConfigError
from ..location import caller
from ..records import SourceStamp
from ..results import Result

#: What a reporter may report, by the result of a finished build:
MODES = {
    #: every build
    "all",
    #: builds that failed
    "failing",
    #: builds that passed
    "passing",
    #: builds with warnings
    "warnings",
    #: builds that hit an exception
    "exception",
    #: builds whose result differs from the previous build of the same builder
    "problem",
}


@dataclass(frozen=True, slots=True)
class StepReport:
    """A finished step, as reports show it."""

    number: int
    name: str
    result: Result | None
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class BuildReport:
    """A build as reporters see it: started (``result`` None) or finished."""

    id: int
    builder: str
    number: int
    worker: str
    started_at: float
    finished_at: float | None = None
    result: Result | None = None
    branch: str | None = None
    revision: str | None = None
    reason: str = ""
    sourcestamps: tuple[SourceStamp, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    #: The result of the builder's previous finished build (RETRY aside), when the mode needs it.
    previous_result: Result | None = None
    #: The steps of a finished build (for reporters that ask for details).
    steps: tuple[StepReport, ...] = ()
    #: The name of the step whose log ends the report (the first that failed, else the last).
    log_step: str | None = None
    #: The last lines of that step's log.
    log_tail: str = ""
    #: The build's page, when the master serves one.
    url: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (results by name)."""
        return {
            "id": self.id,
            "builder": self.builder,
            "number": self.number,
            "worker": self.worker,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result.name if self.result is not None else None,
            "previous_result": self.previous_result.name if self.previous_result is not None else None,
            "branch": self.branch,
            "revision": self.revision,
            "reason": self.reason,
            "sourcestamps": [
                {"codebase": s.codebase, "repository": s.repository, "branch": s.branch, "revision": s.revision}
                for s in self.sourcestamps
            ],
            "properties": self.properties,
            "steps": [{"number": s.number, "name": s.name, "result": s.result and s.result.name} for s in self.steps],
            "url": self.url,
        }


class Reporter:
    """Base class for reporters; every hook is a no-op.

    Args:
        name: shown in logs and metrics; defaults to the class name.
        builders: names of the builders to report on (None: all of them).
        mode: which finished builds to report: one of :data:`MODES` or several (any matching one).
            Starts are reported whatever the mode, so a status set to pending gets its result.
        attempts: tries per report before it is dropped (logged).
        backoff: seconds before the first retry; each retry waits twice as long as the one before.

    Raises:
        ConfigError: an unknown mode.
    """

    #: Whether the finished build's steps and log tail should be read for this reporter.
    wants_details = False

    def __init__(
        self,
        name: str | None = None,
        *,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        attempts: int = REPORT_ATTEMPTS,
        backoff: float = REPORT_BACKOFF,
    ):
        self.defined_at = caller()
        self.name = name or type(self).__name__
        self.builders = None if builders is None else ([builders] if isinstance(builders, str) else list(builders))
        self.mode = frozenset([mode] if isinstance(mode, str) else mode)
        unknown = self.mode - MODES
        if unknown or not self.mode:
            where = (self.defined_at.filename, self.defined_at.lineno) if self.defined_at else (None, None)
            raise ConfigError(
                f"reporter mode must be among {sorted(MODES)}, not {sorted(unknown) or 'nothing'}", *where
            )
        self.attempts = max(1, attempts)
        self.backoff = backoff

    # -- choosing ---------------------------------------------------------------------------------

    def reports_on(self, builder: str) -> bool:
        """Whether builds of ``builder`` concern this reporter at all."""
        return self.builders is None or builder in self.builders

    def wants(self, build: BuildReport) -> bool:
        """Whether the finished ``build`` should be reported, by the mode."""
        if "all" in self.mode:
            return True
        result = build.result
        chosen = {
            "failing": result == Result.FAILURE,
            "passing": result == Result.SUCCESS,
            "warnings": result == Result.WARNINGS,
            "exception": result == Result.EXCEPTION,
            "problem": result != Result.RETRY and result != (build.previous_result or Result.SUCCESS),
        }
        return any(chosen[mode] for mode in self.mode)

    # -- hooks --------------------------------------------------------------------------------------

    async def build_started(self, build: BuildReport) -> None:
        """A build started (on a worker)."""

    async def build_finished(self, build: BuildReport) -> None:
        """A build finished and :meth:`wants` it."""

    async def close(self) -> None:
        """The master is stopping: release connections, threads, files."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
