"""The base class of every step, and what a step may ask of the build it runs in.

A custom step subclasses :class:`Step` and implements one ``async def run(self, build)`` that
returns a :class:`~flowbot.results.Result`. Through ``build`` it runs commands on the worker, writes
to its logs and reads the build's properties; it never touches sockets or the database itself, so a
step can be tested with a fake build and replayed in a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..location import caller
from ..results import Result


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command on the worker ended."""

    #: Exit code; negative for a signal; None when no process ran.
    rc: int | None
    #: Why it ended early (``timeout``, ``max_time``, ``interrupted``, ``error``), or None.
    reason: str | None = None
    #: What the worker said about it.
    message: str = ""
    #: Seconds it ran on the worker.
    elapsed: float = 0.0


class StepLog(Protocol):
    """A log of the running step; lines appear live and land in the store."""

    def header(self, text: str) -> None: ...

    def stdout(self, text: str) -> None: ...

    def stderr(self, text: str) -> None: ...


class BuildContext(Protocol):
    """What a running step sees of its build (the master provides it)."""

    builder: str
    number: int
    worker: str
    branch: str | None
    revision: str | None
    properties: dict[str, Any]

    def env(self) -> dict[str, str]:
        """The ``FLOWBOT_*`` variables every command of the build gets."""
        ...

    def log(self, name: str = "stdio") -> StepLog:
        """The running step's log of that name, created on first use."""
        ...

    async def run_command(self, name: str, args: dict[str, Any], *, log: str = "stdio") -> CommandResult:
        """Run a worker command, streaming its output into ``log``.

        Raises:
            WorkerLost: the worker went away (the build will RETRY).
            BuildStopped: someone stopped the build (it will be CANCELLED).
        """
        ...


class Step:
    """Base class for steps.

    Args:
        name: shown in every view; unique within a builder (duplicates get ``_2``, ``_3``...).
        halt_on_failure: a failure stops the build (later steps run only if ``always_run``).
        flunk_on_failure: a failure makes the build fail (the default).
        warn_on_failure: a failure makes the build WARNINGS at most.
        warn_on_warnings: warnings make the build WARNINGS.
        flunk_on_warnings: warnings make the build fail.
        always_run: run even after an earlier step halted the build.
    """

    #: The name a step gets when none is given.
    default_name = "step"

    def __init__(
        self,
        name: str | None = None,
        *,
        halt_on_failure: bool = False,
        flunk_on_failure: bool = True,
        warn_on_failure: bool = False,
        warn_on_warnings: bool = False,
        flunk_on_warnings: bool = False,
        always_run: bool = False,
    ):
        self.name = name or self.default_name
        self.halt_on_failure = halt_on_failure
        self.flunk_on_failure = flunk_on_failure
        self.warn_on_failure = warn_on_failure
        self.warn_on_warnings = warn_on_warnings
        self.flunk_on_warnings = flunk_on_warnings
        self.always_run = always_run
        self.defined_at = caller()

    async def run(self, build: BuildContext) -> Result:
        """Do the step's work and say how it went."""
        raise NotImplementedError(f"{type(self).__name__} must implement async def run(self, build)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
