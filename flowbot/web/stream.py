"""``/api/events``: the master's events as a WebSocket stream, filtered and resumable.

Query arguments (all optional):

- ``types=build.finished,worker.lost``: only those kinds (see :class:`~flowbot.master.events.EventKind`).
  Without it a client gets every kind, live log lines included.
- ``builder=NAME``: only events about that builder's requests, builds and steps (and worker events).
- ``build=ID``: only events about that build.
- ``since=ID``: first replay what happened after the event with that id, then go live.

The first message is ``{"type": "hello", "last_id": ..., "replay": ...}``. Every event carries an
``id``; a client remembers the largest it has seen and reconnects with ``since=`` it. Recent events
come from the journal; when the client was away longer than the journal remembers (or the master
restarted), the ``build.finished`` events it missed are rebuilt from the store, a page at a time
however many there are (marked ``replayed``, without an id, and possibly repeating one the client
saw: clients key builds by id). The hello's ``replayed`` counts a journal replay; it is null for one
from the store. Live log lines are never replayed: fetch the log tail instead.

A client that cannot keep up (more than :data:`~flowbot.defaults.EVENT_CLIENT_BACKLOG_BYTES`
unsent) is disconnected (close code 1013) rather than allowed to grow the master's memory; it
reconnects with ``since=`` and loses nothing it could not fetch again. The replay itself is
paced by the client (each batch is sent when it has taken the one before), so a client resuming
from far back gets all of it however long it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.websocket

from ..defaults import (
    EVENT_CLIENT_BACKLOG,
    EVENT_CLIENT_BACKLOG_BYTES,
    EVENT_FLUSH_DELAY,
    EVENT_RESUME_SLACK,
    MAX_LIST,
)
from ..errors import InvalidRequest, NotFound
from ..master.events import Event, EventJournal, EventKind, concerns, id_to_time
from ..record_json import build_json
from .access import authorize_read
from .api import error_status, json_error

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from .services import WebServices

log = logging.getLogger(__name__)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class EventFilter:
    """Which events a client asked for; stateless, so a replay and the live stream agree."""

    def __init__(self, types: frozenset[EventKind] | None, builder: str | None, build: int | None):
        self.types = types
        self.builder = builder
        self.build = build

    @classmethod
    def parse(cls, pipeline: Pipeline, arguments: dict[str, str | None]) -> EventFilter:
        """Check the query arguments against ``pipeline``'s builders.

        Raises:
            InvalidRequest: an unknown type or a malformed id. NotFound: an unknown builder.
        """
        types = None
        if arguments.get("types"):
            names = {t.strip() for t in arguments["types"].split(",") if t.strip()}
            unknown = names - set(EventKind)
            if unknown:
                known = [kind.value for kind in EventKind]
                raise InvalidRequest(f"unknown event type(s) {sorted(unknown)}; known: {known}")
            types = frozenset(EventKind(name) for name in names)
        builder = arguments.get("builder") or None
        if builder is not None and pipeline.builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        return cls(types, builder, _int(arguments.get("build"), "build"))

    def wants(self, event: Event) -> bool:
        return concerns(event, self.types, self.builder, self.build)


class EventStreamHandler(tornado.websocket.WebSocketHandler):
    """``/api/events``: every master event, one JSON text message each.

    Each event is encoded once, as a WebSocket frame that every client is sent as it is (frames
    from a server are not masked, and these are never compressed), and what one client is due goes
    to its socket in one write, at most every :data:`~flowbot.defaults.EVENT_FLUSH_DELAY` seconds
    (see :class:`_Outbox`).
    """

    def initialize(self, services: WebServices, journal: EventJournal) -> None:
        self.services = services
        self.reads = services.reads
        self.journal = journal
        self._unsubscribe: Any = None
        self._buffer: list[Event] | None = None
        self._frames: list[bytes] = []  # due to the client in this turn of the loop
        self._unsent = 0  # bytes due to the client or written to its socket's buffer and not yet taken
        self._written: asyncio.Future[None] | None = None  # the last write to the socket

    def get_compression_options(self) -> None:
        """No compression: the frames are shared by every client."""
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Checked before the upgrade, so a bad request gets a plain HTTP error with a message.
        try:
            await authorize_read(self, self.reads.pipeline().auth)
            self.filter = EventFilter.parse(
                self.reads.pipeline(), {k: self.get_query_argument(k, None) for k in ("types", "builder", "build")}
            )
            self.since = _int(self.get_query_argument("since", None), "since")
        except Exception as exc:
            status = error_status(exc)
            if status is None:
                raise
            self.set_status(status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json_error(exc))
            return
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # Subscribe and take the journal's snapshot in the same turn of the loop: nothing falls
        # between them, and nothing is both replayed and sent live.
        self._buffer = []
        self._unsubscribe = self.services.events.subscribe(self._on_event, self.filter.types)
        last_id = self.services.events.last_id
        replay: list[Event] = []
        how = "none"
        if self.since is not None:
            replay = [e for e in self.journal.after(self.since) if self.filter.wants(e)]
            how = "journal" if self.journal.covers(self.since) else "store"
        counted = len(replay) if how != "store" else None  # the store is read a page at a time
        if not self._send({"type": "hello", "last_id": last_id, "replay": how, "replayed": counted}):
            return
        if how == "store" and not await self._replay_store(replay, id_to_time(last_id)):
            return
        if not await self._send_paced({**event, "replayed": True} for event in replay):
            return
        # Live events that came meanwhile, then live ones as they come (no await between the two).
        while self._buffer:
            buffered, self._buffer = self._buffer, []
            if not await self._send_paced(buffered):
                return
        self._buffer = None

    async def _send_paced(self, events: Iterable[Event]) -> bool:
        """Send ``events`` in order, waiting for the client to take them whenever half the backlog
        allowed is unsent; False when the connection is gone."""
        for event in events:
            if not self._send(event):
                return False
            if self._unsent >= EVENT_CLIENT_BACKLOG_BYTES // 2:
                self._flush()
                try:
                    await self._written
                except tornado.iostream.StreamClosedError:
                    return False
        return True

    async def _replay_store(self, journal_events: list[Event], until: float) -> bool:
        """Send the ``build.finished`` events older than the journal, rebuilt from the store a page
        at a time, up to the builds that finished by ``until`` (later ones come live); False when
        the connection is gone."""
        if self.filter.types is not None and EventKind.BUILD_FINISHED not in self.filter.types:
            return True
        seen = {e["build"]["id"] for e in journal_events if e["type"] == EventKind.BUILD_FINISHED}
        when, after_id = id_to_time(self.since) - EVENT_RESUME_SLACK, None
        while True:
            builds = await self.reads.store.builds.finished_after(
                when, after_id=after_id, builder=self.filter.builder, limit=MAX_LIST
            )
            events = []
            for build in builds:
                event = {
                    "type": EventKind.BUILD_FINISHED,
                    "time": build.finished_at,
                    "build": build_json(build),
                    "replayed": True,
                }
                if build.finished_at <= until and build.id not in seen and self.filter.wants(event):
                    events.append(event)
            if not await self._send_paced(events):
                return False
            if len(builds) < MAX_LIST or builds[-1].finished_at > until:
                return True
            when, after_id = builds[-1].finished_at, builds[-1].id

    def _on_event(self, event: Event) -> None:
        if not self.filter.wants(event):
            return
        if self._buffer is None:
            self._send(event)
        elif len(self._buffer) >= EVENT_CLIENT_BACKLOG:
            self._too_slow(f"{len(self._buffer)} events")
        else:
            self._buffer.append(event)

    def _send(self, event: Event) -> bool:
        """Queue one message for this turn's write; False when the connection is gone."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return False
        frame = _frame(event)
        if self._unsent + len(frame) > EVENT_CLIENT_BACKLOG_BYTES:
            self._too_slow(f"{self._unsent} bytes")
            return False
        if not self._frames:
            _outbox.add(self)
        self._frames.append(frame)
        self._unsent += len(frame)
        return True

    def _flush(self) -> None:
        """Write the frames due to the client in one go."""
        if not self._frames:
            return
        data = b"".join(self._frames)
        self._frames = []
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            self._written = self.ws_connection.stream.write(data)
        except tornado.iostream.StreamClosedError:
            self._stop_listening()
            return
        if self._written.done():  # the socket took it all at once
            self._taken(self._written, len(data))
        else:
            self._written.add_done_callback(lambda written: self._taken(written, len(data)))

    def _taken(self, written: asyncio.Future[None], size: int) -> None:
        self._unsent -= size
        if not written.cancelled():
            written.exception()  # a closed socket: on_close cleans up

    def _too_slow(self, unsent: str) -> None:
        log.info("closing a slow event stream client (%s unsent)", unsent)
        self._frames = []
        self._stop_listening()
        self.close(1013, "too slow: reconnect with since=<last id seen>")

    def _stop_listening(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_close(self) -> None:
        self._stop_listening()


class _Outbox:
    """The clients with frames due, all written in one callback at most every
    :data:`~flowbot.defaults.EVENT_FLUSH_DELAY` seconds (at once after a quiet spell): a busy
    master's events reach each client in a few writes a second rather than one per turn of the loop."""

    def __init__(self) -> None:
        self._due: dict[EventStreamHandler, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, client: EventStreamHandler) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a master started in another loop (one after another, in tests)
            self._due, self._timer, self._last, self._loop = {}, None, -math.inf, loop
        self._due[client] = None
        if self._timer is None:
            self._timer = loop.call_at(max(loop.time(), self._last + EVENT_FLUSH_DELAY), self._flush)

    def _flush(self) -> None:
        self._timer, self._last = None, asyncio.get_running_loop().time()
        due, self._due = self._due, {}
        for client in due:
            client._flush()


_outbox = _Outbox()


class _Frames:
    """The last event's WebSocket frame: every client is sent the same bytes, encoded once."""

    def __init__(self) -> None:
        self._last: tuple[Event, bytes] | None = None

    def __call__(self, event: Event) -> bytes:
        if self._last is not None and self._last[0] is event:
            return self._last[1]
        payload = _dumps(event).encode()
        size = len(payload)
        # RFC 6455 5.2: FIN and the text opcode, then the length in 7, 7+16 or 7+64 bits; unmasked.
        if size < 126:
            head = struct.pack("!BB", 0x81, size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x81, 126, size)
        else:
            head = struct.pack("!BBQ", 0x81, 127, size)
        self._last = (event, head + payload)
        return self._last[1]


_frame = _Frames()


def _int(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, not {raw!r}") from None
