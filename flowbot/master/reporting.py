"""Running the pipeline's reporters off the build path.

The master's events say when a build's start or end is committed; :class:`Reporting` takes them
in order on one queue, turns each into a :class:`~flowbot.reporters.Build` (reading what the
interested reporters need from the store: reason, sources, and for finished builds the previous
result, the steps and a log tail), and hands it to each interested reporter's own queue. Each
reporter's worker delivers its reports in order, retrying a failed one with exponential back-off,
then logging it and moving on. Queues are bounded: a dead endpoint loses its oldest reports, the
master never grows without limit, and a build never waits for a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import secrets
from ..defaults import REPORT_BACKOFF_MAX, REPORT_DRAIN, REPORT_FAILED_TESTS, REPORT_LOG_LINES, REPORT_QUEUE
from ..errors import FlowbotError, ReportRejected
from ..record_json import build_from_json
from ..records import Artifact, Build
from ..reporters.base import Reporter
from ..results import Result
from .controls import artifact_url, build_record
from .events import EventKind

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..reporters.controls import Controls
    from ..store import Store
    from .events import EventBus
    from .tasks import Spawn

log = logging.getLogger(__name__)

_FAILED = {Result.FAILURE, Result.EXCEPTION, Result.CANCELLED, Result.RETRY}


class Reporting:
    """The master's reporters, each fed through its own queue.

    Args:
        pipeline: the pipeline running now (its reporters and secrets).
        store: the store (once open), which reports are read from.
        events: the master's events, which say when a build starts and ends.
        spawn: runs the reporters' queues as tasks the master owns.
        page: where the master's page is served, if it is (reports link to it).
        controls: what the chat bots among the reporters may do.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        store: Callable[[], Store],
        events: EventBus,
        spawn: Spawn,
        page: Callable[[], str | None],
        controls: Controls,
    ):
        self._pipeline = pipeline
        self._store = store
        self._bus = events
        self._spawn = spawn
        self._page = page
        self.reporters: list[Reporter] = []
        #: Reports delivered, failed (given up or refused) and dropped (queue full), by reporter name.
        self.delivered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues: dict[int, asyncio.Queue[tuple[str, Build]]] = {}
        self._delivering: dict[int, asyncio.Task] = {}
        self._serving: dict[int, asyncio.Task] = {}
        self._controls = controls
        self._retiring: set[asyncio.Task] = set()
        self._preparing: asyncio.Task | None = None
        self._unsubscribe: Any = None

    def start(self) -> None:
        """Start reporting with the pipeline's reporters."""
        self.use(self._pipeline().reporters)

    def use(self, reporters: Iterable[Reporter]) -> None:
        """Report with ``reporters`` from now on (at a reconfigure).

        New ones get every build that starts or ends from now on. Ones no longer listed get no new
        builds: they deliver what they have queued (for a few seconds at most) and are closed. A
        reporter listed again (the same object) carries on undisturbed.
        """
        reporters = list(reporters)
        listed = {id(r) for r in reporters}
        until = asyncio.get_running_loop().time() + REPORT_DRAIN
        for reporter in self.reporters:
            if id(reporter) not in listed:
                task = self._spawn(self._retire(reporter, until), f"retiring reporter {reporter}")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        for reporter in reporters:
            if id(reporter) not in self._queues:
                reporter.use_secrets(self._secret)
                queue: asyncio.Queue[tuple[str, Build]] = asyncio.Queue(REPORT_QUEUE)
                self._queues[id(reporter)] = queue
                self._delivering[id(reporter)] = self._spawn(
                    self._deliver_loop(reporter, queue), f"reporter {reporter}"
                )
                if type(reporter).serve is not Reporter.serve:
                    self._serving[id(reporter)] = self._spawn(
                        reporter.serve(self._controls), f"reporter {reporter} serving"
                    )
        self.reporters = reporters
        if reporters and self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(
                self._events.put_nowait, (EventKind.BUILD_STARTED, EventKind.BUILD_FINISHED)
            )
            self._preparing = self._spawn(self._prepare_loop(), "reporting")

    async def stop(self) -> None:
        """Give queued reports a few seconds to go out, then stop every reporter."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        until = asyncio.get_running_loop().time() + REPORT_DRAIN
        if self._preparing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), REPORT_DRAIN)
            self._preparing.cancel()
            await asyncio.gather(self._preparing, return_exceptions=True)
            self._preparing = None
        for reporter in self.reporters:
            self._retiring.add(self._spawn(self._retire(reporter, until), f"retiring reporter {reporter}"))
        self.reporters = []
        await asyncio.gather(*self._retiring)

    async def _retire(self, reporter: Reporter, until: float) -> None:
        """Let ``reporter`` deliver what it has queued until ``until`` (loop time), then close it."""
        queue = self._queues.pop(id(reporter))
        delivering = self._delivering.pop(id(reporter))
        try:
            await asyncio.wait_for(queue.join(), max(0.0, until - asyncio.get_running_loop().time()))
        except TimeoutError:
            log.warning("reporter %s stopped with %d report(s) undelivered", reporter.name, queue.qsize())
        serving = self._serving.pop(id(reporter), None)
        for task in (delivering, serving):
            if task is not None:
                task.cancel()
        await asyncio.gather(delivering, *([serving] if serving else []), return_exceptions=True)
        try:
            await reporter.close()
        except Exception:
            log.exception("reporter %s failed to close", reporter.name)

    def _secret(self, name: str) -> str:
        # The pipeline running now: a reconfigure may bring other secret providers.
        return secrets.lookup(self._pipeline().secrets, name)

    # -- from events to reports -------------------------------------------------------------------

    async def _prepare_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._dispatch(event)
            except FlowbotError as exc:
                log.error("could not prepare a report of %s: %s", event["type"], exc)
            except Exception:
                log.exception("could not prepare a report of %s", event["type"])
            finally:
                self._events.task_done()

    async def _dispatch(self, event: dict[str, Any]) -> None:
        build = build_from_json(event["build"])
        finished = event["type"] == EventKind.BUILD_FINISHED
        reporters = [r for r in self.reporters if r.reports_on(build.builder) and (finished or r.reports_starts)]
        if not reporters:
            return
        report = await self._report(build, finished, reporters)
        for reporter in reporters:
            queue = self._queues.get(id(reporter))
            if queue is None or (finished and not reporter.wants(report)):
                continue  # removed by a reconfigure meanwhile, or not interested
            if queue.full():
                queue.get_nowait()
                queue.task_done()
                self.dropped[reporter.name] += 1
                log.warning("reporter %s is %d reports behind; dropped the oldest", reporter.name, queue.qsize())
            queue.put_nowait(("build_finished" if finished else "build_started", report))

    async def _report(self, build: Build, finished: bool, reporters: list[Reporter]) -> Build:
        store = self._store()
        _, spec = await store.builds.buildset_of(build.id)
        details: dict[str, Any] = {}
        if finished and any("problem" in r.mode for r in reporters):
            details["previous_result"] = await store.builds.last_result(build.builder, before=build.id)
        if finished and any(r.wants_details for r in reporters):
            steps = (await store.builds.get(build.id)).steps
            details["steps"] = steps
            shown = next((s for s in steps if s.result in _FAILED), steps[-1] if steps else None)
            if shown is not None:
                tail, _ = await store.logs.tail(build.id, shown.number, "stdio", REPORT_LOG_LINES)
                details["log_step"] = shown.name
                details["log_tail"] = "\n".join(line for _, line in tail)
        if finished and any(r.wants_details or r.wants_artifacts for r in reporters):
            details["artifacts"] = tuple(
                Artifact(a.path, a.size, a.sha256, artifact_url(self._page(), build.id, a.path))
                for a in await store.steps.artifacts(build.id)
            )
        if finished and any(r.wants_tests for r in reporters):
            details["failed_tests"] = tuple(await store.steps.failed_tests(build.id, REPORT_FAILED_TESTS))
        return build_record(
            build,
            self._page(),
            reason=spec.reason,
            sourcestamps=spec.sourcestamps,
            properties=dict(spec.properties),
            cell=spec.cells.get(build.builder, (None,))[0],
            **details,
        )

    # -- delivering -------------------------------------------------------------------------------

    async def _deliver_loop(self, reporter: Reporter, queue: asyncio.Queue[tuple[str, Build]]) -> None:
        while True:
            hook, report = await queue.get()
            try:
                await self._deliver(reporter, hook, report)
            finally:
                queue.task_done()

    async def _deliver(self, reporter: Reporter, hook: str, report: Build) -> None:
        what = f"{hook.replace('build_', '')} of {report.builder} #{report.number}"
        delay = reporter.backoff
        for attempt in range(1, reporter.attempts + 1):
            try:
                await getattr(reporter, hook)(report)
            except ReportRejected as exc:
                self.failed[reporter.name] += 1
                log.error("reporter %s: the %s was refused, not retrying: %s", reporter.name, what, exc)
                return
            except Exception as exc:
                if attempt == reporter.attempts:
                    self.failed[reporter.name] += 1
                    log.error("reporter %s: gave up on the %s after %d attempts: %s", reporter.name, what, attempt, exc)
                    return
                log.warning(
                    "reporter %s: the %s failed (%s); retrying in %.1f s", reporter.name, what, _describe(exc), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, REPORT_BACKOFF_MAX)
            else:
                self.delivered[reporter.name] += 1
                return


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FlowbotError) else f"{type(exc).__name__}: {exc}"
