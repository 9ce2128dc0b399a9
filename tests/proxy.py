"""A TCP proxy on loopback between workers and a master, to break the link between them at will.

It runs its own asyncio loop on a thread of its own, so a test (or a benchmark) drives it with plain
calls while its processes run:

- :meth:`LoopbackProxy.pause` holds every byte either way, on the connections open and on those
  that come meanwhile (they wait to be connected), as a network that drops packets does: neither
  side hears the other, and neither knows why; :meth:`LoopbackProxy.resume` lets it all through,
  what waited first. A pause shorter than the liveness window is a blip nobody has to notice.
- :meth:`LoopbackProxy.cut` resets every connection at once (a broken route, a restarted NAT).
- :meth:`LoopbackProxy.deafen_worker` makes the link one-way: the master still hears the worker,
  which hears nothing back.
- With ``record``, it keeps what workers send, as an eavesdropper on a link without CURVE would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .support import zmtp_messages

T = TypeVar("T")

#: Bytes read at once from either side.
_READ = 65536


class _Link:
    """One proxied connection; while ``deaf``, what the master sends the worker is thrown away."""

    def __init__(self, worker: asyncio.StreamWriter):
        self.worker = worker
        self.master: asyncio.StreamWriter | None = None
        self.deaf = False
        #: What the worker sent, when the proxy records.
        self.sent = bytearray()

    def abort(self) -> None:
        for writer in (self.worker, self.master):
            if writer is not None:
                writer.transport.abort()


class LoopbackProxy:
    """Listens on a free loopback port (:attr:`port`) and passes each connection on to ``target_port``."""

    def __init__(self, target_port: int, record: bool = False):
        self.target_port = target_port
        self.record = record
        #: Connections taken in so far (a worker that reconnects makes one more).
        self.accepted = 0
        self.links: list[_Link] = []
        self.closed: list[_Link] = []
        self._deafen_after: int | None = None  # bytes from the worker still to pass before it goes deaf
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-proxy", daemon=True)
        self._thread.start()
        self._flowing = self._call(self._make_event())
        self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the proxy's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    @staticmethod
    async def _make_event() -> asyncio.Event:
        flowing = asyncio.Event()
        flowing.set()
        return flowing

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self.accepted += 1
        self.links.append(link)
        try:
            await self._flowing.wait()  # a connection made during a pause waits for its end
            try:
                master_reader, link.master = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:  # the master is down: the worker tries again later, as over a real network
                return
            await asyncio.gather(self._pump(link, reader, link.master, True), self._pump(link, master_reader, writer))
        finally:
            link.abort()
            with contextlib.suppress(ValueError):
                self.links.remove(link)
                self.closed.append(link)

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter, to_master: bool = False
    ) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await source.read(_READ)
                if not data:
                    break
                await self._flowing.wait()  # read just before a pause: held until it ends
                if to_master:
                    self._count_towards_deafness(len(data))
                    if self.record:
                        link.sent += data
                elif link.deaf:
                    continue  # read and dropped, so the master never blocks on a full socket
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        link.abort()

    def _count_towards_deafness(self, size: int) -> None:
        if self._deafen_after is None:
            return
        self._deafen_after -= size
        if self._deafen_after < 0:
            self._deafen_after = None
            for link in self.links:
                link.deaf = True

    # -- what a test does ---------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every byte either way from now on, and every new connection, until :meth:`resume`."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        """Let through what was held, and what comes after."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        """Reset every connection open now."""

        async def cut() -> None:
            for link in list(self.links):
                link.abort()

        self._call(cut())

    def deafen_worker(self, after: int = 0) -> None:
        """Once the worker has sent ``after`` more bytes, drop whatever the master sends it on the
        connections open then (later connections are fine): the worker notices only by the silence."""

        async def deafen() -> None:
            if after <= 0:
                for link in self.links:
                    link.deaf = True
            else:
                self._deafen_after = after

        self._call(deafen())

    def worker_messages(self) -> list[list[bytes]]:
        """Every message the workers sent through the proxy so far, connection by connection
        (when it records)."""

        async def streams() -> list[bytes]:
            return [bytes(link.sent) for link in self.closed + self.links]

        return [message for stream in self._call(streams()) for message in zmtp_messages(stream)]

    def close(self) -> None:
        """Stop listening, reset every connection and end the proxy's thread."""

        async def close() -> None:
            self._server.close()
            for link in list(self.links):
                link.abort()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
