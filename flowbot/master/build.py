"""A running build: the master's side of one build, and what its steps see of it.

:class:`RunningBuild` runs a builder's steps in order for one request on one worker. It is the
``build`` that :meth:`Step.run <flowbot.steps.base.Step.run>` receives: steps run commands through
it, write to its logs, read and set its properties and render values against it. It folds step
results into the build's with Buildbot's rules, and ends as RETRY when its worker is lost (the
request then runs again) or CANCELLED when someone stops it. A stopped build still runs its
``always_run`` steps (cleanup), as Buildbot does; stopping it again interrupts the one running.

A master that restarts after a crash may take a build up again (see :mod:`flowbot.master.adoption`):
:meth:`RunningBuild.take_up` rebuilds it from its record and the command its worker still runs,
and the build goes on from there. Each command's id says which build, step and command it is
(:func:`command_id`), which is how the restarted master finds it among those its worker holds.

Recording never holds a build up: each start and end is queued to the store, which commits them
in order, and the event announcing a record is emitted only once that record is committed. The
build counts as finished when every one of its writes is; the build's properties are recorded as
each step ends, for a master that may take it up. If the master dies and cannot take the build
up, the request is still pending in the store and runs again, and the worker is told to cancel
the orphaned command when it reconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flowbot_worker import protocol
from sqlalchemy.exc import SQLAlchemyError

from .. import secrets
from ..builder import Builder
from ..defaults import STOP_GRACE
from ..errors import BuildStopped, ConfigError, FlowbotError, WorkerLost
from ..fields import where
from ..junit import Outcome, TestCase
from ..junit import describe as describe_tests
from ..properties import Properties, render
from ..record_json import build_event_json
from ..records import Build, BuildRequest, SourceStamp, UnfinishedBuild, UnfinishedStep
from ..results import Result, combine
from ..retry import FLAKY, Failure, PatternWatch, Retry
from ..steps.approval import Approval, Decision
from ..steps.base import CommandResult, Step
from ..store import Ref, StepEnd, StepStart
from .events import EventKind
from .logs import LogWriter, size
from .registry import RemoteCommand, WorkerConnection
from .rerun import steps_to_run
from .transfers import ReceiveFile, SendFile, StoredFile, TransferError, master_file, own_files

if TYPE_CHECKING:
    from .services import BuildServices

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Most bytes of output a step may keep with ``collect=True`` (per stream).
MAX_COLLECTED = 16 * 1024 * 1024


class _BuildProperties(Properties):
    """A build's properties: steps read them as they were set; the form that is stored and shown
    hides the secrets the build used (a property may hold one, or output that printed one)."""

    def __init__(self, secrets_used: set[str]):
        super().__init__()
        self._secrets_used = secrets_used

    def with_sources(self) -> dict[str, list[Any]]:
        return {
            name: [secrets.redact_value(value, self._secrets_used), source]
            for name, (value, source) in super().with_sources().items()
        }


def step_lock_owner(request_id: int, step: int) -> tuple[int, int]:
    """Who holds the locks of a build's step (a restarted master takes them for a build it may take up)."""
    return (request_id, step)


def commands_of(request_id: int, number: int) -> str:
    """What the ids of a build's commands begin with: its request and number."""
    return f"r{request_id}.b{number}."


def command_id(request_id: int, number: int, step: int, ordinal: int) -> str:
    """The id of a build's command: its build, its step, and which of the step's commands it is."""
    return f"{commands_of(request_id, number)}s{step}.c{ordinal}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Resumption:
    """Where a build taken up after a master restart goes on: the step that was running, the
    build's result before it, and that step's first command, which its worker still runs (or
    the step after the last that ended, and no command, for a build taken up between two steps)."""

    step: int
    result: Result
    halted: bool
    cmd_id: str | None = None
    command: RemoteCommand | None = None


