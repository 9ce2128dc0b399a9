"""In-process events: what happened in the master, for the event stream, panels and tests.

Subscribers are plain callables run synchronously in the loop; they must not block (a WebSocket
subscriber only queues a write). With no subscriber an event costs one attribute check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of master events: ``{"type": "build.finished", "time": ..., ...}``."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []

    def wants(self, kind: str) -> bool:
        """True when someone listens to ``kind`` (emitters skip building costly payloads otherwise)."""
        return any(types is None or kind in types for _, types in self._subscribers)

    def subscribe(self, subscriber: Subscriber, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``subscriber`` with every event (or those of ``types``); returns the unsubscribe function."""
        entry = (subscriber, None if types is None else frozenset(types))
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def emit(self, kind: str, **data: Any) -> None:
        if not self._subscribers:
            return
        event = None
        for subscriber, types in list(self._subscribers):
            if types is not None and kind not in types:
                continue
            if event is None:
                event = {"type": kind, "time": time.time(), **data}
            try:
                subscriber(event)
            except Exception:  # one broken listener must not stop the others, or the build
                log.exception("event subscriber %r failed on %s", subscriber, kind)
