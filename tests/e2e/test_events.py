"""The event stream (``/api/events``) as a client sees it: filters, and resuming after a reconnect."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import tornado.httpclient
import tornado.websocket

from ..support import finished_builds, running_build

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["quick", "other", "chatty"])],
    builders=[
        Builder("quick", collapse_requests=False, workers=["w1"], steps=[Shell("echo hi", name="hello")]),
        Builder("other", collapse_requests=False, workers=["w1"], steps=[Shell("true", name="nothing")]),
        Builder("chatty", collapse_requests=False, workers=["w1"], steps=[
            Shell("for i in $(seq 1 30); do echo line $i; sleep 0.05; done", name="talk"),
        ]),
    ],
)
"""


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    return master


async def connect(master, query: str = "") -> tornado.websocket.WebSocketClientConnection:
    url = master.url.replace("http://", "ws://") + "/api/events" + (f"?{query}" if query else "")
    return await tornado.websocket.websocket_connect(url)


async def read(ws, count: int | None = None, until: str | None = None, timeout: float = 20.0) -> list[dict]:
    """Messages until ``count`` have come (hello excluded) or one of type ``until`` has."""
    events: list[dict] = []

    async def collect() -> None:
        while True:
            raw = await ws.read_message()
            assert raw is not None, "the stream closed"
            event = json.loads(raw)
            if event["type"] == "hello":
                continue
            events.append(event)
            if (count is not None and len(events) >= count) or (until is not None and event["type"] == until):
                return

    await asyncio.wait_for(collect(), timeout)
    return events


async def close(ws) -> None:
    """Close the stream and wait for the master to close it too (no socket is left behind)."""
    ws.close()
    while await asyncio.wait_for(ws.read_message(), 10) is not None:
        pass


async def hello(ws) -> dict:
    event = json.loads(await asyncio.wait_for(ws.read_message(), 10))
    assert event["type"] == "hello"
    return event


async def test_a_client_gets_only_the_types_and_builder_it_asked_for(master):
    ws = await connect(master, "types=build.started,build.finished&builder=quick")
    await hello(ws)
    master.client.force("other")
    master.client.force("quick")
    events = await read(ws, until="build.finished")
    assert [(e["type"], e["build"]["builder"]) for e in events] == [
        ("build.started", "quick"),
        ("build.finished", "quick"),
    ]
    assert events[1]["build"]["result"] == "SUCCESS"
    assert events[0]["id"] < events[1]["id"]
    await close(ws)


async def test_a_build_stream_carries_its_steps_and_numbered_log_lines(master):
    master.client.force("chatty")
    build = running_build(master.client, "chatty")
    ws = await connect(master, f"build={build['id']}")
    await hello(ws)
    events = await read(ws, until="build.finished")
    assert {e.get("build_id", e.get("build", {}).get("id")) for e in events} == {build["id"]}
    logs = [e for e in events if e["type"] == "log"]
    assert logs and all(e["builder"] == "chatty" and e["step"] == 0 for e in logs)
    for before, after in itertools.pairwise(logs):
        assert after["first"] == before["first"] + len(before["lines"])  # numbered without gaps
    text = [line for e in logs for _, line in e["lines"]]
    assert "line 30" in text
    await close(ws)


async def test_a_client_that_reconnects_with_since_misses_no_finished_build(master):
    # Given a client that saw one build finish, then lost its connection
    ws = await connect(master, "types=build.finished")
    await hello(ws)
    master.client.force("quick")
    (seen,) = await read(ws, 1)
    await close(ws)

    # When builds finish while it is away
    for builder in ("quick", "other", "quick"):
        master.client.force(builder)
    finished_builds(master.client, 4)

    # Then reconnecting with since= replays exactly those, then goes live
    ws = await connect(master, f"types=build.finished&since={seen['id']}")
    assert (await hello(ws))["replay"] == "journal"
    missed = await read(ws, 3)
    assert [e["build"]["builder"] for e in missed] == ["quick", "other", "quick"]
    assert all(e["replayed"] for e in missed)
    master.client.force("other")
    (live,) = await read(ws, 1)
    assert live["build"]["builder"] == "other" and "replayed" not in live
    await close(ws)


async def test_finished_builds_older_than_the_journal_come_from_the_store(master_factory, worker_factory, tmp_path):
    # Given a master that ran builds and was restarted (its journal is empty)
    first = master_factory(PIPELINE)
    worker_factory(first, "w1", "s")
    ws = await connect(first)
    since = (await hello(ws))["last_id"]
    await close(ws)
    first.client.force("quick")
    first.client.force("other")
    finished_builds(first.client, 2)
    first.stop()
    again = master_factory(PIPELINE, http_port=first.http_port, zmq_port=first.zmq_port)

    # When a client resumes from before those builds
    ws = await connect(again, f"since={since}&builder=other")
    greeting = await hello(ws)

    # Then the finished build it missed comes from the store
    assert greeting["replay"] == "store"
    (event,) = await read(ws, 1)
    assert event["type"] == "build.finished" and event["replayed"] and event["build"]["builder"] == "other"
    await close(ws)


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("types=build.exploded", 400, "unknown event type(s) ['build.exploded']"),
        ("builder=nope", 404, "no builder named 'nope'"),
        ("build=seven", 400, "build must be an integer"),
        ("since=yesterday", 400, "since must be an integer"),
    ],
)
async def test_bad_stream_requests_get_a_clear_error(master, query, status, message):
    with pytest.raises(tornado.httpclient.HTTPClientError) as error:
        await connect(master, query)
    assert error.value.code == status
    assert message in json.loads(error.value.response.body)["error"]


async def test_a_cross_site_page_cannot_open_the_stream(master):
    request = tornado.httpclient.HTTPRequest(
        master.url.replace("http://", "ws://") + "/api/events", headers={"Origin": "https://evil.example"}
    )
    with pytest.raises(tornado.httpclient.HTTPClientError) as error:
        await tornado.websocket.websocket_connect(request)
    assert error.value.code == 403
