"""The event bus and its journal, in process."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

import flowbot
from flowbot.master.events import DURABLE_KINDS, EventBus, EventJournal, EventKind, id_to_time
from flowbot.web.stream import EventFilter


def test_event_ids_grow_strictly_and_tell_the_time():
    bus = EventBus()
    seen = []
    bus.subscribe(seen.append)
    for _ in range(1000):
        bus.emit("change.new", change_id=1)
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids))
    assert abs(id_to_time(ids[-1]) - seen[-1]["time"]) < 1.0


def test_the_journal_keeps_durable_events_only_and_says_when_it_forgot_some():
    bus = EventBus()
    journal = EventJournal(bus, size=3)
    start = bus.last_id
    assert journal.covers(start) and journal.after(start) == []

    # Nobody asked for live log lines, so they are not even built
    assert not bus.wants("log")
    assert bus.wants("build.finished")

    ids = []
    unsubscribe = bus.subscribe(lambda e: ids.append(e["id"]))
    for n in range(5):
        bus.emit("request.new", request_id=n, builder="b")
    assert [e["request_id"] for e in journal.after(start)] == [2, 3, 4]
    assert not journal.covers(start)  # requests 0 and 1 are forgotten
    assert not journal.covers(ids[0])  # a client that saw request 0 missed request 1
    assert journal.covers(ids[1])  # one that saw request 1 missed nothing
    assert [e["request_id"] for e in journal.after(ids[3])] == [4]
    assert journal.after(bus.last_id) == []
    unsubscribe()
    journal.close()
    assert not bus.wants("build.finished")


def _emitted_kinds() -> tuple[set[str], list[str]]:
    """The ``EventKind`` members named anywhere in flowbot's code, and the ``emit`` calls whose kind
    is written some other way (a string that a typo could break)."""
    named, untyped = set(), []
    for path in Path(flowbot.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "EventKind":
                named.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit":
                kind = node.args[0] if node.args else None
                if isinstance(kind, ast.Constant):
                    untyped.append(f"{path.name}:{node.lineno}")
    return named, untyped


def test_every_kind_emitted_anywhere_is_a_kind_the_stream_and_the_journal_accept():
    named, untyped = _emitted_kinds()
    assert not untyped, f"events emitted with a string for their kind: {untyped}"
    assert named <= set(EventKind.__members__), f"no such event kinds: {named - set(EventKind.__members__)}"
    assert {"BUILD_FINISHED", "MASTER_RECONFIGURED", "LOG", "WORKER_CHANGED"} <= named
    for kind in EventKind:
        assert EventFilter.parse(None, {"types": kind.value}).types == {kind}
    assert set(DURABLE_KINDS) == set(EventKind) - {EventKind.LOG}


def test_a_misspelt_kind_fails_where_it_is_emitted_or_subscribed_to():
    bus = EventBus()
    with pytest.raises(ValueError, match=r"unknown event type 'build\.finsihed'"):
        bus.subscribe(lambda e: None, ["build.finsihed"])
    bus.subscribe(lambda e: None)
    with pytest.raises(ValueError, match=r"unknown event type 'master\.reconfigure'"):
        bus.emit("master.reconfigure", added=[], removed=[])


def test_the_journal_keeps_a_reconfigure():
    bus = EventBus()
    journal = EventJournal(bus, size=10)
    start = bus.last_id
    bus.emit(EventKind.MASTER_RECONFIGURED, added=["new"], removed=[])
    assert [(e["type"], e["added"]) for e in journal.after(start)] == [("master.reconfigured", ["new"])]


async def test_the_kernel_reads_the_events_as_an_async_stream_filtered_as_the_websocket_filters_them(tmp_path):
    from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
    from flowbot.errors import EventsLost, NotFound

    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit", "lint"])],
        builders=[Builder(name, workers=["w1"], steps=[Shell("echo hi")]) for name in ("unit", "lint")],
    )
    async with flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.sqlite'}") as master:
        await master.start_local_workers()
        # Given a stream of lint's finished builds and one of everything about unit
        finished = master.events(types=["build.finished"], builder="lint")
        about_unit = master.events(builder="unit")
        first = asyncio.ensure_future(anext(finished))
        everything = asyncio.ensure_future(anext(about_unit))
        await asyncio.sleep(0)

        # When unit, then lint, build
        await master.force("unit")
        await master.force("lint")
        await master.wait_idle(timeout=30)

        # Then the first stream saw lint's end only, the second unit's request first
        event = await asyncio.wait_for(first, 10)
        assert event["type"] == EventKind.BUILD_FINISHED and event["build"]["builder"] == "lint"
        assert (await asyncio.wait_for(everything, 10))["type"] == EventKind.REQUEST_NEW
        kinds_seen, lines, build_id = [], [], None
        while (event := await asyncio.wait_for(anext(about_unit), 10))["type"] != EventKind.BUILD_FINISHED:
            assert event.get("builder", event.get("build", {}).get("builder")) in ("unit", None)
            kinds_seen.append(event["type"])
            if event["type"] == EventKind.BUILD_STARTED:
                build_id = event["build"]["id"]
            elif event["type"] == EventKind.LOG:  # after the build's start, with its id, from the first line on
                assert build_id is not None and event["build_id"] == build_id and event["first"] == len(lines)
                lines += event["lines"]
        assert EventKind.BUILD_STARTED in kinds_seen and EventKind.LOG in kinds_seen
        assert lines[0] == ("h", "shell: echo hi in unit/build") and ("o", "hi") in lines
        await finished.aclose()
        await about_unit.aclose()
        assert not master.events.wants(EventKind.LOG)  # closed streams no longer listen

        # And a typo is refused at once, and a reader that falls behind hears that it lost events
        with pytest.raises(ValueError, match=r"unknown event type 'build\.done'"):
            master.events(types=["build.done"])
        with pytest.raises(NotFound, match="no builder named 'unti'"):
            master.events(builder="unti")
        slow = master.events(types=["request.new"], backlog=2)
        pending = asyncio.ensure_future(anext(slow))
        await asyncio.sleep(0)
        for _ in range(2):
            await master.force("unit")
        assert (await pending)["type"] == EventKind.REQUEST_NEW
        for _ in range(3):
            await master.force("unit")
        await master.wait_idle(timeout=30)
        with pytest.raises(EventsLost, match="more than 2 events behind"):
            while True:
                await anext(slow)
