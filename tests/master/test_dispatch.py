"""The dispatcher (``flowbot/master/dispatch.py``) with small fakes: no processes, sockets or database.

Builds here are fakes that run until the test ends them, so each test says exactly which requests
started where, and what starts once a build ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowbot import Builder, ForceScheduler, MasterLock, Pipeline, Shell, Worker
from flowbot.master import dispatch as dispatch_module
from flowbot.master.dispatch import Dispatcher
from flowbot.records import BuildRequest, SourceStamp
from flowbot.results import Result


@dataclass(eq=False)
class Connection:
    """A connected worker as the dispatcher sees one."""

    spec: Worker

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(eq=False)
class FakeBuild:
    """A build that runs until :meth:`end`."""

    builder: str
    request: BuildRequest
    connection: Connection | None
    number: int
    builder_config: Builder | None = None
    result: Result | None = None
    ending: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    last_worker: str = ""

    @property
    def worker(self) -> str:
        return self.connection.name if self.connection is not None else self.last_worker

    def moved_to(self, connection: Connection) -> None:
        self.connection = connection

    async def execute(self) -> Result:
        self.result = await self.ending
        return self.result

    async def recorded(self) -> BaseException | None:
        return None

    def end(self, result: Result = Result.SUCCESS) -> None:
        self.ending.set_result(result)


class Store:
    available = True

    def __init__(self) -> None:
        self.requests = self
        self.completed: list[tuple[int, Result]] = []

    async def cancel(self, request_id: int, now: float, result: Result = Result.CANCELLED) -> None:
        self.completed.append((request_id, result))

    async def pending(self, *, unclaimed: bool = False) -> list[BuildRequest]:
        return []


class Controls:
    def __init__(self) -> None:
        self.paused: set[str] = set()
        self.asked = 0

    def takes_builds(self, connection: Connection) -> bool:
        self.asked += 1
        return connection.name not in self.paused

    def state(self, name: str) -> dict[str, Any]:
        return {
            "paused": name in self.paused,
            "paused_reason": "" if name in self.paused else None,
            "shutting_down": False,
        }

    def build_ended(self, connection: Connection) -> None:
        pass


class Instances:
    pools: dict[str, Any] = {}

    def expand(self, names):
        return names

    def balance(self, waiting) -> None:
        pass

    def build_started(self, name: str) -> None:
        pass

    def build_ended(self, name: str) -> None:
        pass


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def emit(self, kind, **data: Any) -> None:
        self.kinds.append(kind.value)


class Rig:
    """A dispatcher over ``pipeline`` with all its workers connected."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.store = Store()
        self.connections: dict[str, Connection] = {}
        self.controls = Controls()
        self.builds: list[FakeBuild] = []
        self.tasks: set[asyncio.Task] = set()
        self._ids = iter(range(1, 1_000_000))
        self.dispatcher = Dispatcher(
            pipeline=lambda: self.pipeline,
            store=lambda: self.store,
            workers=self,
            controls=self.controls,
            instances=Instances(),
            events=Events(),
            spawn=self.spawn,
            new_build=self.new_build,
            busy=lambda: False,
        )
        self.dispatcher.active = True
        for worker in pipeline.workers:
            self.connect(worker.name)

    def spawn(self, coro, name: str, *, watched: bool = False) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        return task

    def new_build(self, builder: Builder, request: BuildRequest, connection: Connection, number: int) -> FakeBuild:
        build = FakeBuild(builder.name, request, connection, number, builder, last_worker=connection.name)
        self.builds.append(build)
        return build

    def connect(self, name: str) -> None:
        self.connections[name] = Connection(self.pipeline.worker(name))
        self.dispatcher.worker_ready(name)

    def request(
        self, builder: str, *, priority: int = 0, branch: str = "main", revision: str | None = None
    ) -> BuildRequest:
        request_id = next(self._ids)
        stamp = SourceStamp(repository="repo", branch=branch, revision=revision or f"r{request_id}")
        return BuildRequest(
            request_id, request_id, builder, (stamp,), priority=priority, submitted_at=request_id, from_changes=True
        )

    async def submit(self, *requests: BuildRequest) -> None:
        self.dispatcher.enqueue(list(requests))
        await self.dispatcher.assigned()

    async def settle(self) -> None:
        """Let ended builds go through and the passes they cause run."""
        for _ in range(5):
            await asyncio.sleep(0)
        await self.dispatcher.assigned()

    def started(self) -> list[tuple[str, int, str]]:
        """(builder, request id, worker) of every build started, in order."""
        return [(b.builder, b.request.id, b.worker) for b in self.builds]

    def running(self) -> list[tuple[str, int, str]]:
        return [(b.builder, b.request.id, b.worker) for b in self.dispatcher.running.values()]


