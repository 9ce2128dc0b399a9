"""Tasks with an owner: each one named and kept, its failure logged, all of them cancelled at stop.

The worker and the master start their background tasks one way, through :meth:`Tasks.spawn`, so
none is collected while it runs, none fails unseen and none outlives what started it. (The master
imports this module, as it imports the protocol; nothing here imports flowbot.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tasks:
    """The tasks one owner runs."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str, *, watched: bool = False) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``, until it ends or :meth:`cancel` stops it.

        Its failure is logged, unless it is ``watched``: then whoever awaits it (or watches its end)
        gets the failure and deals with it.
        """
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard if watched else self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    def named(self, prefix: str) -> list[asyncio.Task]:
        """The tasks running whose name starts with ``prefix``."""
        return [task for task in self._tasks if task.get_name().startswith(prefix)]

    async def cancel(self) -> None:
        """Cancel every task and wait until they have all ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
