"""The HTTP face served over real HTTP with no master behind it: small fakes of what it is handed
(:class:`flowbot.web.services.WebServices`), a real store, a real event bus."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from prometheus_client import Histogram
from tornado.httpclient import AsyncHTTPClient

from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.errors import NotFound
from flowbot.master.events import EventBus
from flowbot.master.loop_lag import LoopLag
from flowbot.master.status import WorkerState
from flowbot.store import Store
from flowbot.web.http import HttpFace
from flowbot.web.services import Control, Gauges, Reads, WebServices


class FakeStatus:
    async def workers(self) -> list[WorkerState]:
        return [WorkerState("w1", None, True, 1.0, 2.0, {"os": "plan9"}, (), False, None, False, None)]

    def running_build(self, build_id: int) -> None:
        return None

    def why_waiting(self, request: Any) -> str | None:
        return "no worker"

    def load(self) -> dict[str, tuple[int, int]]:
        return {"unit": (2, 1)}

    async def builders(self, names: Any = None, *, shown: int = 0, recent: int = 0) -> list[Any]:
        return []


class FakeBuilds:
    """Takes what people ask for and says what it was asked."""

    def __init__(self) -> None:
        self.forced: list[tuple[str, dict[str, Any]]] = []

    async def force(self, builder: str, **options: Any) -> list[int]:
        if builder != "unit":
            raise NotFound(f"no builder named {builder!r}")
        self.forced.append((builder, options))
        return [41, 42]

    async def rebuild(self, build_id: int, *, reason: str = "", owner: str = "") -> list[int]:
        raise NotFound(f"no build {build_id}")

    async def stop_build(self, build_id: int, reason: str = "") -> None:
        raise NotFound(f"no build {build_id}")

    async def cancel_request(self, request_id: int) -> None:
        raise NotFound(f"no build request {request_id}")

    async def add_change(self, change: Any) -> tuple[int, list[int]]:
        return 1, []

    async def reload(self) -> None:
        pass


class FakeWorkers:
    def __init__(self) -> None:
        self.paused: dict[str, str] = {}

    async def pause(self, name: str, reason: str = "") -> None:
        self.paused[name] = reason

    async def unpause(self, name: str) -> None:
        self.paused.pop(name, None)

    def shutdown(self, name: str, graceful: bool = True) -> None:
        pass

    def state(self, name: str) -> dict[str, Any]:
        return {"paused": name in self.paused, "paused_reason": self.paused.get(name), "shutting_down": False}


class FakeApprovals:
    def waiting(self, build_id: int) -> None:
        return None

    def all(self) -> list[dict[str, Any]]:
        return []

    def decide(self, build_id: int, approved: bool, **form: Any) -> Any:
        raise NotFound(f"build {build_id} is not waiting for approval")


class FakeInstances:
    starts: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    connect_seconds = Histogram("fake_connect_seconds", "unused", ["worker"], registry=None)

    def views(self) -> list[Any]:
        return []


class FakeReporting:
    reporters: list[Any] = []
    delivered: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    dropped: Counter[str] = Counter()


@pytest.fixture
async def served(tmp_path):
    """An HTTP face on a free port, over fakes and a store of its own; yields (url, builds, workers)."""
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
    )
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite'}")
    builds, workers = FakeBuilds(), FakeWorkers()
    services = WebServices(
        reads=Reads(
            pipeline=lambda: pipeline,
            store=store,
            status=FakeStatus(),
            instances=FakeInstances(),
            instance_id="fake",
            artifacts_dir=lambda: tmp_path / "artifacts",
            history=lambda: pytest.fail("no search was asked for"),
        ),
        control=Control(builds=builds, workers=workers, approvals=FakeApprovals(), hook=lambda name: None),
        events=EventBus(),
        gauges=Gauges(connections={"w1": object()}, dropped=Counter(), loop_lag=LoopLag(), reporting=FakeReporting()),
    )
    face = HttpFace("127.0.0.1:0", lambda: services)
    await face.start()
    try:
        yield face.url, builds, workers
    finally:
        face.stop()
        await face.close()
        await store.close()


async def test_the_api_reads_and_acts_through_what_it_is_handed(served) -> None:
    url, builds, workers = served
    client = AsyncHTTPClient()

    # The workers are the status's, the builds the store's (none yet; one that is not there: 404)
    answer = json.loads((await client.fetch(f"{url}/api/workers")).body)
    assert [(w["name"], w["info"]) for w in answer["workers"]] == [("w1", {"os": "plan9"})]
    assert json.loads((await client.fetch(f"{url}/api/builds")).body) == {"builds": []}
    assert (await client.fetch(f"{url}/api/builds/7", raise_error=False)).code == 404

    # Forcing a build and pausing a worker reach the control side, with what was sent
    forced = await client.fetch(f"{url}/api/builders/unit/force", method="POST", body='{"reason": "try"}')
    assert forced.code == 201 and json.loads(forced.body) == {"buildrequest_ids": [41, 42]}
    assert builds.forced == [
        ("unit", {"reason": "try", "branch": None, "revision": None, "owner": "", "properties": None})
    ]
    unknown = await client.fetch(f"{url}/api/builders/other/force", method="POST", body="{}", raise_error=False)
    assert unknown.code == 404 and "no builder named 'other'" in json.loads(unknown.body)["error"]
    paused = await client.fetch(f"{url}/api/workers/w1/pause", method="POST", body='{"reason": "disk"}')
    assert json.loads(paused.body) == {"worker": "w1", "paused": True, "paused_reason": "disk", "shutting_down": False}
    assert workers.paused == {"w1": "disk"}

    # The metrics are read from the same things when scraped
    metrics = (await client.fetch(f"{url}/metrics")).body.decode()
    assert 'flowbot_queue_length{builder="unit"} 2.0' in metrics
    assert 'flowbot_builds_running{builder="unit"} 1.0' in metrics
    assert "flowbot_workers_connected 1.0" in metrics and "flowbot_workers_paused 1.0" in metrics


async def test_a_request_for_another_host_reaches_no_handler(served) -> None:
    url, builds, _ = served
    answer = await AsyncHTTPClient().fetch(
        f"{url}/api/builders/unit/force",
        method="POST",
        body="{}",
        headers={"Host": "rebound.example"},
        raise_error=False,
    )
    assert answer.code == 403 and builds.forced == []
