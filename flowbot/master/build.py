"""A running build: the master's side of one build, and what its steps see of it.

:class:`RunningBuild` runs a builder's steps in order for one request on one worker. It is the
``build`` that :meth:`Step.run <flowbot.steps.base.Step.run>` receives: steps run commands through
it and write to its logs. It folds step results into the build's with Buildbot's rules, and ends as
RETRY when its worker is lost (the request then runs again) or CANCELLED when someone stops it.

Recording never holds a build up: each start and end is queued to the store, which commits them
in order, and the event announcing a record is emitted only once that record is committed. The
build counts as finished when every one of its writes is. If the master dies between a command
starting and its build being recorded, the request is still pending in the store and runs again,
and the worker is told to cancel the orphaned command when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..builder import Builder
from ..defaults import STOP_GRACE
from ..errors import BuildStopped, WorkerLost
from ..records import BuildRequest
from ..results import Result, combine
from ..steps.base import CommandResult, Step
from ..store import Ref
from .logs import StepLog
from .registry import WorkerConnection

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)


class RunningBuild:
    """One build in progress (implements :class:`~flowbot.steps.base.BuildContext`)."""

    def __init__(
        self, master: Master, builder: Builder, request: BuildRequest, connection: WorkerConnection, number: int
    ):
        self.master = master
        self.builder_config = builder
        self.request = request
        self.connection = connection
        self.builder = builder.name
        self.number = number
        self.worker = connection.name
        self.branch = request.branch
        self.revision = request.revision
        self.ref = Ref()
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.result: Result | None = None
        self.properties: dict[str, Any] = {
            **master.pipeline.properties,
            **connection.spec.properties,
            **builder.properties,
            **request.properties,
            "branch": self.branch,
            "revision": self.revision,
            "buildername": self.builder,
            "buildnumber": number,
            "workername": self.worker,
        }
        self.current_step: int | None = None
        self._logs: dict[str, StepLog] = {}
        self._command_id: str | None = None
        self._stopped: str | None = None
        self._stop_result = Result.CANCELLED
        self._writes: set[asyncio.Future] = set()
        self._failed_writes: list[BaseException] = []
        self._env = {
            "FLOWBOT_BRANCH": self.branch or "",
            "FLOWBOT_REVISION": self.revision or "",
            "FLOWBOT_BUILDER": self.builder,
            "FLOWBOT_BUILD_NUMBER": str(number),
            "FLOWBOT_WORKER": self.worker,
        }

    @property
    def id(self) -> int | None:
        """The store's id of the build, once its start is committed."""
        return self.ref.id

    # -- what steps see -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def log(self, name: str = "stdio") -> StepLog:
        if name not in self._logs:
            raise KeyError(f"the running step has no log {name!r}")
        return self._logs[name]

    async def run_command(self, name: str, args: dict[str, Any], *, log: str = "stdio") -> CommandResult:
        if self._stopped:
            raise BuildStopped(self._stopped)
        step_log = self.log(log)
        args = {**args, "builddir": self.builder_config.builddir}
        step_log.header(_describe(name, args))
        self._command_id = self.master.registry.new_command_id()
        try:
            result = await self.connection.run_command(self._command_id, name, args, step_log.output)
        finally:
            self._command_id = None
        if result.message:
            step_log.header(result.message)
        step_log.header(_ending(result))
        if result.reason == "interrupted" and self._stopped:
            raise BuildStopped(self._stopped)
        return result

    # -- control ------------------------------------------------------------------------------

    def stop(self, reason: str, result: Result = Result.CANCELLED) -> None:
        """Stop the build: interrupt what runs, skip what is left; it ends as ``result``.

        People stopping a build get CANCELLED; a master shutting down uses RETRY, so the request
        runs again when it comes back.
        """
        if self._stopped or self.result is not None:
            return
        self._stopped = reason or "stopped"
        self._stop_result = result
        log.info("stopping build %s #%d: %s", self.builder, self.number, self._stopped)
        if self._command_id is not None:
            self.connection.interrupt(self._command_id, self._stopped, STOP_GRACE)

    # -- running --------------------------------------------------------------------------------

    async def execute(self) -> Result:
        """Run every step and queue the build's end; the worker is free again when this returns.

        Await :meth:`recorded` to know the build is in the store.
        """
        store = self.master.store
        self.started_at = time.time()
        self._record(
            store.start_build(self.request, self.number, self.worker, self.started_at, self.master.name, self.ref),
            lambda: ("build.started", {"build": self.summary()}),
        )
        try:
            result = await self._run_steps()
        except Exception:  # a bug in the master must still end the build, visibly
            log.exception("build %s #%d failed inside the master", self.builder, self.number)
            result = Result.EXCEPTION
        if self._stopped:
            result = self._stop_result
        elif self.connection.lost:
            result = Result.RETRY
        self.result = result
        self.finished_at = time.time()
        summary = f"stopped: {self._stopped}" if self._stopped else ""
        self._record(
            store.finish_build(self.ref, self.request, result, self.finished_at, summary),
            lambda: ("build.finished", {"build": self.summary()}),
        )
        return result

    async def recorded(self) -> None:
        """Wait until every write about the build has committed.

        Raises:
            StoreError, NotFound: the build could not be recorded (its request stays pending).
        """
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._failed_writes:
            raise self._failed_writes[0]

    async def _run_steps(self) -> Result:
        result, halted = Result.SUCCESS, False
        for index, step in enumerate(self.builder_config.steps):
            if (halted or self._stopped) and not step.always_run:
                continue
            step_result = await self._run_step(index, step)
            result, halt = combine(result, step_result, step)
            halted = halted or halt
        return result

    async def _run_step(self, index: int, step: Step) -> Result:
        store, events = self.master.store, self.master.events
        name = self.builder_config.step_names[index]
        self.current_step = index
        step_ref = Ref()
        self._record(
            store.start_step(self.ref, index, name, time.time(), step_ref),
            lambda: ("step.started", {"build_id": self.id, "builder": self.builder, "step": index, "name": name}),
        )

        def live(first: int, lines: list[tuple[str, str]]) -> None:
            if events.wants("log"):
                events.emit(
                    "log", build_id=self.id, builder=self.builder, step=index, log="stdio", first=first, lines=lines
                )

        stdio = self._logs["stdio"] = StepLog(step_ref, "stdio", store.append_log, live)
        try:
            if self.connection.lost:
                raise WorkerLost(f"worker {self.worker} is not connected")
            result = await step.run(self)
            if not isinstance(result, Result):
                raise TypeError(f"{type(step).__name__}.run returned {result!r}, not a Result")
        except WorkerLost as exc:
            result = Result.RETRY
            stdio.header(f"{exc}; the build will be retried")
        except BuildStopped as exc:
            result = self._stop_result
            stdio.header(f"build stopped: {exc}")
        except Exception as exc:
            result = Result.EXCEPTION
            stdio.header("step raised an exception:\n" + "".join(traceback.format_exception(exc)).rstrip())
            log.warning("step %r of %s #%d raised %r", name, self.builder, self.number, exc)
        stdio.close()
        for write in stdio.writes:
            self._record(write)
        self._logs.clear()
        self._record(
            store.finish_step(step_ref, result, time.time()),
            lambda: (
                "step.finished",
                {"build_id": self.id, "builder": self.builder, "step": index, "name": name, "result": result.name},
            ),
        )
        self.current_step = None
        return result

    def _record(self, write: asyncio.Future, event: Callable[[], tuple[str, dict]] | None = None) -> None:
        """Track a queued write; once it commits, emit the event that announces it."""
        self._writes.add(write)

        def done(future: asyncio.Future) -> None:
            self._writes.discard(future)
            if future.cancelled():
                return
            if future.exception() is not None:
                self._failed_writes.append(future.exception())
            elif event is not None:
                kind, fields = event()
                self.master.events.emit(kind, **fields)

        write.add_done_callback(done)

    def summary(self) -> dict[str, Any]:
        """The build as the API and the event stream show it."""
        return {
            "id": self.id,
            "builder": self.builder,
            "number": self.number,
            "worker": self.worker,
            "branch": self.branch,
            "revision": self.revision,
            "request_id": self.request.id,
            "submitted_at": self.request.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result.name if self.result is not None else None,
        }


def _describe(name: str, args: dict[str, Any]) -> str:
    """The header line of a command, as a person would type it."""
    command = args.get("command")
    if isinstance(command, list):
        command = shlex.join(command)
    where = f" in {args['builddir']}/{args.get('workdir') or '.'}"
    return f"{name}: {command}{where}" if command is not None else f"{name}{where}"


def _ending(result: CommandResult) -> str:
    if result.rc is None:
        return f"command did not run ({result.reason or 'error'})"
    how = f"killed by signal {-result.rc}" if result.rc < 0 else f"exit code {result.rc}"
    return f"program finished with {how}, elapsed {result.elapsed:.3f} s"
