"""In-process events: what happened in the master, for the event stream, panels and tests.

Subscribers are plain callables run synchronously in the loop; they must not block (a WebSocket
subscriber only queues a write). With no subscriber an event costs one attribute check.

Every event built gets an ``id``: the time it was made in integer microseconds, forced to grow
strictly. Ids therefore keep growing across master restarts, and a client that says "everything
after id N" can be answered from :class:`EventJournal` (recent events) and, for the finished
builds older than the journal remembers, from the store by time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from enum import StrEnum
from typing import Any

from ..defaults import EVENT_CLIENT_BACKLOG
from ..errors import EventsLost, NotFound

log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventKind(StrEnum):
    """The kinds of events the master emits; an event's ``type`` is the value (``"build.finished"``).

    ``log`` events (live log lines) are the only costly ones: emitters build them only when
    someone :meth:`EventBus.wants` them.
    """

    #: A change was stored (``change_id, branch, revision, author``).
    CHANGE_NEW = "change.new"
    #: A build request was queued (``request_id, builder, branch, revision``).
    REQUEST_NEW = "request.new"
    #: A waiting request completed without a build (``request_id, builder, result``).
    REQUEST_CANCELLED = "request.cancelled"
    #: A build's start is stored (``build``).
    BUILD_STARTED = "build.started"
    #: A build's end is stored (``build``).
    BUILD_FINISHED = "build.finished"
    #: A step's start is stored (``build_id, builder, step, name``).
    STEP_STARTED = "step.started"
    #: A build waits for a person's decision, or waits no more (``build_id, builder, number,
    #: approval``: what it waits for, or None).
    APPROVAL = "build.approval"
    #: A step's end is stored (``build_id, builder, step, name, result, hidden, summary, attempts``).
    STEP_FINISHED = "step.finished"
    #: Live log lines (``build_id, request_id, builder, step, log, first, lines``); the build's id
    #: is None for lines that come before its start is stored.
    LOG = "log"
    #: A worker said hello (``worker, info``).
    WORKER_CONNECTED = "worker.connected"
    #: A worker left or went silent (``worker, reason``).
    WORKER_LOST = "worker.lost"
    #: A worker was paused, unpaused or told to shut down (``worker, paused, paused_reason, shutting_down``).
    WORKER_CHANGED = "worker.changed"
    #: The master runs another pipeline (``added, removed``: builder names).
    MASTER_RECONFIGURED = "master.reconfigured"


#: Every kind, in the order above.
KINDS = tuple(EventKind)

#: Events the journal keeps for clients that reconnect (everything but live log lines).
DURABLE_KINDS = frozenset(EventKind) - {EventKind.LOG}


def kinds(names: Iterable[str]) -> frozenset[EventKind]:
    """``names`` as event kinds.

    Raises:
        ValueError: a name that is no kind (a typo), with the kinds there are.
    """
    chosen = set()
    for name in names:
        try:
            chosen.add(EventKind(name))
        except ValueError:
            raise ValueError(f"unknown event type {name!r}; known: {[k.value for k in EventKind]}") from None
    return frozenset(chosen)


_KINDS = frozenset(EventKind)
#: Events about workers, which concern every builder.
WORKER_KINDS = frozenset({EventKind.WORKER_CONNECTED, EventKind.WORKER_LOST, EventKind.WORKER_CHANGED})


def concerns(event: Event, types: frozenset[EventKind] | None, builder: str | None, build: int | None) -> bool:
    """Whether ``event`` is one of ``types`` (any, when None) about ``builder`` and ``build`` (when
    given): how the event stream and :meth:`EventBus.__call__` filter alike."""
    if types is not None and event["type"] not in types:
        return False
    if builder is None and build is None:
        return True
    about = event.get("build")
    event_builder = about["builder"] if about else event.get("builder")
    build_id = about["id"] if about else event.get("build_id")
    if build is not None and build_id != build:
        return False
    if builder is not None:
        if event_builder is None:  # worker events concern every builder; changes concern none yet
            return event["type"] in WORKER_KINDS
        return event_builder == builder
    return True


def id_to_time(event_id: int) -> float:
    """The epoch time (seconds) an event id stands for."""
    return event_id / 1_000_000


class EventBus:
    """Fan-out of master events: ``{"type": "build.finished", "id": ..., "time": ..., ...}``.

    Args:
        known_builder: says whether a builder name is one of the pipeline's, so that a stream
            asked for a misspelt builder fails instead of staying silent.
    """

    def __init__(self, known_builder: Callable[[str], bool] | None = None) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []
        self.last_id = self._new_id()
        self._known_builder = known_builder

    def __call__(
        self,
        types: Iterable[str] | None = None,
        *,
        builder: str | None = None,
        build: int | None = None,
        backlog: int = EVENT_CLIENT_BACKLOG,
    ) -> AsyncIterator[Event]:
        """The events from now on, as an async stream, filtered as ``/api/events`` filters them::

            async for event in master.events(types=["build.finished"], builder="unit"):
                print(event["build"]["number"], event["build"]["result"])

        Args:
            types: the kinds wanted (:class:`EventKind` or their names); every kind by default,
                live log lines included.
            builder, build: only events about that builder's requests, builds and steps (and
                worker events), or that build.
            backlog: events a reader may fall behind by; past that, the stream raises
                :class:`~flowbot.errors.EventsLost` rather than hold the master's memory.

        Raises:
            ValueError: an unknown type. NotFound: a builder the pipeline does not have.
        """
        chosen = None if types is None else kinds(types)
        if builder is not None and self._known_builder is not None and not self._known_builder(builder):
            raise NotFound(f"no builder named {builder!r}")
        return self._stream(chosen, builder, build, backlog)

    async def _stream(
        self, types: frozenset[EventKind] | None, builder: str | None, build: int | None, backlog: int
    ) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=backlog)
        fell_behind = False

        def deliver(event: Event) -> None:
            nonlocal fell_behind
            if not concerns(event, None, builder, build):
                return
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                fell_behind = True

        unsubscribe = self.subscribe(deliver, types)
        try:
            while True:
                if fell_behind and queue.empty():
                    raise EventsLost(f"the reader fell more than {backlog} events behind; events were lost")
                yield await queue.get()
        finally:
            unsubscribe()

    def _new_id(self) -> int:
        return int(time.time() * 1_000_000)

    def wants(self, kind: EventKind) -> bool:
        """True when someone listens to ``kind`` (emitters skip building costly payloads otherwise)."""
        return any(types is None or kind in types for _, types in self._subscribers)

    def subscribe(self, subscriber: Subscriber, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``subscriber`` with every event (or those of ``types``); returns the unsubscribe function.

        Raises:
            ValueError: one of ``types`` is no :class:`EventKind`.
        """
        entry = (subscriber, None if types is None else kinds(types))
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def emit(self, kind: EventKind, **data: Any) -> None:
        """Tell the subscribers that ``kind`` happened, with ``data``.

        Raises:
            ValueError: ``kind`` is no :class:`EventKind` (checked while anyone listens).
        """
        if not self._subscribers:
            return
        if kind not in _KINDS:
            raise ValueError(f"unknown event type {kind!r}; known: {[k.value for k in EventKind]}")
        event = None
        for subscriber, types in list(self._subscribers):
            if types is not None and kind not in types:
                continue
            if event is None:
                now = time.time()
                self.last_id = max(self.last_id + 1, int(now * 1_000_000))
                event = {"type": kind, "id": self.last_id, "time": now, **data}
            try:
                subscriber(event)
            except Exception:  # one broken listener must not stop the others, or the build
                log.exception("event subscriber %r failed on %s", subscriber, kind)


class EventJournal:
    """The last ``size`` durable events, so a client that reconnects misses nothing recent.

    Args:
        bus: the bus to record.
        size: how many events to keep; older ones are forgotten (finished builds can still be
            recovered from the store).
    """

    def __init__(self, bus: EventBus, size: int):
        self.bus = bus
        self._events: deque[Event] = deque(maxlen=size)
        #: Every event with a larger id is in the journal, or still to come.
        self.complete_after = bus.last_id
        self._unsubscribe = bus.subscribe(self._record, DURABLE_KINDS)

    def _record(self, event: Event) -> None:
        if len(self._events) == self._events.maxlen:
            self.complete_after = self._events[0]["id"]
        self._events.append(event)

    def covers(self, since: int) -> bool:
        """Whether every durable event after ``since`` is still here."""
        return since >= self.complete_after

    def after(self, since: int) -> list[Event]:
        """The events kept whose id is larger than ``since``, oldest first."""
        if not self._events or self._events[-1]["id"] <= since:
            return []
        return [event for event in self._events if event["id"] > since]

    def close(self) -> None:
        self._unsubscribe()
