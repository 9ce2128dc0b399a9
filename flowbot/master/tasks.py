"""The tasks a master runs: each one named and owned, its failure logged, all of them cancelled at stop.

Every task the master or one of its parts starts goes through :meth:`Tasks.spawn` (a part receives
it as a :class:`Spawn`), so none outlives a stop and none fails unseen. :class:`Tasks` is the
worker's own (:mod:`flowbot_worker.tasks`): both ends own their tasks one way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from flowbot_worker.tasks import Tasks

__all__ = ["Spawn", "Tasks"]

T = TypeVar("T")


class Spawn(Protocol):
    """Start a task that the master owns (see :meth:`Tasks.spawn`)."""

    def __call__(self, coro: Coroutine[Any, Any, T], name: str, *, watched: bool = False) -> asyncio.Task[T]: ...
