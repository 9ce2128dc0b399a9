"""A worker's side of the link: dial out to the master, say hello, run what it is told.

The worker opens a DEALER socket to the master's ROUTER, so it can sit behind NAT. It signs every
message with its secret and checks every message from the master. When the master goes silent for
longer than the liveness window, or refuses it, the worker closes the socket, waits (backing off
from 1 s to 5 s, jittered: see :mod:`flowbot_worker.backoff`), opens a fresh one and says hello
again, listing the commands it still holds so the master can resume them, or tell it to cancel
them. It keeps each command's result until the master acknowledges it, in its journal too (see
:mod:`flowbot_worker.journal`), so a worker started again after a crash reports the results the
master missed and names the commands it died running. A worker that has heard nothing from its
master for longer than the fence the master set (a few windows) stops every command it runs and
starts afresh, as after a restart: by then the master has given its builds up, or is about to, and
runs them elsewhere (see :mod:`flowbot_worker.fence`, which kills the commands even while this
process is frozen or dead). Each connection starts with a challenge from
the master (see :mod:`flowbot_worker.protocol`), so no message of one connection counts on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from . import __version__, protocol
from .backoff import Backoff
from .bodies import (
    Challenge,
    Decode,
    Disconnect,
    FileCredit,
    FileData,
    Finished,
    FinishedAck,
    Heartbeat,
    Hello,
    Interrupt,
    OutputAck,
    Shutdown,
    StartCommand,
    Welcome,
    decode_ack,
)
from .commands import COMMANDS, Command, Outcome
from .curve import ClientKeys
from .defaults import (
    FINISHED_RESEND,
    HEARTBEAT_INTERVAL,
    HELLO_TIMEOUT,
    LIVENESS,
    MAX_FRAME_BYTES,
)
from .errors import CommandError, ProtocolError
from .fence import Fence, Lease
from .handshake import Handshake
from .journal import Entry, Journal
from .output import OutputBuffer
from .tasks import Tasks

log = logging.getLogger("flowbot_worker")

#: How many finished-and-acknowledged command ids to remember, so a repeated start is not rerun.
_REMEMBERED = 1024


class _Unknown(Command):
    """Stands in for a command this worker does not have, so the master hears why."""

    name = "unknown"

    async def run(self) -> Outcome:
        return Outcome(None, protocol.INVALID, f"this worker has no command {self.args['name']!r}")


class _Unjournaled(Command):
    """Stands in for a command the journal could not note: it does not run, and the master hears why."""

    name = "unjournaled"

    async def run(self) -> Outcome:
        return Outcome(None, "error", f"the worker cannot note the command in its journal: {self.args['why']}")


class _Recovered(Command):
    """A command that ended under an earlier process of this worker, read back from its journal:
    only its result and its output are left, to report."""

    name = "recovered"


@dataclass(eq=False)
class _Held:
    """A command the worker holds: running, or finished and waiting for the master's ack."""

    command: Command
    output: OutputBuffer
    started: float
    task: asyncio.Task | None = None
    finished: dict[str, Any] | None = None
    finished_sent_at: float = field(default=0.0)