class RunningBuild:
    """One build in progress (implements :class:`~flowbot.steps.base.BuildContext`).

    Args:
        services: what it uses of the master (its store, events, locks, tasks; see
            :class:`~flowbot.master.services.BuildServices`).
    """

    def __init__(
        self,
        services: BuildServices,
        builder: Builder,
        request: BuildRequest,
        connection: WorkerConnection,
        number: int,
        attempt: int = 1,
    ):
        self.services = services
        self.builder_config = builder
        self.request = request
        #: The worker's link; None while the build waits without one (for an approval, say).
        self.connection: WorkerConnection | None = connection
        self.builder = builder.name
        self.number = number
        #: Which build of its request this is (its builder's ``Retry`` runs a request again).
        self.attempt = attempt
        self.worker = connection.name
        self.branch = request.branch
        self.revision = request.revision
        self.ref = Ref()
        self.master_dir = str(services.basedir or Path.cwd())
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.result: Result | None = None
        self.locks_wait = 0.0
        #: Lines of the build's logs that the store could not keep (they make a success WARNINGS).
        self.lost_lines = 0
        self._recorded_as: tuple[Result, str] | None = None
        self._secrets: set[str] = set()
        self.properties = self._initial_properties()
        self.current_step: int | None = None
        self._step_ref: Ref | None = None
        self._step_summary = ""  # what the running step's end says besides its result (a timeout)
        self._step_own_summary = ""  # what the running step says of itself (set_summary)
        self._step_retried = ""  # why the running step is on another attempt
        self._step_tests: Counter[str] = Counter()  # the running step's tests, by outcome
        self._step_cut_logs: list[str] = []  # what the running step's logs did not keep past their limit
        self._step_commands = 0  # commands the running step started
        self._logs: dict[str, LogWriter] = {}
        self._log_lines: dict[str, int] = {}  # where the logs of a step taken up go on
        self._stored_properties: dict[str, list[Any]] | None = None
        self._resumption: _Resumption | None = None
        self._commands: dict[str, str | None] = {}  # the commands running, with why one was interrupted
        self._started: list[_StartedCommand] = []  # what the running step started with start_command
        self._waiting: asyncio.Task | None = None
        self._stopped: str | None = None  # why the build was stopped: it ends as _stop_result
        self._interrupted: str | None = None  # why the running step was stopped
        self._stop_result = Result.CANCELLED
        self._timed_out = False  # stopped by the builder's max_time
        # What the running step's attempt showed, for its Retry and its builder's.
        self._exit_codes: set[int] = set()
        self._patterns: PatternWatch | None = None
        self._failed_tests: list[TestCase] = []
        self._build_failure = Failure()  # what the build's failed steps showed
        self._writes: set[asyncio.Future] = set()
        self._all_written: asyncio.Future[None] | None = None  # set once no write is left in _writes
        self._first_step_recorded: int | None = None  # the step whose start the build's start recorded
        # The write of the running step's start (with the build's, or the end of the step before):
        # its commands go out once it is stored.
        self._step_write: asyncio.Future | None = None
        # The end of the step that ran last, its event and its name, until the build's next write.
        self._step_end: tuple[StepEnd, Callable[[], tuple[EventKind, dict]], str] | None = None
        self._start_write: asyncio.Future | None = None
        # Live log lines of the first step, held until the build's start is stored and has its id.
        self._unannounced: list[dict[str, Any]] | None = None
        self._finish_write: asyncio.Future | None = None
        self._env = {
            "FLOWBOT_BRANCH": self.branch or "",
            "FLOWBOT_REVISION": self.revision or "",
            "FLOWBOT_BUILDER": self.builder,
            "FLOWBOT_BUILD_NUMBER": str(number),
            "FLOWBOT_WORKER": self.worker,
        }

    def _initial_properties(self) -> Properties:
        props = _BuildProperties(self._secrets)
        props.update(self.services.pipeline.properties, "Pipeline")
        props.update(self.connection.spec.properties, "Worker")
        props.update(self.builder_config.properties, "Builder")
        for name, (value, source) in self.request.properties.items():
            props.set(name, value, source)
        stamp = self.request.sourcestamps[0] if self.request.sourcestamps else None
        build_values = {
            "buildername": self.builder,
            "buildnumber": self.number,
            "workername": self.worker,
            "branch": self.branch,
            "revision": self.revision,
            "repository": stamp.repository if stamp else "",
            "project": stamp.project if stamp else "",
            "codebase": stamp.codebase if stamp else "",
        }
        props.update(build_values, "Build")
        return props

    @property
    def id(self) -> int | None:
        """The store's id of the build, once its start is committed."""
        return self.ref.id

    # -- what steps see -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def render(self, value: Any) -> Any:
        return render(value, self)

    def set_property(self, name: str, value: Any, source: str) -> None:
        self.properties.set(name, value, source)

    def sourcestamp(self, codebase: str) -> dict[str, Any] | None:
        for stamp in self.request.sourcestamps:
            if stamp.codebase == codebase:
                return {
                    "codebase": stamp.codebase,
                    "repository": stamp.repository,
                    "branch": stamp.branch,
                    "revision": stamp.revision,
                    "project": stamp.project,
                }
        return None

    def worker_info(self) -> dict[str, Any]:
        return {**(self.connection.info if self.connection is not None else {}), "name": self.worker}

    def secret(self, name: str) -> str:
        value = secrets.lookup(self.services.pipeline.secrets, name)
        self._secrets.add(value)
        return value

    def _redact(self, text: str) -> str:
        return secrets.redact(text, self._secrets) if self._secrets else text

    def log(self, name: str = "stdio") -> LogWriter:
        """The running step's log ``name``, created on first use."""
        if self._step_ref is None:
            raise RuntimeError("logs belong to a running step")
        if name not in self._logs:
            index = self.current_step
            events = self.services.events

            def live(first: int, lines: list[tuple[str, str]]) -> None:
                if not events.wants(EventKind.LOG):
                    return
                fields = {"request_id": self.request.id, "builder": self.builder, "step": index, "log": name}
                if self.id is None and self._unannounced is not None:
                    self._unannounced.append({**fields, "first": first, "lines": lines})
                else:
                    events.emit(EventKind.LOG, build_id=self.id, **fields, first=first, lines=lines)

            step = self.builder_config.steps[index]
            self._logs[name] = LogWriter(
                self._step_ref,
                name,
                self.services.store,
                live,
                self._redact,
                self._lines_lost,
                first_line=self._log_lines.get(name, 0),
                limit=self.services.pipeline.max_log if step.max_log is None else step.max_log,
            )
        return self._logs[name]

    def _lines_lost(self, count: int) -> None:
        self.lost_lines += count

    def _final(self, result: Result, summary: str) -> tuple[Result, str]:
        """The build's result and summary as its end is written (on the store's thread, after every
        write of its logs has been stored or given up): lost log lines turn a success into WARNINGS."""
        if self.lost_lines:
            note = f"{self.lost_lines} log line(s) could not be stored"
            summary = f"{summary}; {note}" if summary else note
            if result == Result.SUCCESS:
                result = Result.WARNINGS
        self._recorded_as = (result, summary)
        return result, summary

    def _ended_as_recorded(self, finished: asyncio.Future) -> None:
        if not finished.cancelled() and finished.exception() is None and self._recorded_as is not None:
            self.result = self._recorded_as[0]

    def open_log(self, name: str) -> LogWriter | None:
        """The running step's log ``name`` if the step has one (never creates it)."""
        return self._logs.get(name)

    async def run_command(
        self, name: str, args: dict[str, Any], *, log: str = "stdio", collect: bool = False, transfer: Any = None
    ) -> CommandResult:
        return await self._command(self._new_command(), name, args, log, collect, transfer)

    def start_command(
        self, name: str, args: dict[str, Any], *, log: str = "stdio", collect: bool = False
    ) -> _StartedCommand:
        cmd_id = self._new_command()
        return self._start(cmd_id, self._command(cmd_id, name, args, log, collect))

    def _start(self, cmd_id: str, command: Awaitable[CommandResult]) -> _StartedCommand:
        # The step awaits it, or leaves it to end with the step (which gathers it): it is watched.
        started = _StartedCommand(
            self, cmd_id, self.services.spawn(command, f"command {cmd_id} of {self.builder}", watched=True)
        )
        self._started.append(started)
        return started

    def _new_command(self) -> str:
        if self.current_step is None:
            raise RuntimeError("commands belong to a running step")
        self._step_commands += 1
        cmd_id = command_id(self.request.id, self.number, self.current_step, self._step_commands)
        self._commands[cmd_id] = None
        return cmd_id

    def _interrupt_command(self, cmd_id: str, reason: str) -> None:
        """Interrupt one command the running step started (the worker is told once it has it)."""
        if cmd_id in self._commands and self._commands[cmd_id] is None:
            self._commands[cmd_id] = reason
            self.connection.interrupt(cmd_id, reason, STOP_GRACE)

    async def _command(
        self, cmd_id: str, name: str, args: dict[str, Any], log: str, collect: bool, transfer: Any = None
    ) -> CommandResult:
        try:
            if self._interrupted:
                raise BuildStopped(self._interrupted)
            step_log = self.log(log)
            args = {**args, "builddir": self.builder_config.builddir}
            step_log.header(_describe(name, args))
            collected = {"stdout": bytearray(), "stderr": bytearray()} if collect else None
            if withdrawn := self._commands[cmd_id]:  # interrupted before it was sent
                result = CommandResult(None, "interrupted", withdrawn)
            else:
                await self._step_stored()
                output = _CommandOutput(self, step_log, collected)
                result = await self.connection.run_command(cmd_id, name, args, output, transfer)
        finally:
            del self._commands[cmd_id]
        return self._ended(step_log, result, collected)

    async def _step_stored(self) -> None:
        """Wait until the running step's start is stored (and with it the end of the step before):
        a master restarted after a crash then finds running the step whose command its worker
        holds, and takes the build up from there, so no step that ended runs again.

        Raises:
            BuildStopped: the build was stopped meanwhile (the command does not go out).
        """
        write = self._step_write
        if write is None or write.done():
            return
        await asyncio.wait([write])  # a write that failed is the build's to report, not the step's
        if self._interrupted:
            raise BuildStopped(self._interrupted)

    async def _taken_up(self, resumption: _Resumption) -> CommandResult:
        """The end of the command a step taken up was running (see :meth:`take_up`)."""
        try:
            result = await self.connection.outcome(resumption.command)
        finally:
            del self._commands[resumption.cmd_id]
        return self._ended(self.log(), result, None)

    def _ended(
        self, step_log: LogWriter, result: CommandResult, collected: dict[str, bytearray] | None
    ) -> CommandResult:
        """Say in the log how a command ended, and give its result (with its output, if ``collected``)."""
        if result.message:
            step_log.header(result.message)
        step_log.header(_ending(result))
        if result.rc:
            self._exit_codes.add(result.rc)
        if result.reason in ("timeout", "max_time"):
            self._step_summary = f"timed out: {result.message or result.reason}"
        if result.reason == "interrupted" and self._interrupted:
            raise BuildStopped(self._interrupted)
        if result.rc is None and result.reason == protocol.INVALID:
            step = self.builder_config.steps[self.current_step] if self.current_step is not None else None
            raise ConfigError.at(f"the worker refused the command: {result.message}", where(step))
        if collected is not None:
            result = CommandResult(
                result.rc,
                result.reason,
                result.message,
                result.elapsed,
                stdout=collected["stdout"].decode("utf-8", "replace"),
                stderr=collected["stderr"].decode("utf-8", "replace"),
                data=result.data,
            )
        return result

    async def upload(
        self, source: str, destination: str, *, directory: bool = False, max_size: int | None = None
    ) -> CommandResult:
        """Bring ``source`` (relative to the builder's directory on the worker) to ``destination``
        on the master, a path in its artifacts directory."""
        try:
            target = self._master_file(destination)
        except TransferError as exc:
            return self._transfer_refused(f"upload refused: {exc}")
        return await self._receive(source, target, directory=directory, max_size=max_size, keep=True)

    async def _receive(
        self,
        source: str,
        target: Path,
        *,
        directory: bool = False,
        max_size: int | None = None,
        log: str = "stdio",
        keep: bool = False,
    ) -> CommandResult:
        """Receive ``source`` at ``target``; ``keep``: list what arrived among the build's artifacts."""
        try:
            receiver = ReceiveFile(target, directory=directory, max_size=max_size)
        except TransferError as exc:
            return self._transfer_refused(f"upload refused: {exc}")
        command = "upload_directory" if directory else "upload_file"
        try:
            args = {"path": source, "max_size": max_size}
            result = await self.run_command(command, args, log=log, transfer=receiver)
            if result.rc == 0:
                self.log(log).header(f"uploaded {source}: {await receiver.finish(result)}")
                if keep:
                    self._keep_artifacts(target, receiver.stored)
        except TransferError as exc:
            return self._transfer_refused(f"upload failed: {exc}")
        finally:
            receiver.abort()
        return result

    def _keep_artifacts(self, target: Path, stored: list[StoredFile]) -> None:
        """Record the files an upload put at ``target`` as the running step's artifacts."""
        place = target.relative_to(self.services.artifacts_dir)
        files = [
            {
                "path": (place / name).as_posix() if name else place.as_posix(),
                "size": size,
                "sha256": digest,
                "mtime_ns": mtime,
            }
            for name, size, digest, mtime in stored
        ]
        self._record(
            self.services.store.steps.add_artifacts(self.ref, self._step_ref, files, time.time()), what="the artifacts"
        )

    def _master_file(self, path: str) -> Path:
        """Where a transfer's ``path`` is on the master (see :func:`~.transfers.master_file`)."""
        pipeline = self.services.pipeline
        own = own_files(pipeline, self.master_dir, self.services.db_url)
        return master_file(path, root=pipeline.artifacts, base=self.master_dir, own=own)

    def _transfer_refused(self, message: str) -> CommandResult:
        self.log().header(message)
        return CommandResult(None, "error", message)

    async def fetch(self, source: str, *, max_size: int = 64 * 1024 * 1024) -> bytes:
        with tempfile.TemporaryDirectory(prefix="flowbot-fetch-") as directory:
            target = Path(directory) / "file"
            # The master's own errand, not the step's output: noted in the step's header log.
            outcome = await self._receive(source, target, max_size=max_size, log="header")
            if outcome.rc != 0:
                raise TransferError(outcome.message or f"{source} could not be fetched")
            return target.read_bytes()

    def record_tests(self, cases: Iterable[TestCase]) -> None:
        if self._step_ref is None:
            raise RuntimeError("test results belong to a running step")
        cases = list(cases)
        self._step_tests.update(str(case.outcome) for case in cases)
        self._failed_tests += [case for case in cases if case.outcome in (Outcome.FAILED, Outcome.ERROR)]
        self._record(self.services.store.steps.add_test_results(self.ref, self._step_ref, cases), what="test results")

    def set_summary(self, text: str) -> None:
        self._step_own_summary = " ".join(str(text).split())

    def _summary_line(self) -> str:
        """The running step's summary: its attempt, a timeout, what it says of itself, its tests'
        counts, the output its logs did not keep."""
        parts = (
            self._step_retried,
            self._step_summary,
            self._step_own_summary,
            describe_tests(self._step_tests),
            *self._step_cut_logs,
        )
        return "; ".join(part for part in parts if part)

    async def download(self, source: str, destination: str, *, mode: int | None = None) -> CommandResult:
        """Send ``source``, a file in the master's artifacts directory, to ``destination``
        (relative to the builder's directory)."""
        try:
            sender, size, digest = await SendFile.open(self._master_file(source), self.services.spawn)
        except TransferError as exc:
            return self._transfer_refused(str(exc))
        args = {"path": destination, "size": size, "sha256": digest, "mode": mode}
        try:
            return await self.run_command("download_file", args, transfer=sender)
        except TransferError as exc:
            self.log().header(f"download failed: {exc}")
            return CommandResult(None, "error", str(exc))
        finally:
            sender.abort()

    async def trigger(
        self,
        schedulers: list[str],
        properties: dict[str, tuple[Any, str]],
        *,
        wait: bool,
        update_sourcestamp: bool = True,
    ) -> list[Result]:
        if self._interrupted:
            raise BuildStopped(self._interrupted)
        stamps = self._built_sourcestamps() if update_sourcestamp else self.request.sourcestamps
        return await self.stoppable(
            self.services.trigger(self, schedulers, stamps, self._hide_secrets(properties), wait=wait)
        )

    def _built_sourcestamps(self) -> tuple[SourceStamp, ...]:
        """The request's sourcestamps at the revisions the build checked out (``got_revision``).

        ``got_revision`` is ``{codebase: revision}``, or one revision, which is the only codebase's.
        """
        stamps = self.request.sourcestamps
        got = self.properties.get("got_revision")
        if isinstance(got, str) and len(stamps) == 1:
            got = {stamps[0].codebase: got}
        if not isinstance(got, dict):
            return stamps
        return tuple(dataclasses.replace(s, revision=got[s.codebase]) if got.get(s.codebase) else s for s in stamps)

    def _got_revision(self) -> str | None:
        """The revision the build checked out of its first codebase (its ``got_revision``), if known."""
        stamps = self._built_sourcestamps()
        if stamps:
            return stamps[0].revision if stamps[0].revision is not None else None
        got = self.properties.get("got_revision")  # a request without sources: one revision, or one codebase's
        if isinstance(got, dict) and len(got) == 1:
            got = next(iter(got.values()))
        return got if isinstance(got, str) and got else None

    async def wait_for_approval(self, approval: Approval) -> Decision | None:
        """Hold the build until a person decides about ``approval``, its worker and its builder's
        locks free for other builds meanwhile (the next step that needs a worker takes one again)."""
        await self.stoppable(self.started())  # people find it by its id
        if self.connection is not None:
            self.log().header(f"waiting for a decision; worker {self.worker} and the builder's locks are free")
            self.services.release_worker(self)
        decided = self.services.approvals.wait(self, approval)
        try:
            return await self.stoppable(asyncio.wait_for(asyncio.shield(decided), approval.timeout))
        except TimeoutError:
            self.log().header(f"no decision within {approval.timeout:g} s")
            return None
        finally:
            self.services.approvals.done(self)

    async def stoppable(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` so that stopping the build cancels it.

        Raises:
            BuildStopped: the build was stopped meanwhile.
        """
        waiting = self.services.spawn(_wait(awaitable), f"waiting in {self.builder} #{self.number}", watched=True)
        self._waiting = waiting
        try:
            return await waiting
        except asyncio.CancelledError:
            if self._interrupted:
                raise BuildStopped(self._interrupted) from None
            raise
        finally:
            self._waiting = None

    def _hide_secrets(self, properties: dict[str, tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
        """Properties for other builds (stored with their buildsets), without this build's secrets."""
        return {
            name: (secrets.redact_value(value, self._secrets), source) for name, (value, source) in properties.items()
        }

    # -- control ------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        """The running step was stopped (what it starts now would be withdrawn)."""
        return self._interrupted is not None

    def stop(self, reason: str, result: Result = Result.CANCELLED) -> None:
        """Stop the build: interrupt the running step, skip what is left but ``always_run`` steps,
        stop the builds it triggered; it ends as ``result``.

        People stopping a build get CANCELLED; a master shutting down uses RETRY, so the request
        runs again when it comes back. Stopping a stopped build interrupts the ``always_run`` step
        it is running (the next ones still run); it keeps the result of the first stop.
        """
        if self._interrupted or self.result is not None:
            return
        reason = reason or "stopped"
        if not self._stopped:
            self._stopped, self._stop_result = reason, result
        self._interrupted = reason
        log.info("stopping build %s #%d: %s", self.builder, self.number, reason)
        if self.connection is not None:
            for cmd_id in self._commands:
                self.connection.interrupt(cmd_id, reason, STOP_GRACE)
        if self._waiting is not None:
            self._waiting.cancel()
        if self.id is not None:
            # Builds it triggered are CANCELLED with it (RETRY when the master shuts down).
            children = Result.RETRY if result == Result.RETRY else Result.CANCELLED
            why = f"parent build {self.builder} #{self.number} stopped: {reason}"
            self.services.stop_children(self.id, why, children)

    # -- running --------------------------------------------------------------------------------

    def take_up(self, record: UnfinishedBuild, cmd_id: str, stored: dict[str, int]) -> None:
        """Go on with ``record``, a build that an earlier master ran on this build's worker, which still
        runs ``cmd_id``, the first command of the step that was running (``stored``: the bytes of each
        stream of its output in the store). The steps before keep their results, the build its
        properties, the step its log; :meth:`execute` then goes on with the step's :meth:`~Step.resume`
        and the steps after it."""
        running = record.running_step
        result, halted = self._restore(record, record.steps[:-1])
        self.current_step = running.number
        self._step_ref = Ref()
        self._step_ref.id = running.id
        self._log_lines = dict(record.log_lines)
        self._step_commands = 1
        self._commands[cmd_id] = None
        command = self.connection.adopt(cmd_id, _CommandOutput(self, self.log(), None), stored)
        self._resumption = _Resumption(running.number, result, halted, cmd_id, command)

    def take_up_between(self, record: UnfinishedBuild) -> None:
        """Go on with ``record``, a build that an earlier master ran on this build's worker, which
        runs none of its commands: every step it started has ended. :meth:`execute` goes on with
        the step after the last one."""
        result, halted = self._restore(record, record.steps)
        self._resumption = _Resumption(record.steps[-1].number + 1 if record.steps else 0, result, halted)

    def _restore(self, record: UnfinishedBuild, done: Iterable[UnfinishedStep]) -> tuple[Result, bool]:
        """Take ``record``'s id, start and properties; returns the build's result after the steps
        ``done``, and whether one of them halted it."""
        self.ref.id = record.id
        self.started_at = record.started_at
        self.locks_wait = record.locks_wait
        for name, (value, source) in record.properties.items():
            self.properties.set(name, value, source)
        self._stored_properties = self.properties.with_sources()
        self._start_write = asyncio.get_running_loop().create_future()
        self._start_write.set_result(None)
        result, halted = Result.SUCCESS, False
        for step in done:
            result, halt = combine(result, step.result, self.builder_config.steps[step.number])
            halted = halted or halt
        return result, halted

    async def execute(self) -> Result:
        """Run every step and queue the build's end; the worker is free again when this returns.

        Await :meth:`recorded` to know the build is in the store.
        """
        store = self.services.store
        if self._resumption is None:
            self.started_at = time.time()
            # Stored with the start: a step that sets none has no properties of its own to record.
            self._stored_properties = self.properties.with_sources()
            first_step = self._first_step()
            self._start_write = store.builds.start(
                self.request,
                self.number,
                self.worker,
                self.started_at,
                self.services.name,
                self.ref,
                self.attempt,
                properties=self._stored_properties,
                first_step=first_step,
            )
            self._record(
                self._start_write, lambda: (EventKind.BUILD_STARTED, {"build": build_event_json(self.summary())})
            )
            if first_step is not None:  # its start is that write's too
                self._record(self._start_write, self._step_started_event(first_step.number, first_step.name))
                self._step_write = self._start_write
            self._unannounced = []
            store.then(self._start_write, self._announce_held_lines)
        max_time = self.builder_config.max_time
        timer = None
        if max_time is not None:
            left = max(0.0, self.started_at + max_time - time.time())  # a build taken up counts from its start
            timer = asyncio.get_running_loop().call_later(left, self._out_of_time, max_time)
        try:
            result = await self._run_steps()
        except Exception:  # a bug in the master must still end the build, visibly
            log.exception("build %s #%d failed inside the master", self.builder, self.number)
            result = Result.EXCEPTION
        finally:
            if timer is not None:
                timer.cancel()
        if self._stopped:
            result = self._stop_result
        elif self.connection is not None and self.connection.lost:
            result = Result.RETRY
            self._build_failure = _merged(self._build_failure, Failure(lost_worker=True))
        self.finished_at = time.time()
        if self.revision is None:  # a build of "whatever is newest" built what it checked out
            self.revision = self._got_revision()
        if self._timed_out:
            summary = f"timed out: {self._stopped}"
        elif self._stopped:
            summary = f"stopped: {self._stopped}"
        else:
            result, summary = self._retried(result)
        self.result = result
        last_step, self._step_end = self._step_end, None
        properties = self.properties.with_sources()
        self._finish_write = store.builds.finish(
            self.ref,
            self.request,
            result,
            self.finished_at,
            summary,
            revision=self.revision,
            properties=properties if properties != self._stored_properties else None,  # None: as stored
            locks_wait=self.locks_wait,
            then=[
                dataclasses.replace(spec, properties=self._hide_secrets(spec.properties))
                for spec in self.services.downstream(self, result)
            ],
            final=self._final,
            last_step=last_step[0] if last_step is not None else None,
        )
        if last_step is not None:  # its end is that write's too, and is announced first
            self._record(self._finish_write, last_step[1])
        store.then(self._finish_write, self._ended_as_recorded)
        store.then(self._finish_write, self._downstream_stored)
        self._record(
            self._finish_write, lambda: (EventKind.BUILD_FINISHED, {"build": build_event_json(self.summary())})
        )
        return result

    def _retried(self, result: Result) -> tuple[Result, str]:
        """The build's result and summary under its builder's ``Retry``: a failure it retries ends
        as RETRY (the request runs again); a lost worker, past the attempts it allows, does not."""
        retry = self.builder_config.retry
        if retry is None or result not in (Result.FAILURE, Result.RETRY):
            return result, ""
        which = f"attempt {self.attempt} of {retry.attempts}"
        if result == Result.RETRY:
            if not retry.lost_worker:
                return result, ""
            if self.attempt < retry.attempts:
                return result, f"{which}: the worker was lost; it runs again"
            return Result.EXCEPTION, f"the worker was lost on {which}; not tried again"
        why = retry.matches(self._build_failure)
        if why is None:
            return result, ""
        if self.attempt >= retry.attempts:
            return result, f"{why} on {which}; not tried again"
        return Result.RETRY, f"{which} failed ({why}); it runs again"

    def _out_of_time(self, max_time: float) -> None:
        """The builder's ``max_time`` is up: stop the build as a FAILURE (its cleanup steps still run)."""
        self._timed_out = not self._stopped
        self.stop(f"the build ran longer than its max_time of {max_time:g} s", Result.FAILURE)

    def _downstream_stored(self, finished: asyncio.Future) -> None:
        if not finished.cancelled() and finished.exception() is None and finished.result():
            self.services.enqueue(finished.result())

    async def started(self) -> None:
        """Wait until the build's start is in the store (so it has an id others may refer to)."""
        await asyncio.shield(self._start_write)

    async def recorded(self) -> BaseException | None:
        """Wait until every write about the build is done; returns why its start or end could not
        be stored (NotFound: its request was no longer pending), or None once both are.

        Another write that fails (a log chunk, test results) loses what it carried and is logged;
        the build is recorded all the same.
        """
        if self._writes:
            if self._all_written is None or self._all_written.done():
                self._all_written = asyncio.get_running_loop().create_future()
            await self._all_written
        return self._start_write.exception() or self._finish_write.exception()

    async def _run_steps(self) -> Result:
        result, halted, first = Result.SUCCESS, False, 0
        if self._resumption is not None:
            result, halted, first = self._resumption.result, self._resumption.halted, self._resumption.step
            if self._resumption.command is None:  # taken up between two steps: the next one starts afresh
                self._resumption = None
        for index, step in steps_to_run(self.builder_config.steps, self.request):
            if index < first:
                continue
            if (halted or self._stopped) and not step.always_run:
                continue
            self._interrupted = None  # a cleanup step runs until it ends or is stopped itself
            step_result = await self._run_step(index, step)
            result, halt = combine(result, step_result, step)
            halted = halted or halt
        return result

    async def _run_step(self, index: int, step: Step) -> Result:
        store = self.services.store
        name = self.builder_config.step_names[index]
        self._step_summary = self._step_own_summary = self._step_retried = ""
        self._step_tests = Counter()
        self._step_cut_logs = []
        resumption, self._resumption = self._resumption, None
        if resumption is None:
            self._record_step_end()
            self.current_step, self._step_commands = index, 0
            if self._first_step_recorded != index:
                self._step_ref = Ref()
                self._step_write = store.steps.start(self.ref, index, name, time.time(), self._step_ref)
                self._record(
                    self._step_write, self._step_started_event(index, name), what=f"the start of step {name!r}"
                )
            self._first_step_recorded = None
        step_ref = self._step_ref
        attempt, delay = 1, 0.0
        while True:
            result = await self._attempt(index, name, step, resumption, delay)
            resumption = None
            await self._end_started_commands()
            failure = self._attempt_failure(result)
            why = await self._retry_why(step.retry, attempt, result, failure)
            if why is None:
                break
            self._next_attempt(step.retry, attempt, result, why)
            attempt, delay = attempt + 1, step.retry.delay
        if result in (Result.FAILURE, Result.EXCEPTION, Result.RETRY):
            self._build_failure = _merged(self._build_failure, failure)
        stdio = self.log()
        hidden = self._hidden(step, result, stdio)
        self._close_logs()
        summary = self._summary_line()
        # Recorded with the next write of the build, in this same turn: the next step's start, or
        # the build's end.
        self._step_end = (
            StepEnd(step_ref, result, time.time(), summary, hidden, attempt),
            lambda: (
                EventKind.STEP_FINISHED,
                {
                    "build_id": self.id,
                    "builder": self.builder,
                    "step": index,
                    "name": name,
                    "result": result.name,
                    "hidden": hidden,
                    "summary": summary,
                    "attempts": attempt,
                },
            ),
            name,
        )
        self.current_step = None
        return result

    def _first_step(self) -> StepStart | None:
        """The start of the first step the build runs, to record with the build's start."""
        for index, step in steps_to_run(self.builder_config.steps, self.request):
            if self._stopped and not step.always_run:
                continue
            self._step_ref = Ref()
            self._first_step_recorded = index
            return StepStart(index, self.builder_config.step_names[index], self.started_at, self._step_ref)
        return None

    def _step_started_event(self, index: int, name: str) -> Callable[[], tuple[EventKind, dict]]:
        return lambda: (
            EventKind.STEP_STARTED,
            {"build_id": self.id, "builder": self.builder, "step": index, "name": name},
        )

    def _record_step_end(self) -> None:
        """Record the end of the step that ran last, and the properties it left if they changed
        (for a master that may take the build up after a restart). The build's end records both
        itself."""
        if self._step_end is None:
            return
        (end, event, name), self._step_end = self._step_end, None
        store = self.services.store
        self._record(store.steps.end(end), event, what=f"the end of step {name!r}")
        properties = self.properties.with_sources()
        if properties != self._stored_properties:
            self._stored_properties = properties
            self._record(store.builds.set_properties(self.ref, properties), what="the build's properties")

    async def _attempt(
        self, index: int, name: str, step: Step, resumption: _Resumption | None, delay: float = 0.0
    ) -> Result:
        """Run ``step`` once, after ``delay`` seconds (or go on with it, taken up after a restart),
        and say how it went."""
        self._exit_codes, self._failed_tests = set(), []
        self._patterns = PatternWatch(step.retry) if step.retry is not None and step.retry.patterns else None
        stdio = self.log()
        try:
            if delay:
                stdio.header(f"waiting {delay:g} s first")
                await self.stoppable(asyncio.sleep(delay))
            if self.connection is None and step.needs_worker:
                await self._take_worker(stdio)
            if self.connection is not None and self.connection.lost:
                raise WorkerLost(f"worker {self.worker} is not connected")
            if resumption is not None:
                stdio.header("the master restarted; this step's command went on running on the worker, and is taken up")
                command = self._start(resumption.cmd_id, self._taken_up(resumption))
                return await self._run_locked(index, step, stdio, lambda: step.resume(self, command), held=True)
            if not step.should_run(self):
                stdio.header("skipped: its do_step_if is false")
                return Result.SKIPPED
            return await self._run_locked(index, step, stdio, lambda: step.run(self))
        except WorkerLost as exc:
            stdio.header(f"{exc}; the build will be retried" if not _retries_lost(step.retry) else str(exc))
            return Result.RETRY
        except BuildStopped as exc:
            stdio.header(f"build stopped: {exc}")
            return self._stop_result
        except FlowbotError as exc:  # a problem flowbot names (a bad value, a missing property): its words say it
            kind = "configuration error" if isinstance(exc, ConfigError) else "error"
            stdio.header(f"{kind}: {self._redact(str(exc))}")
            log.warning("step %r of %s #%d: %s: %s", name, self.builder, self.number, kind, self._redact(str(exc)))
            return Result.EXCEPTION
        except Exception as exc:
            stdio.header(
                "step raised an exception:\n" + self._redact("".join(traceback.format_exception(exc))).rstrip()
            )
            log.warning("step %r of %s #%d raised %s", name, self.builder, self.number, self._redact(repr(exc)))
            return Result.EXCEPTION

    def _attempt_failure(self, result: Result) -> Failure:
        """What the attempt that just ended showed (its exit codes, the patterns found, a lost worker)."""
        found: frozenset[str] = frozenset()
        if self._patterns is not None:
            self._patterns.end()
            found = frozenset(self._patterns.found)
        lost = result == Result.RETRY and self.connection is not None and self.connection.lost
        return Failure(frozenset(self._exit_codes), found, lost)

    async def _retry_why(self, retry: Retry | None, attempt: int, result: Result, failure: Failure) -> str | None:
        """Why the step's attempt that ended as ``result`` is tried again, or None: it is not."""
        if retry is None or attempt >= retry.attempts or self._stopped:
            return None
        if result == Result.RETRY:
            return "the worker was lost" if retry.lost_worker and failure.lost_worker else None
        if result != Result.FAILURE:
            return None
        why = retry.matches(failure)
        if why is None and retry.when == FLAKY and self._failed_tests:
            why = await self._all_flaky(self._failed_tests)
        return why

    async def _all_flaky(self, failed: list[TestCase]) -> str | None:
        """Why every test in ``failed`` is worth another run (each one is flaky by the builder's
        stored history), or None when one of them is not."""
        try:  # on a thread: the first look at the history loads pandas
            frame = await asyncio.to_thread(lambda: self.services.history.flaky_tests(builder=self.builder))
        except (FlowbotError, OSError, SQLAlchemyError) as exc:  # no answer is no reason to run the step again
            self.log().header(f"could not tell whether the failing tests are flaky: {exc}")
            return None
        flaky = set(zip(frame["suite"], frame["classname"], frame["name"], strict=True))
        names = sorted({case.name for case in failed})
        if any((case.suite, case.classname, case.name) not in flaky for case in failed):
            return None
        shown = ", ".join(names[:5]) + ("..." if len(names) > 5 else "")
        return f"{len(names)} failing test(s) known to be flaky: {shown}"

    def _next_attempt(self, retry: Retry, attempt: int, result: Result, why: str) -> None:
        """End attempt ``attempt`` of the step: its logs are kept as ``NAME (attempt N)``, and the
        step's summary says it ran again and why."""
        note = f"attempt {attempt} of {retry.attempts} ended {result.name} ({why}); trying again"
        self.log().header(note)
        names = {name: f"{name} (attempt {attempt})" for name in self._close_logs()}
        self._record(self.services.store.logs.rename(self._step_ref, names), what="the logs of an earlier attempt")
        self._step_summary = ""
        self._step_tests = Counter()
        self._step_retried = f"attempt {attempt + 1} of {retry.attempts}: {result.name} before ({why})"
        if self.connection is not None and self.connection.lost:
            self.services.release_worker(self)
        self.log().header(f"attempt {attempt + 1} of {retry.attempts}")

    def _close_logs(self) -> list[str]:
        """Close the running step's logs (their last lines are on their way to the store), noting
        any cut at its limit in the step's summary; returns their names."""
        names = list(self._logs)
        for step_log in self._logs.values():
            step_log.close()
            for write in step_log.writes:
                self._record(write)  # a failed one is logged by the log itself
            if step_log.dropped:
                self._step_cut_logs.append(
                    f"log {step_log.name} cut at {size(step_log.limit)}: {size(step_log.dropped)} not stored"
                )
        self._logs.clear()
        self._log_lines = {}
        return names

    async def _take_worker(self, stdio: LogWriter) -> None:
        """Take a worker of the builder again (the build went on without one), waiting until one
        is free with the builder's locks."""
        stdio.header("waiting for a worker")
        started = time.monotonic()
        await self.stoppable(self.services.worker_for(self))
        stdio.header(f"running on worker {self.worker} (waited {time.monotonic() - started:.2f} s)")

    def moved_to(self, connection: WorkerConnection) -> None:
        """Go on on ``connection`` (the dispatcher gave the build a worker again)."""
        self.connection = connection
        if connection.name != self.worker:
            self.worker = connection.name
            self._env["FLOWBOT_WORKER"] = connection.name
            self.properties.set("workername", connection.name, "Build")
            self._record(self.services.store.builds.moved(self.ref, connection.name), what="the build's new worker")

    async def _run_locked(
        self, index: int, step: Step, stdio: LogWriter, run: Callable[[], Awaitable[Result]], *, held: bool = False
    ) -> Result:
        """``run`` step ``index`` holding its locks (waiting for them, stoppably, if they are busy;
        ``held``: taken already, for a step taken up after a restart)."""
        if step.locks:
            owner = step_lock_owner(self.request.id, index)
            if not held:
                waited = await self.stoppable(self.services.locks.acquire(step.locks, self.worker, owner))
                self.locks_wait += waited
                if waited >= 0.01:
                    stdio.header(f"waited {waited:.2f} s for locks {', '.join(map(repr, step.locks))}")
            try:
                return await self._checked(step, run)
            finally:
                self.services.locks.release(owner)
                self.services.schedule()  # a build may be waiting for these locks to start
        return await self._checked(step, run)

    async def _checked(self, step: Step, run: Callable[[], Awaitable[Result]]) -> Result:
        result = await run()
        if not isinstance(result, Result):
            raise TypeError(f"{type(step).__name__}.run returned {result!r}, not a Result")
        return result

    async def _end_started_commands(self) -> None:
        """Interrupt the commands the step started and left running, and wait for them to end:
        a command never outlives its step."""
        if not self._started:  # the usual step, on every build's path
            return
        started, self._started = self._started, []
        for command in started:
            command.interrupt("its step ended")
        await asyncio.gather(*(command.task for command in started), return_exceptions=True)

    def _hidden(self, step: Step, result: Result, stdio: LogWriter) -> bool:
        try:
            return step.hidden(result, self)
        except Exception as exc:
            stdio.header(f"hide_step_if raised {exc!r}; the step stays visible")
            return False

    def _record(
        self,
        write: asyncio.Future,
        event: Callable[[], tuple[EventKind, dict]] | None = None,
        *,
        what: str | None = None,
    ) -> None:
        """Track a queued write; once it commits, emit the event that announces it (as the store
        resolves it, in the order of the writes).

        A failed write is logged as ``what`` failing, unless the build's start failed (then every
        write after it does; :meth:`recorded` says why). The build's start and end pass no ``what``:
        their failure is what :meth:`recorded` returns.
        """
        self._writes.add(write)

        def done(future: asyncio.Future) -> None:
            self._writes.discard(future)
            if not self._writes and self._all_written is not None and not self._all_written.done():
                self._all_written.set_result(None)
            if future.cancelled():
                return
            failure = future.exception()
            if failure is not None and what is not None and not self._start_failed():
                log.error("build %s #%d: %s could not be stored: %s", self.builder, self.number, what, failure)
            elif failure is None and event is not None:
                kind, fields = event()
                self.services.events.emit(kind, **fields)

        self.services.store.then(write, done)

    def _announce_held_lines(self, start: asyncio.Future) -> None:
        """Emit the live lines that came before the build had an id (none if its start failed)."""
        held, self._unannounced = self._unannounced or [], None
        if start.cancelled() or start.exception() is not None:
            return
        for fields in held:
            self.services.events.emit(EventKind.LOG, build_id=self.id, **fields)

    def _start_failed(self) -> bool:
        return self._start_write.done() and self._start_write.exception() is not None

    def summary(self) -> Build:
        """The build as it stands now (its events carry it)."""
        return Build(
            id=self.id,
            builder=self.builder,
            number=self.number,
            worker=self.worker,
            branch=self.branch,
            revision=self.revision,
            request_id=self.request.id,
            submitted_at=self.request.submitted_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            result=self.result,
            attempt=self.attempt,
        )


class _CommandOutput:
    """Where a command's output goes: its step's log (or, for a ``log:NAME`` stream, the step's
    log NAME), and, for a step that collects it, a copy (implements
    :class:`~flowbot.master.registry.OutputSink`)."""

    def __init__(self, build: RunningBuild, log: LogWriter, collected: dict[str, bytearray] | None):
        self._build = build
        self._log = log
        self._collected = collected
        self._logs = {log.name: log}  # those the command wrote to

    def write(self, stream: str, data: bytes) -> tuple[int, asyncio.Future[None] | None]:
        if stream.startswith("log:"):  # a file the command writes, shown as its own log
            log = self._logs[stream[4:]] = self._build.log(stream[4:])
            stream = "stdout"
        else:
            log, collected = self._log, self._collected
            if collected is not None and stream in collected and len(collected[stream]) < MAX_COLLECTED:
                collected[stream] += data
            if self._build._patterns is not None:
                self._build._patterns.feed(data)
        settled = log.output(stream, data)
        return log.unfinished(stream), settled

    def end(self) -> asyncio.Future[None] | None:
        waits = [settled for log in self._logs.values() if (settled := log.end_lines()) is not None]
        if len(waits) > 1:
            return asyncio.gather(*waits)
        return waits[0] if waits else None


class _StartedCommand:
    """A command a step started with ``start_command`` (implements
    :class:`~flowbot.steps.base.StartedCommand`)."""

    def __init__(self, build: RunningBuild, cmd_id: str, task: asyncio.Future[CommandResult]):
        self._build = build
        self.cmd_id = cmd_id
        self.task = task

    def interrupt(self, reason: str = "interrupted") -> None:
        self._build._interrupt_command(self.cmd_id, reason)

    def __await__(self) -> Generator[Any, None, CommandResult]:
        return self.task.__await__()


def _retries_lost(retry: Retry | None) -> bool:
    return retry is not None and retry.lost_worker


def _merged(one: Failure, other: Failure) -> Failure:
    lost = one.lost_worker or other.lost_worker
    return Failure(one.exit_codes | other.exit_codes, one.patterns | other.patterns, lost)


async def _wait(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _describe(name: str, args: dict[str, Any]) -> str:
    """The header line of a command, as a person would type it."""
    command = args.get("command")
    if isinstance(command, list):
        command = shlex.join(command)
    elif command is None and "path" in args:
        command = args["path"]
    where = f" in {args['builddir']}/{args.get('workdir') or '.'}"
    return f"{name}: {command}{where}" if command is not None else f"{name}{where}"


def _ending(result: CommandResult) -> str:
    if result.rc is None:
        return f"command did not run ({result.reason or 'error'})"
    how = f"killed by signal {-result.rc}" if result.rc < 0 else f"exit code {result.rc}"
    return f"program finished with {how}, elapsed {result.elapsed:.3f} s"