def pipeline(workers: list[Worker], *builders: Builder) -> Pipeline:
    return Pipeline(
        workers=workers,
        schedulers=[ForceScheduler("force", builders=[b.name for b in builders])],
        builders=list(builders),
    )


def builder(name: str, workers: list[str], **options: Any) -> Builder:
    return Builder(
        name, workers=workers, steps=[Shell("true")], collapse_requests=options.pop("collapse", False), **options
    )


def worker(name: str, **options: Any) -> Worker:
    return Worker(name, secret="s", **options)


async def test_across_builders_the_most_urgent_request_takes_a_shared_worker_then_the_oldest() -> None:
    # Given one worker, taking one build at a time, shared by three builders
    rig = Rig(pipeline([worker("w1", max_builds=1)], builder("a", ["w1"]), builder("b", ["w1"]), builder("c", ["w1"])))
    rig.dispatcher.active = False  # the requests queue up before the worker may take them
    old, urgent, older_than_c = rig.request("a"), rig.request("b", priority=5), rig.request("c")
    rig.dispatcher.enqueue([old, urgent, older_than_c])

    # When a pass runs
    rig.dispatcher.active = True
    rig.dispatcher.schedule()
    await rig.dispatcher.assigned()

    # Then the urgent request runs first, then by age
    assert rig.started() == [("b", urgent.id, "w1")]
    rig.builds[-1].end()
    await rig.settle()
    assert rig.started()[-1] == ("a", old.id, "w1")
    rig.builds[-1].end()
    await rig.settle()
    assert rig.started()[-1] == ("c", older_than_c.id, "w1")


async def test_a_worker_runs_one_build_per_builder_and_at_most_max_builds() -> None:
    rig = Rig(
        pipeline(
            [worker("w1", max_builds=2)],
            builder("a", ["w1"]),
            builder("b", ["w1"]),
            builder("c", ["w1"]),
        )
    )
    a1, a2, b1, c1 = rig.request("a"), rig.request("a"), rig.request("b"), rig.request("c")
    await rig.submit(a1, a2, b1, c1)

    # One build of a (not two), one of b, then the worker is full
    assert rig.running() == [("a", a1.id, "w1"), ("b", b1.id, "w1")]
    assert [r.id for r in rig.dispatcher.queue] == [a2.id, c1.id]
    assert [rig.dispatcher.running_count(b) for b in "abc"] == [1, 1, 0]
    assert [len(rig.dispatcher.builds_on(rig.connections["w1"]))] == [2]

    # When a's build ends, the oldest waiting request that the worker may take starts: a's second
    rig.builds[0].end()
    await rig.settle()
    assert rig.running() == [("b", b1.id, "w1"), ("a", a2.id, "w1")]
    rig.builds[1].end()
    await rig.settle()
    assert rig.running()[-1] == ("c", c1.id, "w1")
    assert [rig.dispatcher.running_count(b) for b in "abc"] == [1, 0, 1]


async def test_the_least_busy_free_worker_is_chosen_ties_in_the_builders_order() -> None:
    rig = Rig(
        pipeline(
            [worker("w1"), worker("w2"), worker("w3")],
            builder("long", ["w2"]),
            builder("unit", ["w2", "w1", "w3"]),
        )
    )
    await rig.submit(rig.request("long"))
    await rig.submit(rig.request("unit"), rig.request("unit"))
    # w2 runs long, so unit goes to w1 (before w3 in its list), then to w3; w2 is never first
    assert [w for b, _, w in rig.started() if b == "unit"] == ["w1", "w3"]


async def test_a_paused_worker_gets_nothing_until_it_is_ready_again_and_a_new_one_at_once() -> None:
    rig = Rig(pipeline([worker("w1"), worker("w2")], builder("unit", ["w1", "w2"])))
    rig.controls.paused.add("w1")
    del rig.connections["w2"]
    request = rig.request("unit")
    await rig.submit(request)
    assert rig.started() == []
    assert "w1 is paused" in rig.dispatcher.why_waiting("unit")

    rig.connect("w2")
    await rig.settle()
    assert rig.started() == [("unit", request.id, "w2")]

    second = rig.request("unit")
    await rig.submit(second)
    assert rig.started()[1:] == []
    rig.controls.paused.clear()
    rig.dispatcher.worker_ready("w1")
    await rig.settle()
    assert rig.started()[1:] == [("unit", second.id, "w1")]


