"""The base class of every step, and what a step may ask of the build it runs in.

A custom step subclasses :class:`Step` and implements one ``async def run(self, build)`` that
returns a :class:`~flowbot.results.Result`. Through ``build`` it runs commands on the worker, writes
to logs, reads and sets properties and renders values; it never touches sockets or the database
itself, so a step can be tested with a fake build and replayed in a notebook::

    class CountTodos(Step):
        async def run(self, build):
            result = await build.run_command("shell", {"command": "grep -rc TODO src"}, collect=True)
            build.set_property("todos", result.stdout.count("\\n"), "CountTodos")
            build.set_summary(f"{result.stdout.count(chr(10))} files with TODOs")
            return Result.SUCCESS

A step may also start a command, go on, and interrupt it itself; then it decides its result::

    class Soak(Step):
        async def run(self, build):
            command = build.start_command("shell", {"command": "./soak-test"})
            await asyncio.sleep(600)
            command.interrupt("soaked long enough")
            outcome = await command  # killed: outcome.reason == "interrupted"
            return Result.SUCCESS if outcome.reason == "interrupted" else Result.FAILURE
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowbot_worker.bodies import CommandResult

from ..fields import FLAG, FUNCTION, RENDERABLE, TEXT, checked, either, instance, optional
from ..junit import TestCase
from ..locks import ACCESSES, LockAccess
from ..properties import Properties, RenderContext
from ..results import Result
from ..retry import Retry

if TYPE_CHECKING:
    from .approval import Approval, Decision

T = TypeVar("T")


class StartedCommand(Protocol):
    """A command a step started with :meth:`BuildContext.start_command`; ``await`` it for its
    :class:`CommandResult`."""

    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop the command: SIGTERM, then SIGKILL after a grace period (withdrawn if it has not
        started yet); its result then says ``interrupted``, and the build goes on."""
        ...

    def __await__(self) -> Generator[Any, None, CommandResult]: ...


class StepLog(Protocol):
    """A log of the running step; lines appear live and land in the store."""

    def header(self, text: str) -> None: ...

    def stdout(self, text: str) -> None: ...

    def stderr(self, text: str) -> None: ...

    def output(self, stream: str, data: bytes) -> Awaitable[None] | None:
        """A program's raw output on ``stream`` (``stdout`` or ``stderr``), in pieces of any size;
        it is cut into lines as they complete (a line too long to hold is cut too, and marked)."""
        ...

    def end_lines(self) -> Awaitable[None] | None:
        """End the lines the output left without a newline (the program has ended)."""
        ...


class BuildContext(RenderContext, Protocol):
    """What a running step sees of its build (the master provides it)."""

    builder: str
    number: int
    worker: str
    branch: str | None
    revision: str | None
    properties: Properties
    #: The master's directory (where ``MasterShell`` runs).
    master_dir: str

    def env(self) -> dict[str, str]:
        """The ``FLOWBOT_*`` variables every command of the build gets."""
        ...

    def render(self, value: Any) -> Any:
        """Resolve renderables (``Interpolate``, ``Property``, ``@renderer``) in ``value``."""
        ...

    def set_property(self, name: str, value: Any, source: str) -> None: ...

    def log(self, name: str = "stdio") -> StepLog:
        """The running step's log of that name, created on first use."""
        ...

    async def run_command(
        self, name: str, args: dict[str, Any], *, log: str = "stdio", collect: bool = False
    ) -> CommandResult:
        """Run a worker command, streaming its output into ``log``; ``collect`` keeps it too.

        Raises:
            WorkerLost: the worker went away (the build will RETRY).
            BuildStopped: someone stopped the build (it will be CANCELLED).
        """
        ...

    def start_command(
        self, name: str, args: dict[str, Any], *, log: str = "stdio", collect: bool = False
    ) -> StartedCommand:
        """Start a worker command as :meth:`run_command` does, and return at once, so that the step
        may interrupt it. A command the step leaves running is interrupted when the step ends.

        Awaiting it raises what :meth:`run_command` raises.
        """
        ...

    async def upload(
        self, source: str, destination: str, *, directory: bool = False, max_size: int | None = None
    ) -> CommandResult:
        """Bring a file or directory from the worker to the master (checksummed).

        ``destination`` (relative to the master's directory, or absolute) must lead inside the
        master's artifacts directory, through no symbolic link; else the upload is refused.
        """
        ...

    async def download(self, source: str, destination: str, *, mode: int | None = None) -> CommandResult:
        """Send a file from the master to the worker (checksummed); ``source`` is confined as an
        upload's destination is."""
        ...

    async def fetch(self, source: str, *, max_size: int = 64 * 1024 * 1024) -> bytes:
        """The content of a file on the worker (a test report, say).

        Raises:
            FlowbotError: the file is missing, too big, or did not arrive.
        """
        ...

    def record_tests(self, cases: Iterable[TestCase]) -> None:
        """Store test cases with the running step (see :mod:`flowbot.junit`); their counts become
        part of its summary line (``3 failed, 120 passed``)."""
        ...

    def set_summary(self, text: str) -> None:
        """Say in one line what the running step found (``12 files with TODOs``): shown beside
        the step in the web page, the CLI and reports."""
        ...

    async def trigger(
        self,
        schedulers: list[str],
        properties: dict[str, tuple[Any, str]],
        *,
        wait: bool,
        update_sourcestamp: bool = True,
    ) -> list[Result]:
        """Start buildsets on Triggerable schedulers (at the revisions this build checked out, with
        ``update_sourcestamp``); with ``wait``, their results."""
        ...

    async def wait_for_approval(self, approval: Approval) -> Decision | None:
        """Hold the build until a person decides about ``approval`` (None: its timeout came
        first), holding no worker nor builder lock meanwhile.

        Raises:
            BuildStopped: the build was stopped meanwhile.
        """
        ...

    async def stoppable(self, awaitable: Awaitable[T]) -> T:
        """Await something the step waits for (a process on the master, say) so that stopping the
        build cancels the wait.

        Raises:
            BuildStopped: the build was stopped meanwhile.
        """
        ...


