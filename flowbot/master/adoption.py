"""Taking up, after a restart, the builds a master was running when it was killed.

Their workers go on running their commands meanwhile. The restarted master finds those builds
recorded as running and holds them, with their locks, for the resume window (from when it
listens, as long as it holds a silent worker's builds, so a worker that does not come back has
stopped its commands by the end of it): their requests are not queued again. A worker that comes back
within it still holding the command its build's step was running gets the build back: the
master rebuilds it from the store (the steps done and their results, the properties they set,
the step in progress and its log) and it goes on from that command, which the step takes up
(:meth:`Step.resume <flowbot.steps.base.Step.resume>`), to the steps after it. No step runs
twice, and the log goes on from the output the master has stored. A build recorded between
two steps (the last one's end stored, the next one's start not) goes on with the next step once
its worker is back running none of its commands: a step's commands go out only once its start is
stored, so the worker has not begun the next one.

A build that cannot be taken up ends as RETRY and its request runs again, as before: its worker
does not come back within the window, or comes back without that command (it restarted, or the
step was between commands); its builder is no longer in the pipeline; or its step cannot resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..records import UnfinishedBuild
from .build import command_id, commands_of, step_lock_owner
from .logs import STREAM_TAGS
from .registry import WorkerConnection

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..store import Store
    from .dispatch import Dispatcher
    from .services import BuildFactory
    from .tasks import Spawn

log = logging.getLogger(__name__)


class Adoption:
    """The builds recorded as running when the master started, until their workers take them up.

    Args:
        pipeline: the pipeline running now (the builders of the builds held).
        store: the store (once open), where the builds left running are recorded.
        dispatcher: runs a build taken up, with its locks; queues the request of one that is not.
        new_build: makes a build to take up.
        spawn: runs the end of a build that cannot be taken up as a task the master owns.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        store: Callable[[], Store],
        dispatcher: Dispatcher,
        new_build: BuildFactory,
        spawn: Spawn,
    ):
        self._pipeline = pipeline
        self._store = store
        self._dispatcher = dispatcher
        self._spawn = spawn
        self._new_build = new_build
        #: The builds held, by request id.
        self.held: dict[int, UnfinishedBuild] = {}
        #: Lines of each stream tag the store holds of the log of each held build's running step.
        self._stored: dict[int, dict[str, int]] = {}
        self._retrying = 0
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        """Whether builds are held, or their ends as RETRY on their way to the store."""
        return bool(self.held) or self._retrying > 0

    async def load(self, window: float) -> None:
        """Find the builds left running: hold those that may be taken up (their requests are then
        not pending for the queue), and end the others as RETRY (their requests are)."""
        left = await self._store().builds.unfinished()
        if left:
            log.warning("%d build(s) were running when the master stopped", len(left))
        for record in left:
            why = self._cannot_hold(record)
            if why is None and not self._reserve(record):
                why = "its locks are taken"
            if why is None:
                self.held[record.request.id] = record
                if record.running_step is not None:
                    self._stored[record.request.id] = await self._store().logs.stream_lines(
                        record.id, record.running_step.number
                    )
                log.info(
                    "build %s #%d waits %g s for its worker to take it up",
                    record.request.builder,
                    record.number,
                    window,
                )
            else:
                await self._end(record, why)

    def start(self, window: float) -> None:
        """Begin the resume window (once the worker socket listens)."""
        if self.held:
            self._expiry = asyncio.get_running_loop().call_later(window, self._expire, window)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    def _cannot_hold(self, record: UnfinishedBuild) -> str | None:
        """Why ``record`` cannot be taken up whatever its worker holds, or None."""
        if record.request is None:
            return "its request is no longer pending"
        builder = self._pipeline().builder(record.request.builder)
        if builder is None:
            return f"builder {record.request.builder!r} is no longer in the pipeline"
        step = record.running_step
        if step is None and any(s.result is None for s in record.steps):
            return "its record shows more than one step running"
        if any(s.number >= len(builder.steps) or builder.step_names[s.number] != s.name for s in record.steps):
            return "the builder's steps changed"
        if step is not None and not builder.steps[step.number].resumable:
            return f"its step {step.name!r} ({type(builder.steps[step.number]).__name__}) cannot be resumed"
        return None

    def _reserve(self, record: UnfinishedBuild) -> bool:
        """Take the locks ``record`` held (its builder's, its running step's), as its build will."""
        builder = self._pipeline().builder(record.request.builder)
        locks = self._dispatcher.locks
        if not locks.try_acquire(builder.locks, record.worker, record.request.id):
            return False
        if record.running_step is None:
            return True
        step = builder.steps[record.running_step.number]
        if not locks.try_acquire(step.locks, record.worker, self._step_owner(record)):
            locks.release(record.request.id)
            return False
        return True

    def _release(self, record: UnfinishedBuild) -> None:
        locks = self._dispatcher.locks
        locks.release(record.request.id)
        if record.running_step is not None:
            locks.release(self._step_owner(record))

    @staticmethod
    def _step_owner(record: UnfinishedBuild) -> tuple[int, int]:
        return step_lock_owner(record.request.id, record.running_step.number)

    # -- a worker comes back ----------------------------------------------------------------------

    def returned(self, connection: WorkerConnection, held: dict[str, Any]) -> None:
        """A worker connected, holding ``held`` (what its hello says): take up the builds it still
        runs, and retry those of its builds it no longer does (called before it is welcomed)."""
        lost = []
        for record in [r for r in self.held.values() if r.worker == connection.name]:
            del self.held[record.request.id]
            if record.running_step is None:
                cmd_id = None
                why = self._running_any(record, held)
            else:
                cmd_id = command_id(record.request.id, record.number, record.running_step.number, 1)
                why = self._not_running(record, cmd_id, held)
            if why is None:
                try:
                    if cmd_id is None:
                        self._take_up_between(record, connection)
                    else:
                        self._take_up(record, connection, cmd_id, held[cmd_id])
                    continue
                except Exception as exc:  # a bug here must not keep the worker out, nor lose the request
                    log.exception("build %s #%d could not be taken up", record.request.builder, record.number)
                    if cmd_id is not None:
                        connection.commands.pop(cmd_id, None)
                    why = f"taking it up failed: {exc!r}"
            self._release(record)
            lost.append((record, why))
        for record, why in lost:
            self._retry(record, why)

    @staticmethod
    def _others(record: UnfinishedBuild, cmd_id: str | None, held: dict[str, Any]) -> list[str]:
        """The commands of ``record`` in ``held`` but ``cmd_id`` that may still matter: all but those
        of steps that ended and finished on the worker."""
        of_build = commands_of(record.request.id, record.number)
        ended = [s.number for s in record.steps if s.result is not None]
        done_before = tuple(f"{of_build}s{n}." for n in ended)
        # A command of an earlier step that finished is one whose result the store has (the build went on
        # past it): its worker holds it only for want of the acknowledgement the master died before sending.
        return [
            c
            for c, state in held.items()
            if c.startswith(of_build)
            and c != cmd_id
            and not (c.startswith(done_before) and isinstance(state, dict) and state.get("finished") is True)
        ]

    @classmethod
    def _running_any(cls, record: UnfinishedBuild, held: dict[str, Any]) -> str | None:
        """Why the worker's ``held`` commands do not let ``record``, between two steps, go on with
        the next one, or None."""
        others = cls._others(record, None, held)
        return f"its worker holds commands of a step not recorded ({', '.join(sorted(others))})" if others else None

    @classmethod
    def _not_running(cls, record: UnfinishedBuild, cmd_id: str, held: dict[str, Any]) -> str | None:
        """Why the worker's ``held`` commands do not let ``record`` go on from ``cmd_id``, or None."""
        others = cls._others(record, cmd_id, held)
        if others:
            return f"its step had started other commands ({', '.join(sorted(others))})"
        state = held.get(cmd_id)
        offsets = state.get("offsets") if isinstance(state, dict) else None
        if not isinstance(offsets, dict):
            return "its worker came back without the command its step was running"
        if not all(isinstance(o, list) and len(o) == 2 and all(type(n) is int for n in o) for o in offsets.values()):
            return "its worker reported that command's output in a form it does not understand"
        return None

    def _take_up(
        self, record: UnfinishedBuild, connection: WorkerConnection, cmd_id: str, state: dict[str, Any]
    ) -> None:
        builder = self._pipeline().builder(record.request.builder)
        build = self._new_build(builder, record.request, connection, record.number)
        # The master acknowledged each byte once it was stored, so what the worker holds is what the
        # log lacks, but for lines stored in the moment before the master died, unacknowledged.
        build.take_up(record, cmd_id, {stream: acked for stream, (acked, _) in state["offsets"].items()})
        connection.commands[cmd_id].stored_lines = self._stored_again(record, state.get("lines"))
        log.info(
            "build %s #%d taken up: worker %s still runs step %r",
            build.builder,
            build.number,
            connection.name,
            record.running_step.name,
        )
        self._dispatcher.adopt(build)

    def _take_up_between(self, record: UnfinishedBuild, connection: WorkerConnection) -> None:
        builder = self._pipeline().builder(record.request.builder)
        build = self._new_build(builder, record.request, connection, record.number)
        build.take_up_between(record)
        log.info(
            "build %s #%d taken up between two steps: worker %s goes on with the next one",
            build.builder,
            build.number,
            connection.name,
        )
        self._dispatcher.adopt(build)

    def _stored_again(self, record: UnfinishedBuild, lines: Any) -> dict[str, int]:
        """Per stream, the lines the store holds beyond those the worker counts as acknowledged
        (``lines``, from its hello); none for a stream whose count the worker could not keep."""
        stored = self._stored.pop(record.request.id, {})
        again = {}
        for stream in ("stdout", "stderr"):  # a step's own lines are headers
            tag = STREAM_TAGS[stream]
            acked = lines.get(stream) if isinstance(lines, dict) else None
            if type(acked) is int and stored.get(tag, 0) > acked:
                again[stream] = stored[tag] - acked
        return again

    # -- the window closes ------------------------------------------------------------------------

    def _expire(self, window: float) -> None:
        self._expiry = None
        records, self.held = list(self.held.values()), {}
        for record in records:
            self._release(record)
            self._retry(record, f"its worker did not come back within {window:g} s")

    def _retry(self, record: UnfinishedBuild, why: str) -> None:
        """End ``record`` as RETRY, then queue its request again."""
        self._retrying += 1
        self._spawn(self._end(record, why, queue=True), f"retry build {record.request.builder} #{record.number}")

    async def _end(self, record: UnfinishedBuild, why: str, *, queue: bool = False) -> None:
        """End ``record`` as RETRY in the store (``queue``: then queue its request again)."""
        name = record.request.builder if record.request is not None else "?"
        log.warning("build %s #%d was running when the master stopped and ends as RETRY: %s", name, record.number, why)
        dispatcher = self._dispatcher
        try:
            await self._store().builds.retry([record.id], time.time(), f"master restarted: {why}")
            if queue and record.request is not None:
                dispatcher.queue.add(record.request)
                dispatcher.schedule()
        finally:
            if queue:
                self._retrying -= 1
                dispatcher.update_idle()
