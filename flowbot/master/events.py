"""In-process events: what happened in the master, for the event stream, panels and tests.

Subscribers are plain callables run synchronously in the loop; they must not block (a WebSocket
subscriber only queues a write). With no subscriber an event costs one attribute check.

Every event built gets an ``id``: the time it was made in integer microseconds, forced to grow
strictly. Ids therefore keep growing across master restarts, and a client that says "everything
after id N" can be answered from :class:`EventJournal` (recent events) and, for the finished
builds older than the journal remembers, from the store by time.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

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
    #: A step's end is stored (``build_id, builder, step, name, result, hidden, summary``).
    STEP_FINISHED = "step.finished"
    #: Live log lines (``build_id, builder, step, log, first, lines``).
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


def id_to_time(event_id: int) -> float:
    """The epoch time (seconds) an event id stands for."""
    return event_id / 1_000_000


class EventBus:
    """Fan-out of master events: ``{"type": "build.finished", "id": ..., "time": ..., ...}``."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []
        self.last_id = self._new_id()

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
