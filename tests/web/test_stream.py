"""The event stream of an embedded master, read by a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time

import tornado.websocket

import flowbot
from flowbot import Builder, Pipeline, Shell, Worker
from flowbot.defaults import EVENT_CLIENT_BACKLOG, MAX_LIST
from flowbot.records import BuildsetSpec
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.web import stream

from ..e2e.test_events import close


async def test_a_client_resuming_from_far_back_gets_all_it_missed(tmp_path):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")], builders=[Builder("b", workers=["w1"], steps=[Shell("true")])]
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events"
    try:
        # Given a client that left, and more events than a client may have unsent happening meanwhile
        ws = await tornado.websocket.websocket_connect(events)
        since = json.loads(await ws.read_message())["last_id"]
        await close(ws)
        missed = EVENT_CLIENT_BACKLOG + 1000
        for n in range(missed):
            master.events.emit("request.new", request_id=n, builder="b")

        # When it comes back with since=
        ws = await tornado.websocket.websocket_connect(f"{events}?since={since}")
        hello = json.loads(await ws.read_message())
        assert (hello["replay"], hello["replayed"]) == ("journal", missed)

        # Then it gets every one of them, in order, and then what happens live
        replayed = [json.loads(await asyncio.wait_for(ws.read_message(), 10)) for _ in range(missed)]
        assert [e["request_id"] for e in replayed] == list(range(missed))
        assert all(e["replayed"] for e in replayed)
        master.events.emit("request.new", request_id=missed, builder="b")
        live = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert live["request_id"] == missed and "replayed" not in live
        await close(ws)
    finally:
        await master.stop()


async def finished_long_ago(store: Store, count: int, at: float) -> list[int]:
    """``count`` builds of ``b`` stored as finished from ``at`` on, three at a time; their ids."""
    spec = BuildsetSpec(scheduler="force", builders=("b",), sourcestamps=())
    requests = [
        r for rs in await asyncio.gather(*(store.requests.add_buildset(spec, at) for _ in range(count))) for r in rs
    ]
    refs = [Ref() for _ in requests]
    writes = []
    for n, (request, build) in enumerate(zip(requests, refs, strict=True)):
        writes.append(store.builds.start(request, n + 1, "w1", at, "master", build))
        writes.append(store.builds.finish(build, request, Result.SUCCESS, at + n // 3))
    await asyncio.gather(*writes)
    return [build.get() for build in refs]


async def test_a_client_away_longer_than_the_journal_gets_every_finished_build_from_the_store(db_url):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")], builders=[Builder("b", workers=["w1"], steps=[Shell("true")])]
    )
    master = flowbot.Master(pipeline, db=db_url)
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events"
    try:
        # Given more builds than a page of the store, finished (some together) before the journal began
        an_hour_ago = time.time() - 3600
        ids = await finished_long_ago(master.store, 2 * MAX_LIST + 500, an_hour_ago)

        # When a client comes back from before them
        since = int((an_hour_ago - 60) * 1_000_000)
        ws = await tornado.websocket.websocket_connect(f"{events}?types=build.finished&since={since}")
        assert json.loads(await ws.read_message())["replay"] == "store"

        # Then it gets each of them once, oldest first, and then what happens live
        replayed = [json.loads(await asyncio.wait_for(ws.read_message(), 10)) for _ in ids]
        assert [e["build"]["id"] for e in replayed] == ids
        assert all(e["replayed"] for e in replayed)
        master.events.emit("build.finished", build={"id": 0, "builder": "b"})
        live = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert live["build"]["id"] == 0 and "replayed" not in live
        await close(ws)
    finally:
        await master.stop()


async def test_a_client_can_follow_reconfigures_live_and_after_a_reconnect(tmp_path):
    workers = [Worker("w1", secret="s")]
    master = flowbot.Master(
        Pipeline(workers=workers, builders=[Builder("b", workers=["w1"], steps=[Shell("true")])]),
        db=f"sqlite:///{tmp_path / 'm.db'}",
    )
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events?types=master.reconfigured"
    try:
        # Given a client of reconfigures only
        ws = await tornado.websocket.websocket_connect(events)
        since = json.loads(await ws.read_message())["last_id"]

        # When the master takes a pipeline with another builder
        builders = [Builder(name, workers=["w1"], steps=[Shell("true")]) for name in ("b", "c")]
        await master.reconfigure(Pipeline(workers=workers, builders=builders))

        # Then the client hears of it, and one that comes back later gets it from the journal
        live = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert (live["type"], live["added"], live["removed"]) == ("master.reconfigured", ["c"], [])
        await close(ws)
        ws = await tornado.websocket.websocket_connect(f"{events}&since={since}")
        assert json.loads(await ws.read_message())["replayed"] == 1
        replayed = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert (replayed["type"], replayed["added"], replayed["replayed"]) == ("master.reconfigured", ["c"], True)
        await close(ws)
    finally:
        await master.stop()


def _pipeline() -> Pipeline:
    return Pipeline(workers=[Worker("w1", secret="s")], builders=[Builder("b", workers=["w1"], steps=[Shell("true")])])


async def test_every_client_is_sent_the_same_bytes_encoded_once(tmp_path, monkeypatch):
    master = flowbot.Master(_pipeline(), db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events"
    try:
        # Given five clients of the stream
        clients = [await tornado.websocket.websocket_connect(events) for _ in range(5)]
        for ws in clients:
            assert json.loads(await ws.read_message())["type"] == "hello"
        encoded = []
        real = stream._dumps
        monkeypatch.setattr(stream, "_dumps", lambda event: encoded.append(event) or real(event))

        # When the master emits three events
        for n in range(3):
            master.events.emit("request.new", request_id=n, builder="b")

        # Then each was encoded once, and every client got the same text, in order
        received = [[await asyncio.wait_for(ws.read_message(), 10) for _ in range(3)] for ws in clients]
        assert len(encoded) == 3
        assert all(r == received[0] for r in received)
        assert [json.loads(m)["request_id"] for m in received[0]] == [0, 1, 2]
        for ws in clients:
            await close(ws)
    finally:
        await master.stop()


async def test_a_client_too_slow_is_disconnected_and_resumes_where_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "EVENT_CLIENT_BACKLOG_BYTES", 1 << 20)
    master = flowbot.Master(_pipeline(), db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events?types=request.new"
    try:
        # Given a client that reads nothing while 40 MB of events happen (forty times what it may hold unsent)
        ws = await tornado.websocket.websocket_connect(events)
        assert json.loads(await ws.read_message())["type"] == "hello"
        subscribers = len(master.events._subscribers)
        padding = "x" * 64_000
        for n in range(640):
            master.events.emit("request.new", request_id=n, builder="b", padding=padding)
            if n % 64 == 0:
                await asyncio.sleep(0.05)  # turns of the loop, for the writes to fill the socket

        # Then the master let it go: it stopped listening for it, and the client is told why
        assert len(master.events._subscribers) == subscribers - 1
        seen = []
        while (message := await asyncio.wait_for(ws.read_message(), 10)) is not None:
            seen.append(json.loads(message))
        assert ws.close_code == 1013 and "since=" in ws.close_reason
        ws.close()
        assert 0 < len(seen) < 640

        # And coming back with since= the last id it saw, it gets the rest, in order
        ws = await tornado.websocket.websocket_connect(f"{events}&since={seen[-1]['id']}")
        assert json.loads(await ws.read_message())["replay"] == "journal"
        rest = [json.loads(await asyncio.wait_for(ws.read_message(), 10)) for _ in range(640 - len(seen))]
        assert [e["request_id"] for e in seen + rest] == list(range(640))
        await close(ws)
    finally:
        await master.stop()