class Worker:
    """One worker process.

    Args:
        master: the master's ZeroMQ endpoint, e.g. ``tcp://ci.example.org:9989``.
        name: the name the master knows this worker by.
        secret: the shared secret that signs every message.
        basedir: where builds run; one directory per builder is made inside it.
        curve: keys to encrypt the link with (CURVE), for a master that requires it.
        keep_trying: say hello again after a refusal the master calls final (a wrong secret, a
            name it does not know), as after any other; by default the worker stops, and
            :attr:`refused` says why.
        context: a ZeroMQ context to share with other workers in this process (each then needs no
            I/O thread of its own); by default the worker makes one and ends it when it stops.
    """

    def __init__(
        self,
        master: str,
        name: str,
        secret: str,
        basedir: str | Path,
        *,
        exit_with_parent: bool = False,
        curve: ClientKeys | None = None,
        keep_trying: bool = False,
        context: zmq.asyncio.Context | None = None,
    ):
        self.master = master
        self.keep_trying = keep_trying
        #: Why the master refused this worker for good, once it has (the worker then stops).
        self.refused: str | None = None
        self.curve = curve
        self.exit_with_parent = exit_with_parent
        self.name = name
        self.basedir = Path(basedir).resolve()
        self._secret = secret.encode()
        self.channel = protocol.Channel(self._secret)
        self.lease = Lease(Fence.shared())
        self.heartbeat = HEARTBEAT_INTERVAL
        self.liveness = LIVENESS
        #: How output is buffered, as the master's welcome says (see :class:`~flowbot_worker.bodies.Welcome`).
        self.flush_settings: dict[str, float] = {}
        self._own_ctx = context is None
        self._ctx = zmq.asyncio.Context() if context is None else context
        self._sock: zmq.asyncio.Socket | None = None
        self._welcomed = False
        self._held: dict[str, _Held] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._journal = Journal(self.basedir)
        #: Commands an earlier process started and never saw end, until a master has heard of them.
        self._lost: list[str] = []
        self._last_sent = 0.0
        self._last_recv = 0.0
        self._stop = asyncio.Event()
        self._graceful = False
        self._tasks = Tasks()  # the commands, and what runs beside them

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until :meth:`stop` or a ``shutdown`` from the master."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        self._recover(self._journal.entries())
        backoff = Backoff()
        if self.exit_with_parent:
            self._tasks.spawn(self._exit_with_parent(), "exit with parent")
        try:
            while not self._stop.is_set():
                welcomed = await self._session()
                if self._stop.is_set():
                    break
                if welcomed:
                    # Try again at once: back within the liveness window, running commands resume.
                    log.info("reconnecting to %s", self.master)
                    backoff.reset()
                    continue
                pause = backoff.pause()
                log.info("reconnecting to %s in %.1f s", self.master, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
        finally:
            try:
                await self._shutdown()
            finally:
                await self._tasks.cancel()  # commands that outlived their interrupt, and the rest

    def _recover(self, entries: list[Entry]) -> None:
        """Take back what an earlier process of this worker left in the journal: the results it
        had not seen acknowledged, to report again, and the commands it died running, to name."""
        for entry in entries:
            self._done[entry.cmd_id] = None  # never run again under this id
            if entry.finished is None:
                self._lost.append(entry.cmd_id)
                continue
            output = OutputBuffer(entry.cmd_id, self._send, lambda: None, **self.flush_settings)
            output.restore(entry.output)
            command = _Recovered(entry.cmd_id, {}, self.basedir, output)
            self._held[entry.cmd_id] = _Held(command, output, time.monotonic(), finished=entry.finished)
        if entries:
            log.info(
                "the journal holds %d result(s) to report and %d command(s) this worker died running",
                len(entries) - len(self._lost),
                len(self._lost),
            )

    async def _exit_with_parent(self) -> None:
        """Stop when the process that started this worker is gone (a notebook kernel, say)."""
        parent = os.getppid()
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.info("the process that started this worker (pid %d) is gone; stopping", parent)
        self.stop()

    def stop(self, graceful: bool = False) -> None:
        """Leave: at once (running commands are interrupted), or, ``graceful``, once the master has
        the results of the commands running now; the link stays up meanwhile, so their output
        keeps flowing and the master does not count the worker as lost."""
        self._graceful = graceful
        if graceful and self._held:
            log.info("leaving once %d command(s) have finished", len(self._held))
        else:
            self._stop.set()

    def _leave_if_done(self) -> None:
        if self._graceful and not self._held:
            self._stop.set()

    async def _shutdown(self) -> None:
        for held in self._held.values():
            held.command.interrupt("worker shutting down", 1.0)
        tasks = [h.task for h in self._held.values() if h.task and not h.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        if self._sock is not None:
            if self._welcomed:
                self._send(protocol.DISCONNECT, Disconnect("worker shutting down").encode())
            self._sock.close(linger=200)
            self._sock = None
        if self._own_ctx:
            self._ctx.term()

    # -- one connection -------------------------------------------------------------------------

    async def _session(self) -> bool:
        """Connect, say hello, serve until the master is lost or refuses; True if welcomed."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)  # larger frames cut the link before they are buffered
        if self.curve is not None:
            self.curve.apply(sock)
        handshake = Handshake(sock, self.name, self.curve)
        sock.connect(self.master)
        self._sock, self._welcomed = sock, False
        self.channel.open()  # a fresh nonce: what this connection's messages are bound to
        self._send(protocol.HELLO, self._hello())
        log.info("connecting to %s as %r", self.master, self.name)
        deadline = time.monotonic() + HELLO_TIMEOUT
        self._last_recv = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._fenced(now):
                    return True
                if not self._welcomed:
                    failure = await handshake.failure()
                    if failure is not None:
                        log.error("cannot connect to %s: %s", self.master, failure)
                        return False
                    if now > deadline:
                        log.warning("no answer from %s within %.0f s", self.master, HELLO_TIMEOUT)
                        return False
                if self._welcomed and now - self._last_recv > self.heartbeat * self.liveness:
                    log.warning(
                        "master silent for %.1f s (liveness %d x %.1f s): connection lost",
                        now - self._last_recv,
                        self.liveness,
                        self.heartbeat,
                    )
                    return True
                if self._welcomed:
                    self._tick(now)
                if not await sock.poll(timeout=int(min(self.heartbeat, 1.0) * 500) or 1):
                    continue
                if self._fenced(time.monotonic()):  # frozen past the fence: what waited is stale
                    return True
                while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    verdict = self._receive(await sock.recv_multipart())
                    if verdict is not None:
                        return verdict
            return self._welcomed
        finally:
            handshake.close()
            if not self._stop.is_set():  # otherwise _shutdown says goodbye on this socket
                sock.close(linger=0)
                self._sock = None

    def _hello(self) -> dict[str, Any]:
        info = {
            "worker_version": __version__,
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "os": os.name,
            "basedir": str(self.basedir),
            "pid": os.getpid(),
        }
        held = {
            cmd_id: {"offsets": h.output.offsets(), "lines": h.output.lines(), "finished": h.finished is not None}
            for cmd_id, h in self._held.items()
        }
        return Hello(self.name, protocol.VERSION, info, held, list(self._lost)).encode()

    def _tick(self, now: float) -> None:
        """Timers of a live session: heartbeats when idle, re-sent ``finished`` messages."""
        if now - self._last_sent >= self.heartbeat:
            self._send(protocol.HEARTBEAT, Heartbeat().encode())
        for held in self._held.values():
            if held.finished is not None and now - held.finished_sent_at >= FINISHED_RESEND:
                self._send_finished(held)

    def _send(self, kind: str, content: dict[str, Any] | None = None, blobs: tuple = ()) -> None:
        if self._sock is None:
            return
        sent = self._sock.send_multipart(self.channel.pack(kind, content, blobs), copy=False)
        sent.add_done_callback(
            lambda f: (
                f.cancelled()
                or f.exception() is None
                or log.warning("cannot send %s to the master: %s", kind, f.exception())
            )
        )
        self._last_sent = time.monotonic()

    # -- messages from the master ---------------------------------------------------------------

    def _receive(self, frames: list[bytes]) -> bool | None:
        """Handle one message; returns a session verdict when the session must end."""
        try:
            message = protocol.parse(frames)
            if message.type == protocol.DISCONNECT and not frames[1]:
                # Unsigned refusals are the only unsigned messages a worker listens to.
                return self._on_refusal(Disconnect.decode(message.content))
            message = self.channel.accept(frames, message)
        except ProtocolError as exc:
            log.warning("dropped a message from the master: %s", exc)
            return None
        self._last_recv = time.monotonic()
        self.lease.renew(self._last_recv)
        handler = _HANDLERS.get(message.type)
        if handler is None:
            log.warning("ignored unexpected %s from the master", message.type)
            return None
        decode, handle = handler
        try:
            body = decode(message.content, message.blobs)
        except ProtocolError as exc:
            log.warning("dropped a %s from the master: %s", message.type, exc)
            return None
        return handle(self, body)

    def _on_refusal(self, refusal: Disconnect) -> bool:
        log.error("the master refused this worker: %s", refusal.reason)
        if refusal.final and not self.keep_trying:
            self.refused = refusal.reason
            self._stop.set()
        return self._welcomed

    def _on_challenge(self, challenge: Challenge) -> None:
        if self.channel.bound:
            log.warning("ignored a challenge from the master that does not fit this connection's hello")
            return
        # Say hello again, signed over the master's fresh nonce: the proof that this hello is not a replay.
        self.channel.extend(challenge.nonce)
        self._send(protocol.HELLO, self._hello())

    def _on_welcome(self, welcome: Welcome) -> None:
        if not self.channel.bound:
            log.warning("ignored a welcome that answers no challenge")
            return
        self.heartbeat = welcome.heartbeat
        self.liveness = welcome.liveness
        self.flush_settings = welcome.output
        self.lease.seconds = welcome.fence
        self._welcomed = True
        log.info("connected to %s (heartbeat %.1f s x %d)", self.master, self.heartbeat, self.liveness)
        for cmd_id in self._lost:  # the master has heard of them
            self._journal.forget(cmd_id)
        self._lost = []
        for cmd_id in welcome.cancel:
            held = self._held.pop(cmd_id, None)
            if held is not None:
                log.info("master does not know command %s any more; cancelling it", cmd_id)
                held.command.interrupt("cancelled by the master after a reconnect", 1.0)
                held.output.close()
                self._journal.forget(cmd_id)
        for cmd_id, offsets in welcome.resume.items():
            held = self._held.get(cmd_id)
            if held is not None:
                # The master has received everything below these offsets, but not necessarily
                # stored it: the bytes stay here until it acknowledges them (it does so again now).
                held.output.replay(offsets)
                if held.finished is not None:
                    self._send_finished(held)
        self._leave_if_done()  # a graceful leave waiting for commands this master cancelled

    def _on_heartbeat(self, heartbeat: Heartbeat) -> None:
        pass

    def _on_disconnect(self, goodbye: Disconnect) -> bool:
        log.warning("master disconnected this worker: %s", goodbye.reason)
        return self._welcomed

    def _on_shutdown(self, shutdown: Shutdown) -> bool | None:
        log.info("master asked this worker to shut down (%s)", "graceful" if shutdown.graceful else "now")
        self.stop(shutdown.graceful)
        return True if self._stop.is_set() else None

    def _on_start_command(self, start: StartCommand) -> None:
        cmd_id, name, args = start.cmd_id, start.name, start.args
        if cmd_id in self._held or cmd_id in self._done:
            return  # sent again after a reconnect: never run twice
        output = OutputBuffer(
            cmd_id,
            self._send,
            lambda: self._window_open(cmd_id),
            **self.flush_settings,
        )
        if name not in COMMANDS:
            cls, args = _Unknown, {"name": name}
        else:
            cls = COMMANDS[name]
        try:
            self._journal.started(cmd_id)
        except OSError as exc:
            log.error("cannot note command %s in the journal: %s", cmd_id, exc)
            cls, args = _Unjournaled, {"why": str(exc)}
        held = _Held(cls(cmd_id, args, self.basedir, output, self._send, self.lease), output, time.monotonic())
        self._held[cmd_id] = held
        held.task = self._tasks.spawn(self._execute(cmd_id, held), f"command {cmd_id}")

    def _on_interrupt(self, interrupt: Interrupt) -> None:
        held = self._held.get(interrupt.cmd_id)
        if held is not None and held.finished is None:
            held.command.interrupt(interrupt.reason, interrupt.grace)

    def _on_file_data(self, chunk: FileData) -> None:
        held = self._held.get(chunk.cmd_id)
        if held is not None and held.finished is None:
            held.command.file_data(chunk)

    def _on_file_credit(self, credit: FileCredit) -> None:
        held = self._held.get(credit.cmd_id)
        if held is not None:
            held.command.file_credit(credit.credits)

    def _on_ack(self, ack: OutputAck | FinishedAck) -> None:
        if type(ack) is FinishedAck:
            for cmd_id in ack.cmd_ids:
                self._forget(cmd_id)
            self._leave_if_done()
            return
        held = self._held.get(ack.cmd_id)
        if held is not None:
            held.output.ack(ack.offsets)

    def _forget(self, cmd_id: str) -> None:
        """The master has the result of ``cmd_id``: let the command go, remembering its id."""
        held = self._held.get(cmd_id)
        if held is None or held.finished is None:
            return
        del self._held[cmd_id]
        held.output.close()
        self._journal.forget(cmd_id)
        self._done[cmd_id] = None
        if len(self._done) > _REMEMBERED:
            self._done.popitem(last=False)

    # -- running commands -----------------------------------------------------------------------

    async def _execute(self, cmd_id: str, held: _Held) -> None:
        try:
            outcome = await held.command.run()
        except CommandError as exc:
            outcome = Outcome(None, protocol.INVALID, str(exc))
        except Exception as exc:  # a bug in a command must not take the worker down
            log.exception("command %s failed", cmd_id)
            outcome = Outcome(None, "error", f"worker error: {exc!r}")
        self._finish(cmd_id, held, outcome)

    def _finish(self, cmd_id: str, held: _Held, outcome: Outcome) -> None:
        held.output.flush()
        held.finished = Finished(
            cmd_id,
            outcome.rc,
            outcome.reason,
            outcome.message,
            time.monotonic() - held.started,
            outcome.data,
            {name: end for name, (_, end) in held.output.offsets().items()},
        ).encode()
        if self._held.get(cmd_id) is held and not self.lease.lapsed(time.monotonic()):
            # Kept before it is reported: a worker killed now reports it once started again.
            self._journal.finished(cmd_id, held.finished, held.output.tails())
            self._send_finished(held)  # once lapsed, the session ends and the fence drops it unsent

    def _send_finished(self, held: _Held) -> None:
        held.finished_sent_at = time.monotonic()
        self._send(protocol.FINISHED, held.finished)

    def _fenced(self, now: float) -> bool:
        """Stop every command and start afresh (a new session) if the master has been silent past
        the fence; True if so. Nothing a command did is reported after that: the master has given
        the builds up, or will before it hears from this worker again."""
        if not (self._held and self.lease.lapsed(now)):
            return False
        log.warning(
            "heard nothing from the master for %.1f s (fence %.1f s): stopping %d command(s)",
            now - self.lease.heard,
            self.lease.seconds,
            len(self._held),
        )
        self.lease.kill()
        for cmd_id, held in self._held.items():
            held.command.interrupt("the master was silent past the fence", 0.0)
            held.output.close()
            self._journal.forget(cmd_id)
            self._done[cmd_id] = None
        self._held.clear()
        self.channel = protocol.Channel(self._secret)
        return True

    def _window_open(self, cmd_id: str) -> None:
        held = self._held.get(cmd_id)
        if held is not None:
            held.command.resume_reading()


#: What the worker does with each kind of message from the master (every other kind is ignored):
#: how it reads the body, and what it does with it.
_HANDLERS: dict[str, tuple[Decode, Callable[[Worker, Any], bool | None]]] = {
    protocol.CHALLENGE: (Challenge.decode, Worker._on_challenge),
    protocol.WELCOME: (Welcome.decode, Worker._on_welcome),
    protocol.HEARTBEAT: (Heartbeat.decode, Worker._on_heartbeat),
    protocol.DISCONNECT: (Disconnect.decode, Worker._on_disconnect),
    protocol.SHUTDOWN: (Shutdown.decode, Worker._on_shutdown),
    protocol.START_COMMAND: (StartCommand.decode, Worker._on_start_command),
    protocol.INTERRUPT: (Interrupt.decode, Worker._on_interrupt),
    protocol.FILE_DATA: (FileData.decode, Worker._on_file_data),
    protocol.FILE_CREDIT: (FileCredit.decode, Worker._on_file_credit),
    protocol.ACK: (decode_ack, Worker._on_ack),
}
