"""The tasks a master owns: named, their failures logged, all cancelled at stop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import flowbot.master
from flowbot.master.tasks import Tasks

from ..support import unowned_tasks


async def test_a_task_that_fails_is_logged_by_name_unless_someone_watches_it(caplog):
    tasks = Tasks()

    async def fail() -> None:
        raise RuntimeError("broken")

    with caplog.at_level(logging.ERROR, logger="flowbot.master.tasks"):
        await asyncio.gather(tasks.spawn(fail(), "unwatched"), return_exceptions=True)
        watched = tasks.spawn(fail(), "watched", watched=True)
        await asyncio.gather(watched, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records] == ["unwatched failed: broken"]
    assert isinstance(watched.exception(), RuntimeError)  # its watcher gets the failure
    assert tasks.named("") == []  # ended tasks are let go


async def test_cancel_stops_every_task_still_running_and_waits_for_them():
    tasks = Tasks()
    ended = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    for name in ("build b #1", "build b #2", "reporter"):
        tasks.spawn(forever(name), name)
    await asyncio.sleep(0)
    assert sorted(t.get_name() for t in tasks.named("build ")) == ["build b #1", "build b #2"]
    await tasks.cancel()
    assert sorted(ended) == ["build b #1", "build b #2", "reporter"]
    assert tasks.named("") == []


def test_the_master_its_parts_and_its_faces_start_tasks_one_way():
    # Every task goes through Tasks.spawn (parts receive it; a change source through its context),
    # so none is unowned
    assert unowned_tasks(Path(flowbot.master.__file__).parent.parent) == []