async def test_the_builders_hooks_choose_the_request_and_the_worker() -> None:
    def newest(builder: Builder, pending: list[BuildRequest]) -> BuildRequest:
        return pending[-1]

    def last_offered(builder: Builder, workers: list[str], request: BuildRequest) -> str:
        offered.append(list(workers))
        return workers[-1]

    offered: list[list[str]] = []
    rig = Rig(
        pipeline(
            [worker("w1"), worker("w2"), worker("w3")],
            builder("busy", ["w1"]),
            builder("unit", ["w1", "w2", "w3"], next_build=newest, next_worker=last_offered),
        )
    )
    await rig.submit(rig.request("busy"))
    first, second = rig.request("unit"), rig.request("unit")
    await rig.submit(first, second)

    # The hook is offered the free workers least busy first (w1 runs a build) and is obeyed
    assert offered[0] == ["w2", "w3", "w1"]
    assert rig.started()[1:] == [("unit", second.id, "w1"), ("unit", first.id, "w3")]


async def test_a_new_request_collapses_the_waiting_ones_of_the_same_source() -> None:
    rig = Rig(pipeline([worker("w1")], builder("unit", ["w1"], collapse=True)))
    running, waiting, newer = rig.request("unit"), rig.request("unit"), rig.request("unit")
    await rig.submit(running)
    await rig.submit(waiting)
    await rig.submit(newer)
    await rig.settle()

    # The waiting request is skipped for the newer one; the running build goes on
    assert rig.store.completed == [(waiting.id, Result.SKIPPED)]
    assert [r.id for r in rig.dispatcher.queue] == [newer.id]
    assert rig.running() == [("unit", running.id, "w1")]


async def test_a_builders_locks_are_taken_all_at_once_or_not_at_all() -> None:
    deploy, db = MasterLock("deploy"), MasterLock("db")
    rig = Rig(pipeline([worker("w1")], builder("release", ["w1"], locks=[deploy.access(), db.access("exclusive")])))
    locks = rig.dispatcher.locks
    assert locks.try_acquire([db.access("exclusive")], "w1", "someone else")
    request = rig.request("release")
    await rig.submit(request)

    # Then nothing starts, and deploy, which was free, is not held meanwhile
    assert rig.started() == []
    assert locks.holders("deploy") == {}
    assert "lock" in rig.dispatcher.why_waiting("release")

    locks.release("someone else")
    rig.dispatcher.schedule()
    await rig.dispatcher.assigned()
    assert rig.started() == [("release", request.id, "w1")]
    assert locks.holders("deploy") == {"master": [f"{request.id}:counting"]}


class BrokenLock(MasterLock):
    """A lock whose capacity cannot be read, as a custom lock with a bug."""

    def capacity(self, worker: str) -> int:
        raise RuntimeError("the lock service is down")


async def test_a_failing_builder_or_worker_is_held_aside_and_the_others_go_on() -> None:
    rig = Rig(
        pipeline(
            [worker("w1"), worker("w2")],
            builder("on-w1", ["w1"]),
            builder("anywhere", ["w1", "w2"]),
            builder("locked", ["w2"], locks=[BrokenLock("deploy").access()]),
        )
    )
    rig.pipeline.worker("w1").max_builds = "2"  # as a notebook may spoil a loaded object
    on_w1, anywhere, locked = rig.request("on-w1"), rig.request("anywhere"), rig.request("locked")
    await rig.submit(on_w1, anywhere, locked)

    assert rig.started() == [("anywhere", anywhere.id, "w2")]
    assert rig.dispatcher.held_workers["w1"].startswith("dispatching failed: TypeError: ")
    assert rig.dispatcher.held_builders == {"locked": "dispatching failed: RuntimeError: the lock service is down"}
    assert {r.id for r in rig.dispatcher.queue} == {on_w1.id, locked.id}

    # A new pipeline lets them try again
    rig.pipeline.worker("w1").max_builds = None
    rig.pipeline = pipeline(
        rig.pipeline.workers, builder("on-w1", ["w1"]), builder("anywhere", ["w1", "w2"]), builder("locked", ["w1"])
    )
    rig.dispatcher.release_held()
    rig.dispatcher.schedule()
    await rig.dispatcher.assigned()
    assert sorted(rig.running()) == [
        ("anywhere", anywhere.id, "w2"),
        ("locked", locked.id, "w1"),
        ("on-w1", on_w1.id, "w1"),
    ]


