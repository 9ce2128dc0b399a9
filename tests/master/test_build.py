"""A running build (``flowbot/master/build.py``) built alone: its services are a small fake around a
real SQLite store, and its worker a connection that plays each command from a script, so each
policy (steps in order, halting, RETRY on a lost worker, stopping, locks) is checked without a
master, a socket or a process. Builds on real workers are tested in ``tests/e2e``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from flowbot import Builder, MasterLock, Pipeline, Result, Shell, Worker
from flowbot.errors import WorkerLost
from flowbot.master.build import RunningBuild
from flowbot.master.events import DURABLE_KINDS, Event, EventBus
from flowbot.master.locks import LockTable
from flowbot.master.tasks import Tasks
from flowbot.record_json import build_detail_json, build_event_json
from flowbot.records import BuildRequest, BuildsetSpec, SourceStamp
from flowbot.steps.base import CommandResult
from flowbot.store import Store

#: How a scripted command runs: given its args and where its output goes, it ends as a result.
Script = Callable[[dict[str, Any], Any], Awaitable[CommandResult]]


class Services:
    """What a master offers its builds (``BuildServices``), with no master: a real store, a lock
    table and an event bus; the acts that reach other builds are recorded."""

    def __init__(self, store: Store, pipeline: Pipeline, basedir: Path):
        self.name = "unit master"
        self.basedir = basedir
        self.db_url = store.url
        self.store = store
        self.pipeline = pipeline
        self.artifacts_dir = basedir / "artifacts"
        self.locks = LockTable()
        self.events = EventBus()
        self.tasks = Tasks()
        self.scheduled = 0
        self.stopped_children: list[tuple[int, Result]] = []
        self.enqueued: list[BuildRequest] = []
        self.seen: list[Event] = []
        self.events.subscribe(self.seen.append, DURABLE_KINDS)

    def spawn(self, coro: Coroutine, name: str, *, watched: bool = False) -> asyncio.Task:
        return self.tasks.spawn(coro, name, watched=watched)

    def schedule(self) -> None:
        self.scheduled += 1

    async def trigger(self, build, schedulers, sourcestamps, properties, *, wait):
        raise AssertionError("no step here triggers")

    def stop_children(self, build_id: int, reason: str, result: Result) -> None:
        self.stopped_children.append((build_id, result))

    def downstream(self, build, result):
        return []

    def enqueue(self, requests: list[BuildRequest]) -> None:
        self.enqueued.extend(requests)


class Connection:
    """A worker's connection that runs each shell command by its script (by command line) and
    records what it was sent."""

    def __init__(self, name: str, scripts: dict[str, Script]):
        self.name = name
        self.spec = Worker(name, secret="s")
        self.info: dict[str, Any] = {"os": "test"}
        self.lost = False
        self.scripts = scripts
        self.ran: list[str] = []
        self.interrupts: list[tuple[str, str]] = []
        self._running: dict[str, asyncio.Future[CommandResult]] = {}

    async def run_command(self, cmd_id, name, args, output, transfer=None) -> CommandResult:
        if self.lost:
            raise WorkerLost(f"worker {self.name} is not connected")
        self.ran.append(args["command"])
        return await self.scripts.get(args["command"], prints("ok\n"))(args, output)

    def interrupt(self, cmd_id: str, reason: str, grace: float) -> None:
        self.interrupts.append((cmd_id, reason))
        for waiting in self._running.values():
            if not waiting.done():
                waiting.set_result(CommandResult(-15, "interrupted", reason))

    def runs_until_interrupted(self) -> Script:
        async def script(args, output) -> CommandResult:
            output.write("stdout", b"started\n")
            self._running[args["command"]] = waiting = asyncio.get_running_loop().create_future()
            return await waiting

        return script

    def lost_while_running(self) -> Script:
        async def script(args, output) -> CommandResult:
            self.lost = True
            raise WorkerLost(f"worker {self.name} went silent")

        return script


def prints(text: str, rc: int = 0) -> Script:
    async def script(args, output) -> CommandResult:
        output.write("stdout", text.encode())
        return CommandResult(rc, None, "", 0.01)

    return script


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store
    await store.close()


async def build_of(
    store: Store, tmp_path: Path, steps: list, scripts: dict[str, Script] | None = None
) -> tuple[RunningBuild, Services, Connection]:
    builder = Builder("unit", workers=["w1"], steps=steps)
    pipeline = Pipeline(workers=[Worker("w1", secret="s")], builders=[builder])
    spec = BuildsetSpec("force", ("unit",), (SourceStamp("", "main", "abc123"),), reason="test")
    (request,) = await store.requests.add_buildset(spec, 1_000.0)
    services = Services(store, pipeline, tmp_path)
    connection = Connection("w1", scripts or {})
    return RunningBuild(services, builder, request, connection, 1), services, connection


async def finished(build: RunningBuild) -> Result:
    result = await build.execute()
    assert await build.recorded() is None
    return result


async def test_steps_run_in_order_and_every_record_is_stored_before_its_event(store, tmp_path):
    # Given a build of two steps
    build, services, connection = await build_of(
        store, tmp_path, [Shell("make", name="compile"), Shell("make test", name="test")], {"make": prints("built\n")}
    )

    # When it runs
    result = await finished(build)

    # Then both steps ran on its worker, in order, and the build is stored as it ended
    assert result == Result.SUCCESS
    assert connection.ran == ["make", "make test"]
    stored = build_detail_json(await store.builds.get(build.id))
    assert (stored["result"], stored["worker"], stored["number"]) == ("SUCCESS", "w1", 1)
    assert [(s["name"], s["result"]) for s in stored["steps"]] == [("compile", "SUCCESS"), ("test", "SUCCESS")]
    assert ("o", "built") in await store.logs.lines(build.id, 0)
    # And each event came once its record was stored, in the order things happened
    assert [(e["type"], e.get("step")) for e in services.seen] == [
        ("build.started", None),
        ("step.started", 0),
        ("step.finished", 0),
        ("step.started", 1),
        ("step.finished", 1),
        ("build.finished", None),
    ]
    assert services.seen[-1]["build"] == build_event_json(build.summary())


async def test_a_step_s_command_goes_out_only_once_the_step_s_start_is_stored(store, tmp_path):
    # Given a build of two steps, whose commands note what the store held as they went out (its
    # events come as the records are stored)
    held_then: list[list[tuple[str, int | None]]] = []

    def noting(text: str) -> Script:
        async def script(args, output) -> CommandResult:
            held_then.append([(e["type"], e.get("step")) for e in services.seen])
            return await prints(text)(args, output)

        return script

    build, services, _ = await build_of(
        store,
        tmp_path,
        [Shell("make", name="compile"), Shell("make test", name="test")],
        {"make": noting("built\n"), "make test": noting("tested\n")},
    )

    # When it runs
    assert await finished(build) == Result.SUCCESS

    # Then each command went out once its step's start (with the build's, or the end of the step
    # before) was stored: a master restarted after a crash finds that step running, not the one before
    assert held_then[0] == [("build.started", None), ("step.started", 0)]
    assert held_then[1][-2:] == [("step.finished", 0), ("step.started", 1)]


async def test_a_failing_step_that_halts_skips_the_rest_but_always_run_steps(store, tmp_path):
    # Given a build whose first step fails and halts it
    steps = [
        Shell("make", halt_on_failure=True),
        Shell("make test", name="test"),
        Shell("rm -rf out", name="clean", always_run=True),
    ]
    build, _, connection = await build_of(store, tmp_path, steps, {"make": prints("error\n", rc=2)})

    # When it runs
    result = await finished(build)

    # Then it failed, the next step never ran, and the cleanup did
    assert result == Result.FAILURE
    assert connection.ran == ["make", "rm -rf out"]


async def test_a_build_whose_worker_is_lost_ends_as_retry_so_its_request_runs_again(store, tmp_path):
    # Given a build whose worker goes silent during its first step
    build, _, connection = await build_of(store, tmp_path, [Shell("make"), Shell("make test")])
    connection.scripts["make"] = connection.lost_while_running()

    # When it runs
    result = await finished(build)

    # Then it ends as RETRY, and nothing more was sent to the lost worker
    assert result == Result.RETRY
    assert connection.ran == ["make"]
    stored = build_detail_json(await store.builds.get(build.id))
    assert stored["result"] == "RETRY"
    assert "the build will be retried" in "\n".join(line for _, line in await store.logs.lines(build.id, 0))


async def test_stopping_a_build_interrupts_its_command_runs_its_cleanup_and_stops_its_children(store, tmp_path):
    # Given a build running a long command, with a cleanup step after it
    steps = [Shell("sleep 600", name="wait"), Shell("make test"), Shell("rm -rf out", always_run=True)]
    build, services, connection = await build_of(store, tmp_path, steps)
    connection.scripts["sleep 600"] = connection.runs_until_interrupted()
    running = asyncio.create_task(build.execute())
    while connection.ran != ["sleep 600"]:
        await asyncio.sleep(0.01)
    await build.started()

    # When someone stops it
    build.stop("no longer wanted")
    result = await running

    # Then its command was interrupted, the cleanup ran, and it ends as CANCELLED with what it triggered
    assert result == Result.CANCELLED
    assert [reason for _, reason in connection.interrupts] == ["no longer wanted"]
    assert connection.ran == ["sleep 600", "rm -rf out"]
    assert services.stopped_children == [(build.id, Result.CANCELLED)]
    assert await build.recorded() is None


async def test_a_step_holds_its_locks_while_it_runs_and_releasing_them_wakes_the_dispatcher(store, tmp_path):
    # Given a step that takes a master lock
    lock = MasterLock("deploy")
    held = []

    async def deploys(args, output) -> CommandResult:
        held.append(services.locks.free([lock.access("exclusive")], "w1"))
        return CommandResult(0)

    build, services, _ = await build_of(store, tmp_path, [Shell("deploy", locks=[lock.access("exclusive")])])
    build.connection.scripts["deploy"] = deploys

    # When it runs
    assert await finished(build) == Result.SUCCESS

    # Then the lock was taken while its command ran, free after, and the dispatcher was told
    assert held == [False]
    assert services.locks.free([lock.access("exclusive")], "w1")
    assert services.scheduled == 1
