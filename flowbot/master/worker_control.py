"""Pausing workers and shutting them down: which workers take no new builds, and which are leaving.

A paused worker finishes what it runs and is given nothing new until it is unpaused; its requests
go to other workers or wait. The pause is stored, so it holds across a master restart and the
worker reconnecting. A worker shut down gracefully is given nothing new either, and is told to
leave (the protocol's ``shutdown``) once its last build has ended. One shut down now is told at
once; its builds end as RETRY, so their requests run again on another worker. A shutdown is not
stored: the worker process that comes back later takes builds as any other does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowbot_worker import protocol
from flowbot_worker.bodies import Shutdown

from ..errors import InvalidRequest, NotFound
from ..results import Result
from .events import EventKind

if TYPE_CHECKING:
    from ..store import Store
    from .build import RunningBuild
    from .events import EventBus
    from .registry import WorkerConnection, WorkerRegistry

log = logging.getLogger(__name__)


class WorkerControl:
    """The paused workers (by name) and the connections told to leave.

    Args:
        store: the store (once open), where pauses are kept.
        registry: the declared and the connected workers.
        events: where changes of a worker's controls are announced.
        builds_on: the builds running on a connection.
        worker_ready: tell the dispatcher a worker may take builds again (it was unpaused).
    """

    def __init__(
        self,
        *,
        store: Callable[[], Store],
        registry: WorkerRegistry,
        events: EventBus,
        builds_on: Callable[[WorkerConnection], list[RunningBuild]],
        worker_ready: Callable[[str], None],
    ):
        self._store = store
        self._registry = registry
        self._events = events
        self._builds_on = builds_on
        self._worker_ready = worker_ready
        #: Paused workers and the reason given, by name.
        self.paused: dict[str, str] = {}
        self._leaving: dict[str, WorkerConnection] = {}

    async def load(self) -> None:
        """Read which workers are paused from the store (at start)."""
        remembered = await self._store().workers.all()
        self.paused = {name: w.paused_reason or "" for name, w in remembered.items() if w.paused_at is not None}

    def takes_builds(self, connection: WorkerConnection) -> bool:
        """Whether the dispatcher may give ``connection`` a new build."""
        return connection.name not in self.paused and self._leaving.get(connection.name) is not connection

    def shutting_down(self, name: str) -> bool:
        connection = self._registry.connections.get(name)
        return connection is not None and self._leaving.get(name) is connection

    def state(self, name: str) -> dict[str, Any]:
        """What the API and the events say about the worker's controls."""
        return {
            "paused": name in self.paused,
            "paused_reason": self.paused.get(name),
            "shutting_down": self.shutting_down(name),
        }

    async def pause(self, name: str, reason: str = "") -> None:
        self._known(name)
        await self._store().workers.paused(name, reason, time.time())
        self.paused[name] = reason
        log.info("worker %s paused%s", name, f": {reason}" if reason else "")
        self._changed(name)

    async def unpause(self, name: str) -> None:
        self._known(name)
        await self._store().workers.paused(name, None, time.time())
        if self.paused.pop(name, None) is not None:
            log.info("worker %s unpaused", name)
        self._changed(name)
        self._worker_ready(name)

    def shutdown(self, name: str, graceful: bool = True) -> None:
        """Tell a connected worker to leave: after its running builds (graceful), or now.

        Raises:
            NotFound: no such worker. InvalidRequest: it is not connected.
        """
        self._known(name)
        connection = self._registry.connections.get(name)
        if connection is None:
            raise InvalidRequest(f"worker {name!r} is not connected")
        self._leaving[name] = connection
        log.info("worker %s shutting down %s", name, "once its builds end" if graceful else "now")
        if graceful:
            self.build_ended(connection)
        else:
            for build in self._builds_on(connection):
                build.stop(f"worker {name} was shut down", Result.RETRY)
            connection.send(protocol.SHUTDOWN, Shutdown(graceful=False).encode())
        self._changed(name)

    def build_ended(self, connection: WorkerConnection) -> None:
        """A build on ``connection`` is over: a worker leaving gracefully goes once it runs none."""
        leaving = self._leaving.get(connection.name) is connection and not connection.lost
        if leaving and not self._builds_on(connection):
            connection.send(protocol.SHUTDOWN, Shutdown(graceful=True).encode())

    def lost(self, connection: WorkerConnection) -> None:
        if self._leaving.get(connection.name) is connection:
            del self._leaving[connection.name]

    def _known(self, name: str) -> None:
        if name not in self._registry.workers and name not in self._registry.connections:
            raise NotFound(f"no worker named {name!r}")

    def _changed(self, name: str) -> None:
        self._events.emit(EventKind.WORKER_CHANGED, worker=name, **self.state(name))