async def test_a_build_that_ends_as_retry_runs_again() -> None:
    rig = Rig(pipeline([worker("w1"), worker("w2")], builder("unit", ["w1", "w2"])))
    request = rig.request("unit")
    await rig.submit(request)
    rig.builds[0].end(Result.RETRY)
    await rig.settle()
    assert rig.started() == [("unit", request.id, "w1"), ("unit", request.id, "w1")]


async def test_a_long_pass_lets_the_loop_run_between_slices_and_starts_every_build(monkeypatch) -> None:
    # Given 2,000 workers and as many requests waiting, and passes sliced thinly
    monkeypatch.setattr(dispatch_module, "DISPATCH_SLICE", 0.0)
    names = [f"w{i}" for i in range(2000)]
    rig = Rig(pipeline([worker(n) for n in names], builder("unit", names)))
    rig.dispatcher.active = False
    rig.dispatcher.enqueue([rig.request("unit") for _ in range(2000)])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(tick())
    try:
        # When a pass runs
        rig.controls.asked = 0
        rig.dispatcher.active = True
        rig.dispatcher.schedule()
        await rig.dispatcher.assigned()
    finally:
        ticking.cancel()

    # Then every request started, each on its own worker, the loop ran other work between slices,
    # and each worker was asked about about once (not once per build started)
    assert len(rig.running()) == 2000 and len({w for _, _, w in rig.running()}) == 2000
    assert ticks > 100
    assert rig.controls.asked <= 3 * 2000


async def test_a_pass_starts_a_bounded_batch_of_builds_per_turn_of_the_loop(monkeypatch) -> None:
    # Given 200 workers and as many requests waiting, and a slice long enough to start them all
    monkeypatch.setattr(dispatch_module, "DISPATCH_SLICE", 60.0)
    names = [f"w{i}" for i in range(200)]
    rig = Rig(pipeline([worker(n) for n in names], builder("unit", names)))
    rig.dispatcher.active = False
    rig.dispatcher.enqueue([rig.request("unit") for _ in range(200)])
    per_turn: list[int] = []

    async def tick() -> None:
        seen = 0
        while True:
            await asyncio.sleep(0)
            per_turn.append(len(rig.builds) - seen)
            seen = len(rig.builds)

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0)  # the pass the workers' connecting asked for finds the dispatcher inactive
    try:
        # When a pass runs
        rig.dispatcher.active = True
        rig.dispatcher.schedule()
        await rig.dispatcher.assigned()
    finally:
        ticking.cancel()

    # Then every request started, but no turn of the loop started more than a batch of them: the
    # builds of one batch take their first turn before the next batch starts
    assert len(rig.running()) == 200
    assert max(per_turn) == dispatch_module.DISPATCH_BATCH
    assert sum(per_turn) == 200


@pytest.fixture(autouse=True)
async def _no_task_left(request):
    yield
    builds = [t for t in asyncio.all_tasks() - {asyncio.current_task()} if t.get_name().startswith("build ")]
    for task in builds:
        task.cancel()
    await asyncio.gather(*builds, return_exceptions=True)  # ended while their loop runs


async def test_a_build_that_lets_its_worker_go_takes_one_again_before_the_requests_that_wait():
    # Given a release build on the only worker, which takes one build at a time
    rig = Rig(pipeline([worker("w1", max_builds=1)], builder("release", ["w1"]), builder("unit", ["w1"])))
    release, unit, later = rig.request("release"), rig.request("unit"), rig.request("unit")
    await rig.submit(release)
    (build,) = rig.builds

    # When it lets its worker go (it waits for an approval), a waiting request takes the worker
    rig.dispatcher.release_worker(build)
    await rig.submit(unit)
    assert rig.started() == [("release", release.id, "w1"), ("unit", unit.id, "w1")]
    assert [b.request.id for b in rig.dispatcher.builds_on(rig.connections["w1"])] == [unit.id]

    # Then, asking for a worker again, it gets w1 once the unit build ends, before the request after it
    taking = asyncio.ensure_future(rig.dispatcher.worker_for(build))
    await rig.submit(later)
    assert not taking.done()
    rig.builds[1].end()
    await rig.settle()
    await asyncio.wait_for(taking, 5)
    assert build.connection is rig.connections["w1"]
    assert [b.request.id for b in rig.dispatcher.builds_on(rig.connections["w1"])] == [release.id]
    assert len(rig.builds) == 2  # the later request still waits for the worker
    build.end()
    await rig.settle()
    assert rig.started()[-1] == ("unit", later.id, "w1")
    rig.builds[-1].end()
    await rig.settle()
