"""The read facade (``flowbot/master/status.py``), built with small fakes: no process, no socket."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from flowbot import Builder, Worker
from flowbot.master.events import EventBus, EventKind
from flowbot.master.status import BuilderStatus, RunningRef, Status, WorkerState
from flowbot.record_json import worker_json
from flowbot.records import BuildRequest, RememberedWorker


class Remembered:
    async def all(self):
        return {"w2": RememberedWorker(connected_at=1.0, last_seen=2.0, info={"hostname": "old"})}


class Queue:
    """Two requests of unit pending, none of docs."""

    PENDING = (SimpleNamespace(id=11, builder="unit"), SimpleNamespace(id=12, builder="unit"))

    def waiting(self, builder, first):
        pending = [r for r in self.PENDING if r.builder == builder]
        return len(pending), pending[:first]

    def __len__(self):
        return len(self.PENDING)

    def __iter__(self):
        return iter(self.PENDING)


class Builds:
    def __init__(self):
        self.read: list[tuple] = []

    async def latest(self, builders):
        self.read.append(("latest", list(builders)))
        return {"unit": "unit #9"}

    async def recent(self, builders, per_builder):
        self.read.append(("recent", list(builders), per_builder))
        return {"unit": ["unit #9", "unit #8"][:per_builder]}


def status(running: dict, events: EventBus, builds: Builds | None = None) -> Status:
    pipeline = SimpleNamespace(
        workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
        builders=[Builder("unit", workers=["w1"], steps=[]), Builder("docs", workers=["w1"], steps=[])],
    )
    return Status(
        pipeline=lambda: pipeline,
        connections={"w1": SimpleNamespace(name="w1", connected_at=10.0, last_seen=20.0, info={"hostname": "here"})},
        running=running,
        builds_on=lambda connection: [b for b in running.values() if b.worker == connection.name],
        controls=SimpleNamespace(
            state=lambda name: {
                "paused": name == "w2",
                "paused_reason": "disk full" if name == "w2" else None,
                "shutting_down": name == "w1",
            }
        ),
        held_workers={},
        queue=Queue(),
        why_waiting=lambda builder, cell: f"{builder} {cell} waits for w1",
        running_count=lambda builder: sum(1 for b in running.values() if b.builder == builder),
        held_builders={"docs": "no step"},
        remembered=Remembered,
        builds=lambda: builds or Builds(),
        events=events,
    )


def build(build_id: int | None, request_id: int, worker: str = "w1") -> SimpleNamespace:
    return SimpleNamespace(
        id=build_id, builder="unit", number=build_id, worker=worker, request=SimpleNamespace(id=request_id)
    )


async def test_each_worker_is_told_once_from_the_registry_the_controls_and_what_the_store_remembers():
    # Given a connected worker running a build, and one away and paused
    running = {7: build(3, 7)}
    states = await status(running, EventBus()).workers()

    # Then the connected one is read from its connection, the other from what the store remembers
    here = {"connected_at": 10.0, "last_seen": 20.0, "info": {"hostname": "here"}}
    away = {"connected_at": 1.0, "last_seen": 2.0, "info": {"hostname": "old"}}
    assert states == [
        WorkerState("w1", None, True, **here, running=(RunningRef(3, "unit", 3),), paused=False,
                    paused_reason=None, shutting_down=True, held=None),
        WorkerState("w2", None, False, **away, running=(), paused=True, paused_reason="disk full",
                    shutting_down=False, held=None),
    ]  # fmt: skip
    # And its JSON is what the API has always sent
    assert worker_json(states[0]) == {
        "name": "w1", "launcher": None, "connected": True, "connected_at": 10.0, "last_seen": 20.0,
        "info": {"hostname": "here"}, "running_builds": [{"id": 3, "builder": "unit", "number": 3}],
        "paused": False, "paused_reason": None, "shutting_down": True, "held": None,
    }  # fmt: skip


async def test_a_running_build_is_found_by_its_id_from_when_it_starts_until_it_ends():
    events = EventBus()
    running = {7: build(3, 7)}
    facade = status(running, events)
    assert facade.running_build(3) is None  # not started as far as anyone was told

    events.emit(EventKind.BUILD_STARTED, build={"id": 3, "request_id": 7})
    assert facade.running_build(3) is running[7]
    assert facade.running_build(4) is None

    events.emit(EventKind.BUILD_FINISHED, build={"id": 3, "request_id": 7})
    assert facade.running_build(3) is None


async def test_each_builder_is_told_with_its_queue_its_running_builds_and_its_newest_from_the_store():
    # Given a builder with two requests pending and a build running, and one held aside
    running = {7: build(3, 7)}
    builds = Builds()
    facade = status(running, EventBus(), builds)
    unit, docs = facade._pipeline().builders

    # When the builders are read with the first pending request and two recent builds each
    states = await facade.builders(shown=1, recent=2)

    # Then each is told in the pipeline's order, from memory and one read of the store
    first = (Queue().waiting("unit", 1)[1][0],)
    assert states == [
        BuilderStatus(unit, 2, first, 1, None, "unit #9", ("unit #9", "unit #8")),
        BuilderStatus(docs, 0, (), 0, "no step", None, ()),
    ]
    assert builds.read == [("recent", ["unit", "docs"], 2)]
    # And one builder can be asked for alone, without its recent builds, and for counts only
    assert [s.name for s in await facade.builders(["docs"])] == ["docs"]
    assert builds.read[-1] == ("latest", ["docs"])
    assert facade.load() == {"unit": (2, 1), "docs": (0, 0)}


def test_only_a_request_no_master_claimed_is_told_why_it_waits():
    facade = status({}, EventBus())
    waiting = BuildRequest(id=1, buildset_id=1, builder="unit", sourcestamps=(), cell={"python": "3.12"})
    assert facade.why_waiting(waiting) == "unit {'python': '3.12'} waits for w1"
    assert facade.why_waiting(dataclasses.replace(waiting, claimed_at=5.0)) is None
    assert facade.why_waiting(dataclasses.replace(waiting, complete_at=6.0)) is None


def test_how_busy_the_master_is_is_told_from_memory_with_the_oldest_requests_waiting():
    facade = status({7: build(3, 7)}, EventBus())
    activity = facade.activity(1)
    assert (activity.running, activity.queued, [r.id for r in activity.first_queued]) == (1, 2, [11])
    assert facade.activity().first_queued == ()
