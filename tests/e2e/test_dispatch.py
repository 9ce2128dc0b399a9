"""Dispatching in a running master (``flowbot/master/dispatch.py``): a broken builder or worker never stops the others.

The pipeline's checks refuse bad values when it is loaded; these tests spoil a value afterwards, as a
notebook that changes a loaded object can, or give a lock that fails as a custom one may, so that
dispatching meets an error no check caught.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient

import flowbot
from flowbot import Builder, ForceScheduler, MasterLock, Pipeline, Shell, Worker


class BrokenLock(MasterLock):
    """A lock whose capacity cannot be read, as a custom lock with a bug."""

    def capacity(self, worker: str) -> int:
        raise RuntimeError("the lock service is down")


def pipeline() -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["on-w1", "on-w2", "anywhere", "locked"])],
        builders=[
            Builder("on-w1", workers=["w1"], steps=[Shell("true")], collapse_requests=False),
            Builder("on-w2", workers=["w2"], steps=[Shell("true")], collapse_requests=False),
            Builder("anywhere", workers=["w1", "w2"], steps=[Shell("true")], collapse_requests=False),
            Builder(
                "locked",
                workers=["w2"],
                locks=[BrokenLock("deploy").access()],
                steps=[Shell("true")],
                collapse_requests=False,
            ),
        ],
    )


async def finished(master: Any, count: int, timeout: float = 30) -> Any:
    """The builds in the history once ``count`` of them have a result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        builds = master.history.builds()
        if builds["result"].notna().sum() >= count:
            return builds
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} builds finished in {timeout} s")


async def api(master: Any, path: str) -> Any:
    client = AsyncHTTPClient()
    try:
        return json.loads((await client.fetch(f"{master.http_url}/api/{path}")).body)
    finally:
        client.close()


async def test_a_broken_worker_or_builder_is_held_aside_and_the_others_keep_building(tmp_path, caplog) -> None:
    # Given a running master whose worker w1 was given a max_builds no check saw, and a builder
    # whose lock fails
    spoiled = pipeline()
    master = flowbot.Master(spoiled, db=f"sqlite:///{tmp_path / 'm.db'}", basedir=tmp_path)
    await master.start()
    try:
        await master.start_local_workers()
        spoiled.worker("w1").max_builds = "2"

        # When every builder is forced, twice (requests are not collapsed here)
        with caplog.at_level(logging.ERROR, logger="flowbot.master.dispatch"):
            for _ in range(2):
                for builder in ("on-w1", "on-w2", "anywhere", "locked"):
                    await master.force(builder)
            builds = await finished(master, 4)

        # Then what can build elsewhere did, on w2
        assert sorted(builds["builder"]) == ["anywhere", "anywhere", "on-w2", "on-w2"]
        assert set(builds["worker"]) == {"w2"} and set(builds["result"].astype(str)) == {"SUCCESS"}
        # the broken worker and builder are set aside, each logged once, with the reason shown
        assert [r.getMessage() for r in caplog.records] == [
            "dispatching worker w1 failed; it is held aside until the pipeline changes, and the others go on",
            "dispatching builder locked failed; it is held aside until the pipeline changes, and the others go on",
        ]
        workers = {w["name"]: w for w in (await api(master, "workers"))["workers"]}
        assert workers["w1"]["held"].startswith("dispatching failed: TypeError: ")
        assert "'int' and 'str'" in workers["w1"]["held"]
        assert workers["w2"]["held"] is None
        builders = {b["name"]: b for b in (await api(master, "builders"))["builders"]}
        assert builders["locked"]["held"] == "dispatching failed: RuntimeError: the lock service is down"
        assert builders["on-w1"]["held"] is None
        # and their requests wait, none lost
        assert (builders["on-w1"]["pending"], builders["locked"]["pending"]) == (2, 2)

        # When the pipeline is fixed
        await master.reconfigure(_fixed())
        await master.wait_idle(timeout=30)

        # Then the requests that waited are built
        builds = master.history.builds()
        assert sorted(builds["builder"]).count("on-w1") == 2
        assert sorted(builds["builder"]).count("locked") == 2
        assert master.dispatcher.held_workers == {} and master.dispatcher.held_builders == {}
    finally:
        await master.stop()


def _parts(p: Pipeline) -> dict[str, Any]:
    return {"workers": p.workers, "schedulers": p.schedulers, "builders": p.builders}


def _fixed() -> Pipeline:
    """The pipeline with a lock that works in place of the broken one."""
    *others, _broken = _parts(pipeline())["builders"]
    locked = Builder(
        "locked", workers=["w2"], locks=[MasterLock("deploy").access()], steps=[Shell("true")], collapse_requests=False
    )
    return Pipeline(**{**_parts(pipeline()), "builders": [*others, locked]})
