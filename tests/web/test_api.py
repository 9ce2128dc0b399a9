"""The REST API of an embedded master, where a test can see the running builds themselves."""

from __future__ import annotations

import asyncio

from tornado.httpclient import AsyncHTTPClient

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker


async def test_reading_a_running_steps_logs_creates_none(tmp_path):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["slow"])],
        builders=[Builder("slow", workers=["w1"], steps=[Shell("echo started; sleep 30", name="wait")])],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("slow")
        while not master.running or next(iter(master.running.values())).current_step != 0:
            await asyncio.sleep(0.05)
        (build,) = master.running.values()
        await build.started()  # it has an id once its start is stored
        client = AsyncHTTPClient()
        log = f"{master.http_url}/api/builds/{build.id}/steps/0/log?tail=5"

        # When readers ask for the tails of logs the running step never wrote
        for n in range(50):
            answer = await client.fetch(f"{log}&name=nothing-{n}", raise_error=False)
            assert answer.code == 404

        # Then the step has no such logs, and its own log reads as ever
        assert all(build.open_log(f"nothing-{n}") is None for n in range(50))
        for _ in range(100):
            if "started" in (await client.fetch(log)).body.decode():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the step's output never showed in its log tail")
        client.close()
    finally:
        await master.stop()
