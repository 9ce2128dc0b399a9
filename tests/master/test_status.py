"""The read facade (``flowbot/master/status.py``), built with small fakes: no process, no socket."""

from __future__ import annotations

from types import SimpleNamespace

from flowbot import Worker
from flowbot.master.events import EventBus, EventKind
from flowbot.master.status import RunningRef, Status, WorkerState


class Remembered:
    async def all(self):
        return {"w2": {"connected_at": 1.0, "last_seen": 2.0, "info": {"hostname": "old"}}}


def status(running: dict, events: EventBus) -> Status:
    pipeline = SimpleNamespace(workers=[Worker("w1", secret="s"), Worker("w2", secret="s")])
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
        remembered=Remembered,
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
    assert states[0].to_dict() == {
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