Condition = bool | Callable[[BuildContext], bool]


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
        do_step_if: run only if this is true (a bool, ``fn(build)``, or a renderable); else SKIPPED.
        hide_step_if: hide the step from views if true (a bool or ``fn(result, build)``).
        locks: lock accesses held while the step runs.
        retry: run the step again when it fails in a way it says (see :class:`~flowbot.retry.Retry`).
    """

    #: The name a step gets when none is given.
    default_name = "step"
    #: The most bytes of program output each of its logs keeps (None: the pipeline's ``max_log``).
    max_log: int | None = None
    #: Whether the step runs on the build's worker; a step that does not (an approval) lets the
    #: build go on without one, and the next step that does takes one again.
    needs_worker = True

    @checked(
        name=optional(TEXT),
        halt_on_failure=FLAG,
        flunk_on_failure=FLAG,
        warn_on_failure=FLAG,
        warn_on_warnings=FLAG,
        flunk_on_warnings=FLAG,
        always_run=FLAG,
        do_step_if=either(FLAG, FUNCTION, RENDERABLE),
        hide_step_if=either(FLAG, FUNCTION),
        locks=ACCESSES,
        retry=optional(instance(Retry, "a Retry(...)")),
    )
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
        do_step_if: Any = True,
        hide_step_if: bool | Callable[[Result, BuildContext], bool] = False,
        locks: Iterable[LockAccess] = (),
        retry: Retry | None = None,
    ):
        self.name = name or self.default_name
        self.halt_on_failure = halt_on_failure
        self.flunk_on_failure = flunk_on_failure
        self.warn_on_failure = warn_on_failure
        self.warn_on_warnings = warn_on_warnings
        self.flunk_on_warnings = flunk_on_warnings
        self.always_run = always_run
        self.do_step_if = do_step_if
        self.hide_step_if = hide_step_if
        self.locks: list[LockAccess] = list(locks)
        self.retry = retry

    async def run(self, build: BuildContext) -> Result:
        """Do the step's work and say how it went."""
        raise NotImplementedError(f"{type(self).__name__} must implement async def run(self, build)")

    async def resume(self, build: BuildContext, command: StartedCommand) -> Result:
        """Go on with the step after a master restart: ``command`` is the first command it started,
        which its worker went on running meanwhile (``await command`` for how it ended), and the
        step's log so far is kept.

        A step whose ``run`` starts that command and judges its outcome implements this as the rest
        of ``run``. A step without it (or whose ``run`` a subclass changed without it) is not taken
        up: its build ends as RETRY and runs again, as one whose worker is lost does.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be taken up after a master restart")

    @property
    def resumable(self) -> bool:
        """Whether :meth:`resume` goes with this step's :meth:`run` (both from one class, not Step)."""
        resume = next(c for c in type(self).__mro__ if "resume" in c.__dict__)
        run = next(c for c in type(self).__mro__ if "run" in c.__dict__)
        return resume is run and run is not Step

    def should_run(self, build: BuildContext) -> bool:
        """Buildbot's ``doStepIf``: a bool, a function of the build, or a renderable."""
        condition = self.do_step_if
        if callable(condition) and not hasattr(condition, "render"):
            return bool(condition(build))
        return bool(build.render(condition))

    def hidden(self, result: Result, build: BuildContext) -> bool:
        """Buildbot's ``hideStepIf``: a bool or ``fn(result, build)``."""
        condition = self.hide_step_if
        return bool(condition(result, build)) if callable(condition) else bool(condition)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
