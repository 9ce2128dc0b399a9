"""The worker registry: the master's ROUTER socket and the workers connected to it.

Workers dial in; the registry learns who a connection is from its signed ``hello`` (never from a
ZeroMQ routing id, which anyone could claim). A hello is answered with a challenge, a fresh nonce
that holds for one hello on that route; only a hello signed over it is welcomed, so a captured
hello replayed later, to this master or to the next one, gets nowhere. A hello the registry
reaches after its worker stopped waiting for the welcome (the master's loop was held) is dropped
and counted as ``stale-hello``: the worker has left that connection and dials again, so welcoming
it would count a worker that is not there and give it builds. The registry then binds
the route to that worker and checks every message with the worker's secret and the connection's
link id (see :mod:`flowbot_worker.protocol`). Anything malformed, unsigned, replayed, bound to
another connection, oversized or from an unknown route is dropped and counted; nothing a peer
sends can raise out of here.

With a CURVE key pair the link is encrypted too (see :mod:`flowbot.master.curve`): a connection
whose public key no declared worker has is refused during the handshake, and a hello is accepted
only over a connection that proved the public key declared for the worker it names, so a stolen
secret is not enough to pose as a worker.

A worker that goes silent for the liveness window is lost: its running commands fail with
:class:`~flowbot.errors.WorkerLost`, so their builds end as RETRY. A worker that runs commands is
held longer (:attr:`WorkerRegistry.hold`, the master sending it nothing meanwhile): it stops its
commands itself once it has heard nothing for the fence it was told in its welcome, and only a
window after that are its builds given up, so a step never runs on as its build runs again
elsewhere; a worker back within the hold goes on with its commands. Silence is counted up to the
last moment the master had read everything its workers sent, so a master whose loop was held by
other work (a long commit, say) does not take its own deafness for theirs. A worker that reconnects within
the window with the same session resumes: its route is rebound and its commands carry on, output
replayed from the offsets the master holds, and any interrupt the old route may have lost is sent
again. File transfers do not resume: chunks and credit lost with the old route cannot be told from
slow ones, so a transfer under way fails as if the worker were lost, and its build is retried.
A worker that restarted (a new session) in the same directory on the same host, whose journal
(see :mod:`flowbot_worker.journal`) shows that each command of its builds either ended, its result
coming again, or never started, keeps its connection too: its builds go on, and the commands it
never had are sent again; one that died running a command loses its connection, and its builds
are retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.bodies import (
    Challenge,
    CommandResult,
    Decode,
    Disconnect,
    FileCredit,
    FileData,
    Finished,
    FinishedAck,
    Heartbeat,
    Hello,
    Interrupt,
    Output,
    OutputAck,
    Shutdown,
    StartCommand,
    Welcome,
)
from flowbot_worker.curve import KeyPair
from flowbot_worker.defaults import DATE_WINDOW, MAX_FRAME_BYTES

from ..defaults import (
    FENCE_WINDOWS,
    FILE_STALL_TIMEOUT,
    FINISHED_ACK_DELAY,
    GOODBYE_LINGER,
    HEARTBEAT_INTERVAL,
    HELLO_SLACK,
    HELLO_TIMEOUT,
    LIVENESS,
    MAX_CHALLENGES,
    OUTPUT_FLUSH_BYTES,
    OUTPUT_FLUSH_DELAY,
    OUTPUT_WINDOW,
    RECEIVE_SLICE,
    SWEEP_BATCH,
)
from ..errors import ProtocolError, WorkerLost
from ..workers import Worker
from . import curve
from .cutoffs import ZAP_DOMAIN, CutOffs, Gate
from .events import EventBus, EventKind
from .tasks import Spawn
from .transfers import Transfer, TransferError

log = logging.getLogger(__name__)

#: Why a hello naming a worker the pipeline does not declare is refused.
_UNKNOWN_WORKER = "unknown worker: the pipeline declares no worker of that name"


class OutputSink(Protocol):
    """Where a command's output goes on the master (its step's logs). The worker keeps every byte
    until it is acknowledged, and the master acknowledges a byte only once the sink has stored it."""

    def write(self, stream: str, data: bytes) -> tuple[int, asyncio.Future[None] | None]:
        """Take ``data`` of ``stream``; returns how many of the stream's last bytes the sink holds
        back unstored (a line not yet ended) and a future that resolves once the rest is stored
        (None: it is already)."""
        ...

    def end(self) -> asyncio.Future[None] | None:
        """The command finished: store what was held back; returns a future that resolves once
        everything is stored (None: it is already)."""
        ...


@dataclass(eq=False)
class RemoteCommand:
    """A command running on a worker, as the master tracks it."""

    cmd_id: str
    name: str
    args: dict[str, Any]
    output: OutputSink
    result: asyncio.Future[CommandResult]
    received: dict[str, int] = field(default_factory=dict)  # bytes held, per stream
    #: Bytes stored (or given up by the store), per stream: what the worker may forget.
    stored: dict[str, int] = field(default_factory=dict)
    #: An acknowledgement of stored output is due in this turn of the loop.
    ack_due: bool = False
    #: The master's end of a file transfer, for upload and download commands.
    transfer: Transfer | None = None
    #: The interrupt sent, if any: sent again after a reconnect, in case the old route lost it.
    interrupted: Interrupt | None = None
    #: Lines of each stream the store holds already that come again (a command taken up after a
    #: restart, whose worker goes on from the output acknowledged before it): dropped as they come.
    stored_lines: dict[str, int] = field(default_factory=dict)

    def drop_stored(self, stream: str, data: bytes) -> bytes:
        """``data`` without the lines of ``stream`` the store holds already."""
        count, at = self.stored_lines.get(stream, 0), 0
        while count and (end := data.find(b"\n", at)) >= 0:
            at, count = end + 1, count - 1
        if count:  # the rest is the start of a line stored already
            at = len(data)
        self.stored_lines[stream] = count
        return data[at:]


@dataclass(frozen=True, slots=True)
class _Challenge:
    """A hello answered with a challenge: the route is welcomed once it says hello over it."""

    name: str
    #: The connection's channel, its link holding both nonces.
    channel: protocol.Channel
    #: The hello that was challenged (the same one again is a replay).
    hello_id: str
    #: When the challenge lapses (``time.monotonic()``).
    expires: float
    #: When the worker began to wait for its welcome (``time.monotonic()``).
    began: float


class WorkerConnection:
    """One connected worker: its route, session, and the commands it runs for the master."""

    def __init__(
        self,
        registry: WorkerRegistry,
        spec: Worker,
        route: bytes,
        session: str,
        info: dict[str, Any],
        channel: protocol.Channel,
    ):
        self.registry = registry
        self.spec = spec
        self.name = spec.name
        self.route = route
        self.session = session
        self.info = info
        self.channel = channel
        self.connected_at = time.time()
        self.last_recv = time.monotonic()
        self.last_seen = time.time()
        self.last_sent = 0.0
        self.commands: dict[str, RemoteCommand] = {}
        self.lost = False
        #: Silent past the window while it runs commands: held until :attr:`WorkerRegistry.hold`,
        #: with nothing sent to it, so nothing moves its fence on.
        self.silent = False
        #: The CURVE public key the connection proved (None on a link without CURVE).
        self.key: str | None = None
        self._finished_acks: list[str] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._storing: set[str] = set()  # finished commands whose output is on its way to the store

    def send(
        self, kind: str, content: dict[str, Any] | None = None, blobs: tuple[bytes, ...] = (), re: str | None = None
    ) -> None:
        if self.silent:
            return
        self.registry.send(self.route, self.channel.pack(kind, content, blobs, re=re))
        self.last_sent = time.monotonic()

    async def run_command(
        self, cmd_id: str, name: str, args: dict[str, Any], output: OutputSink, transfer: Transfer | None = None
    ) -> CommandResult:
        """Run a command on this worker and wait for it to finish.

        Args:
            cmd_id: an id no command of this worker had before (to interrupt it by).
            transfer: the master's end of a file transfer (see :mod:`flowbot.master.transfers`).

        Raises:
            WorkerLost: the worker went away before the command finished.
        """
        if self.lost:
            raise WorkerLost(f"worker {self.name} is not connected")
        command = self._track(RemoteCommand(cmd_id, name, args, output, self._future(), transfer=transfer))
        self.send_start(command)
        if transfer is not None:
            transfer.start(
                lambda seq, final, data: self.send(
                    protocol.FILE_DATA, FileData(cmd_id, seq, final, data).encode(), (data,)
                )
            )
        return await self.outcome(command)

    def adopt(self, cmd_id: str, output: OutputSink, stored: dict[str, int]) -> RemoteCommand:
        """Take up a command the worker runs for an earlier master (one that restarted), which
        stored ``stored`` bytes of each stream of its output; await :meth:`outcome` for its end."""
        return self._track(
            RemoteCommand(cmd_id, "", {}, output, self._future(), received=dict(stored), stored=dict(stored))
        )

    async def outcome(self, command: RemoteCommand) -> CommandResult:
        """Wait for a command this connection tracks to finish.

        Raises:
            WorkerLost: the worker went away before the command finished.
        """
        try:
            return await command.result
        finally:
            self.commands.pop(command.cmd_id, None)

    def _track(self, command: RemoteCommand) -> RemoteCommand:
        self.commands[command.cmd_id] = command
        return command

    @staticmethod
    def _future() -> asyncio.Future[CommandResult]:
        return asyncio.get_running_loop().create_future()

    def ack_output(self, command: RemoteCommand, stream: str, upto: int) -> None:
        """Acknowledge ``stream``'s output below ``upto`` (stored), in one message per command and turn."""
        if upto > command.stored.get(stream, 0):
            command.stored[stream] = upto
            if not command.ack_due:
                command.ack_due = True
                asyncio.get_running_loop().call_soon(self.send_output_ack, command)

    def send_output_ack(self, command: RemoteCommand) -> None:
        command.ack_due = False
        if command.stored and not self.lost:
            self.send(protocol.ACK, OutputAck(command.cmd_id, dict(command.stored)).encode())

    def ack_finished_once_stored(self, cmd_id: str, stored: asyncio.Future[None] | None) -> None:
        """Acknowledge a ``finished`` once the command's output is stored: the worker forgets it then."""
        if stored is None:
            self.ack_finished(cmd_id)
            return
        self._storing.add(cmd_id)

        def ack(_: asyncio.Future) -> None:
            self._storing.discard(cmd_id)
            self.ack_finished(cmd_id)

        stored.add_done_callback(ack)

    def ack_finished(self, cmd_id: str) -> None:
        """Acknowledge a ``finished`` shortly, in one message with those that come meanwhile."""
        if cmd_id in self._storing:  # a repeat: the acknowledgement comes once the output is stored
            return
        self._finished_acks.append(cmd_id)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(FINISHED_ACK_DELAY, self._send_finished_acks)

    def _send_finished_acks(self) -> None:
        self._ack_timer = None
        acks, self._finished_acks = self._finished_acks, []
        if acks and not self.lost:
            self.send(protocol.ACK, FinishedAck(acks).encode())

    def send_start(self, command: RemoteCommand) -> None:
        self.send(protocol.START_COMMAND, StartCommand(command.cmd_id, command.name, command.args).encode())

    def interrupt(self, cmd_id: str, reason: str, grace: float) -> None:
        """Interrupt a running command: SIGTERM, then SIGKILL after ``grace`` seconds."""
        command = self.commands.get(cmd_id)
        if command is not None:
            command.interrupted = Interrupt(cmd_id, reason, grace)
            self.send(protocol.INTERRUPT, command.interrupted.encode())

    def abandon(self, command: RemoteCommand, failure: Exception) -> None:
        """Give up on a transfer that cannot go on: stop it on the worker, and fail its step with ``failure``."""
        self.interrupt(command.cmd_id, str(failure), 1.0)
        if not command.result.done():
            command.result.set_exception(failure)

    def fail_all(self, reason: str) -> None:
        for command in self.commands.values():
            if not command.result.done():
                command.result.set_exception(WorkerLost(reason))


class WorkerRegistry:
    """Owns the ROUTER socket and every worker connection.

    Args:
        workers: the workers the pipeline declares, by name.
        endpoint: where to bind, e.g. ``tcp://127.0.0.1:9989`` (port ``0`` or ``*``: any free port).
        events: where worker events go.
        on_connected, on_lost: called with the worker's connection when it arrives or goes.
        adopt: called with a worker's new connection and what its hello says it holds, before the
            worker is welcomed; the commands it attaches to the connection (:meth:`WorkerConnection.adopt`)
            go on, the others are cancelled.
        curve: the master's CURVE key pair, to encrypt the link and admit only declared keys.
    """

    def __init__(
        self,
        workers: dict[str, Worker],
        endpoint: str,
        events: EventBus,
        *,
        on_connected: Callable[[WorkerConnection], None],
        on_lost: Callable[[WorkerConnection], None],
        adopt: Callable[[WorkerConnection, dict[str, Any]], None],
        spawn: Spawn,
        heartbeat: float = HEARTBEAT_INTERVAL,
        liveness: int = LIVENESS,
        curve: KeyPair | None = None,
    ):
        self.workers = workers
        self._spawn = spawn
        self.curve = curve
        #: Public keys of the worker processes the master started itself, by worker name.
        self.local_keys: dict[str, str] = {}
        #: Instances of workers started on demand that may connect now, by name, each with the
        #: credential of its start as secret (see :mod:`flowbot.master.latent`).
        self.instances: dict[str, Worker] = {}
        #: Asked before an instance's worker is welcomed, with its name and session: None if the
        #: credential it signed with is still good for that worker process, else why not.
        self.claim: Callable[[str, str], str | None] = lambda name, session: None
        self.endpoint = endpoint
        self.events = events
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.adopt = adopt
        self.heartbeat = heartbeat
        self.liveness = liveness
        #: Seconds a file transfer under way may go without a chunk or credit before it fails.
        self.transfer_timeout = FILE_STALL_TIMEOUT
        #: Seconds a worker waits for its welcome (see :data:`~flowbot.defaults.HELLO_TIMEOUT`).
        self.hello_timeout = HELLO_TIMEOUT
        self.connections: dict[str, WorkerConnection] = {}
        self.dropped: Counter[str] = Counter()
        self._by_route: dict[bytes, WorkerConnection] = {}
        #: Challenges out, by route, oldest first.
        self._challenges: dict[bytes, _Challenge] = {}
        self.session = protocol.Channel(b"").session  # this master process's session id
        self._ctx = zmq.asyncio.Context()
        self._sock: zmq.asyncio.Socket | None = None
        #: The connections watched for being cut off (see :mod:`flowbot.master.cutoffs`), once started.
        self.cutoffs: CutOffs | None = None
        #: When the master last had no message of its workers waiting unread (``time.monotonic()``).
        self._caught_up = time.monotonic()
        self._receiving: asyncio.Future | None = None  # the receive loop's awaited message
        self._tasks: list[asyncio.Task] = []
        self._drop_logged: dict[str, float] = {}
        self._authenticator: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        """Bind the ROUTER socket and start serving; returns the endpoint actually bound."""
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        # A peer sending a frame no valid message has is cut off before the frame is buffered, and counted.
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.cutoffs = CutOffs(sock, self._cut_off)
        self._authenticator = Gate(self._ctx, self.cutoffs.catch_up)
        self._authenticator.start()
        if self.curve is not None:
            curve.serve(sock, self.curve, self._admits, self._authenticator)
        else:
            sock.zap_domain = ZAP_DOMAIN  # handshakes go through the gate without CURVE too
        endpoint = self.endpoint
        if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
            endpoint = endpoint[:-2] + ":*"
        try:
            sock.bind(endpoint)
        except zmq.ZMQError:
            # A socket left open would keep the context (and so the master's exit) waiting for ever.
            self._authenticator.stop()
            self._authenticator = None
            self.cutoffs.close()
            sock.close(linger=0)
            raise
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._tasks = [
            self._spawn(self._receive_loop(), "worker-registry receive"),
            self._spawn(self._sweep_loop(), "worker-registry heartbeats"),
        ]
        log.info("waiting for workers on %s%s", self.endpoint, " (encrypted: CURVE)" if self.curve else "")
        return self.endpoint

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cutoffs is not None:
            self.cutoffs.close()
        for conn in list(self.connections.values()):
            conn.fail_all("the master is shutting down")
            conn.send(protocol.DISCONNECT, Disconnect("the master is shutting down").encode())
        if self._sock is not None:
            self._sock.close(linger=int(GOODBYE_LINGER * 1000) if self.connections else 0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._ctx.term()

    def set_workers(self, workers: list[Worker]) -> None:
        """Accept ``workers`` from now on (at reconfigure).

        A connected worker's new declaration (``max_builds``, ``properties``) applies at once. A
        worker whose secret or CURVE public key changed is disconnected, so it has to come back
        signing with the new secret and holding the new key; a worker no longer declared is refused
        when it says hello again, and meanwhile finishes what it runs.
        """
        self.workers = {w.name: w for w in workers}
        for conn in list(self.connections.values()):
            spec = self.workers.get(conn.name)
            if spec is None:
                continue
            conn.spec = spec  # its new max_builds and properties count now
            if self.curve is not None and conn.key not in self._keys_of(conn.name):
                conn.send(protocol.DISCONNECT, Disconnect("the pipeline's public_key for this worker changed").encode())
                self._lose(conn, "its CURVE public key changed")
            elif spec.secret.encode() != conn.channel.key:
                conn.send(protocol.DISCONNECT, Disconnect("the master's secret for this worker changed").encode())
                self._lose(conn, "its secret changed")

    def set_curve(self, keys: KeyPair | None) -> None:
        """Use the master's CURVE key pair ``keys``: from the next start; a running link keeps its own."""
        if self._sock is None:
            self.curve = keys
        elif keys != self.curve:
            log.warning("the master's CURVE key (curve_key) changes only when the master restarts; keeping the old one")

    def _keys_of(self, name: str) -> set[str]:
        """The CURVE public keys that may connect as worker ``name``."""
        spec = self.workers.get(name)
        return {k for k in (spec and spec.public_key, self.local_keys.get(name)) if k}

    def _admits(self, key: str) -> bool:
        """Whether a connection holding CURVE public ``key`` may in (asked during its handshake)."""
        if any(key in self._keys_of(name) for name in (*self.workers, *self.instances)):
            return True
        self._count("refused-key", "refused a connection with CURVE key %s: no worker in the pipeline has it", key)
        return False

    def send(self, route: bytes, frames: list[bytes]) -> None:
        """Send without waiting; a vanished peer or a full queue is logged, never raised."""
        if self._sock is None:
            return
        try:
            sent = self._sock.send_multipart([route, *frames], copy=False)
        except zmq.ZMQError as exc:
            log.debug("cannot send to route %s: %s", route.hex(), exc)
            return
        if sent.done():
            if sent.exception() is not None:
                log.debug("cannot send to route %s: %s", route.hex(), sent.exception())
        else:
            sent.add_done_callback(lambda f: f.cancelled() or f.exception())

    # -- receiving ----------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        sock, cutoffs = self._sock, self.cutoffs
        slice_ends = time.monotonic() + RECEIVE_SLICE
        while True:
            try:
                # The routing id as a frame, for what ZeroMQ knows of its connection.
                receiving = self._receiving = sock.recv(copy=False)
                if not receiving.done():  # nothing waits unread: the master has heard every worker
                    self._caught_up = slice_ends = time.monotonic()
                    slice_ends += RECEIVE_SLICE
                elif time.monotonic() > slice_ends:  # messages keep coming: awaiting them would never yield
                    await asyncio.sleep(0)
                    slice_ends = time.monotonic() + RECEIVE_SLICE
                route = await receiving
                frames = [route.bytes, *await sock.recv_multipart(copy=self.curve is None)]
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                log.error("worker socket error: %s", exc)
                await asyncio.sleep(0.1)
                continue
            key = None
            if self.curve is not None:  # frames, with the key their connection proved
                key = curve.proven_key(route)
                frames = [frames[0], *(frame.bytes for frame in frames[1:])]
            try:
                self._handle(frames, key)
            except Exception:  # a bug here must not take the master's link down
                self._drop("internal-error", frames[0] if frames else b"", "see traceback")
                log.exception("error while handling a worker message")
            if cutoffs.watched and frames[0] in self._by_route:  # a welcomed worker's connection
                cutoffs.trust(int(route.get("__fd")))

    def _handle(self, frames: list[bytes], key: str | None = None) -> None:
        route, body = frames[0], frames[1:]
        conn = self._by_route.get(route)
        try:
            message = protocol.parse(body)
            if message.type == protocol.HELLO:
                self._hello(route, body, message, key)
                return
            if conn is not None and key != conn.key:  # another connection took over the route
                self._drop("wrong-key", route, f"CURVE key {key} is not worker {conn.name}'s")
                return
            if conn is None:
                self._drop("unknown-route", route, message.type)
                # Tell a worker this master does not know (it restarted) to say hello again.
                self.send(
                    route, protocol.unsigned(protocol.DISCONNECT, Disconnect("unknown session; say hello").encode())
                )
                return
            message = conn.channel.accept(body, message)
        except ProtocolError as exc:
            self._drop(exc.reason, route, str(exc))
            return
        conn.last_recv = time.monotonic()
        conn.silent = False
        handler = _HANDLERS.get(message.type)
        if handler is None:
            self._drop("unexpected-type", route, message.type)
            return
        try:
            body = handler.decode(message.content, message.blobs)
        except ProtocolError as exc:
            self._drop(handler.malformed, route, str(exc))
            return
        handler.act(self, conn, body)

    def _cut_off(self, peer: str) -> None:
        self._count(
            "cut-off",
            "cut off the connection from %s: it sent a frame larger than %d bytes",
            peer,
            MAX_FRAME_BYTES,
        )

    def _drop(self, reason: str, route: bytes, detail: str) -> None:
        self._count(reason, "dropped a message from route %s: %s (%s)", route.hex()[:16], reason, detail)

    def _count(self, reason: str, message: str, *args: object) -> None:
        """Count a message turned away, and say so at most once per reason every 10 s (a flood
        of them must not flood the log)."""
        self.dropped[reason] += 1
        now = time.monotonic()
        if now - self._drop_logged.get(reason, -60.0) >= 10.0:
            self._drop_logged[reason] = now
            log.warning(message + "; %d dropped for this reason so far", *args, self.dropped[reason])

    # -- hello --------------------------------------------------------------------------------

    def _still_alive(self, conn: WorkerConnection) -> bool:
        """Whether ``conn`` was heard from within a heartbeat (and a half): a live worker always is.

        A second worker with a name in use is refused while the first lives, as Buildbot does;
        replacing the first would make the two take turns for ever. A worker that restarted
        after a crash gets in once its old connection has been silent that long.
        """
        return time.monotonic() - conn.last_recv < self.heartbeat * 1.5

    def _refuse(
        self, route: bytes, name: object, reason: str, counted_as: str = "refused", *, final: bool = False
    ) -> None:
        """Refuse a hello; ``final`` tells the worker that trying again changes nothing until the
        pipeline or the worker's settings do (so it may stop trying)."""
        self._count(counted_as, "refused worker %r: %s", name, reason)
        self.send(route, protocol.unsigned(protocol.DISCONNECT, Disconnect(reason, final).encode()))

    def _hello(self, route: bytes, body: list[bytes], message: protocol.Message, key: str | None) -> None:
        try:
            hello = Hello.decode(message.content)
        except ProtocolError:  # it names no worker the pipeline could declare
            self._refuse(route, message.content.get("name"), _UNKNOWN_WORKER, final=True)
            return
        name = hello.name
        spec = self.workers.get(name) or self.instances.get(name)
        if spec is None:
            self._refuse(route, name, _UNKNOWN_WORKER, final=True)
            return
        if spec.launcher is not None:
            why = f"worker {name} is started on demand: only its instances connect, as {name}-1, {name}-2, ..."
            self._refuse(route, name, why, final=True)
            return
        if self.curve is not None and key not in self._keys_of(name):
            self._refuse(
                route, name, f"its CURVE key {key} is not the public_key the pipeline declares for it", final=True
            )
            return
        if hello.version != protocol.VERSION:
            self._refuse(
                route,
                name,
                f"protocol version {hello.version!r} is not {protocol.VERSION}; upgrade the worker",
                final=True,
            )
            return
        link = message.header.get("link")
        challenge = self._challenges.get(route)
        if challenge is not None and challenge.name == name:
            if link == challenge.channel.link:  # signed over the challenge: the proof
                del self._challenges[route]
                if self._accept_hello(route, name, challenge.channel, body, message) and self._waiting(
                    name, challenge.began
                ):
                    self._welcome(route, spec, challenge.channel, message, hello, key)
                return
            if message.msg_id == challenge.hello_id:
                self._drop("replay", route, f"the hello of worker {name} again")
                return
        if not protocol.is_nonce(link):
            self._drop("wrong-link", route, f"a hello of worker {name} bound to another connection")
            return
        channel = protocol.Channel(spec.secret.encode(), self.session)
        channel.open(link)
        if self._accept_hello(route, name, channel, body, message):
            began = self._began(message)
            if self._waiting(name, began):
                self._challenge(route, name, channel, message, began)

    def _began(self, hello: protocol.Message) -> float:
        """When the worker that sent ``hello`` began to wait for its welcome, in ``time.monotonic()``:
        by the hello's date, but not before the registry last saw nothing unread (the hello came
        after; an idle registry looks a few times per heartbeat), so a worker whose clock is behind
        is not taken for one that waited long."""
        now = time.monotonic()
        return max(now - (time.time() - hello.header["date"]), self._caught_up)

    def _waiting(self, name: str, began: float) -> bool:
        """Whether the worker that began to wait at ``began`` still waits for its welcome; if not,
        its hello is dropped, and counted."""
        waited = time.monotonic() - began
        if waited <= self.hello_timeout - HELLO_SLACK:
            return True
        self._count(
            "stale-hello",
            "dropped a hello of worker %r %.1f s old: the worker gives up waiting after %g s, and says hello again",
            name,
            waited,
            self.hello_timeout,
        )
        return False

    def _accept_hello(
        self, route: bytes, name: str, channel: protocol.Channel, body: list[bytes], message: protocol.Message
    ) -> bool:
        """Check a hello's signature, date and link; refuse or drop it, saying why, if they are wrong."""
        try:
            channel.accept(body, message)
        except ProtocolError as exc:
            if exc.reason == "bad-signature":
                self._refuse(route, name, "bad signature: the worker's secret does not match the master's", final=True)
            elif exc.reason == "stale":
                skew = f"{exc}; at most {DATE_WINDOW:g} s either way"
                self._refuse(route, name, f"its clock is off the master's ({skew}): set both clocks right", "stale")
            else:
                self._drop(exc.reason, route, str(exc))
            return False
        return True

    def _challenge(
        self, route: bytes, name: str, channel: protocol.Channel, hello: protocol.Message, began: float
    ) -> None:
        """Answer a first hello with a fresh nonce that the next hello on ``route`` must be signed over."""
        nonce = protocol.nonce()
        self.send(route, channel.pack(protocol.CHALLENGE, Challenge(nonce).encode(), re=hello.msg_id))
        channel.extend(nonce)
        if route in self._challenges:
            self._unanswered(route, "another hello came on its connection")
        self._challenges[route] = _Challenge(name, channel, hello.msg_id, time.monotonic() + self.window, began)
        while len(self._challenges) > MAX_CHALLENGES:
            self._unanswered(next(iter(self._challenges)), f"more than {MAX_CHALLENGES} challenges were out")

    def _unanswered(self, route: bytes, why: str) -> None:
        challenge = self._challenges.pop(route, None)
        name = challenge.name if challenge is not None else "?"
        self._count(
            "unanswered-challenge", "dropped a hello of worker %r never signed over its challenge: %s", name, why
        )

    @property
    def window(self) -> float:
        """Seconds of silence before a worker is lost; a challenge lapses after as long."""
        return self.heartbeat * self.liveness

    @property
    def fence(self) -> float:
        """Seconds of silence from the master after which a worker stops its commands."""
        return self.window * FENCE_WINDOWS

    @property
    def hold(self) -> float:
        """Seconds of silence before a worker running commands is lost: the master is silent to it
        from a window on, so it has heard nothing for the fence a window before this, at the latest."""
        return self.window + self.fence + self.window

    def _welcome(
        self,
        route: bytes,
        spec: Worker,
        channel: protocol.Channel,
        message: protocol.Message,
        hello: Hello,
        key: str | None,
    ) -> None:
        """Bind ``route`` to worker ``spec`` (a new connection, or one resuming) and welcome it."""
        name, info, held = spec.name, hello.info, hello.held
        conn = self.connections.get(name)
        resumed = conn is not None and conn.session == message.session
        refused = self.claim(name, message.session) if name in self.instances else None
        if refused is not None:
            self._refuse(route, name, refused, final=True)
            return
        restarted = False
        if conn is not None and not resumed:
            if self._still_alive(conn):
                where = conn.info.get("hostname", "?")
                self._refuse(route, name, f"a worker named {name} is already connected (from {where})")
                return
            restarted = _carries_on(conn, hello)
            if not restarted:
                self._lose(conn, "the worker restarted (new session)")
        if resumed or restarted:
            self._by_route.pop(conn.route, None)
            conn.route, conn.channel = route, channel
            if restarted:
                conn.session, conn.info = message.session, info
                log.info("worker %s restarted and reported what its journal holds; its builds go on", name)
            else:
                log.info("worker %s reconnected within the liveness window; resuming", name)
        else:
            conn = WorkerConnection(self, spec, route, message.session, info, channel)
            self.connections[name] = conn
        conn.key = key
        conn.last_recv = time.monotonic()
        conn.silent = False
        conn.last_seen = time.time()
        self._by_route[route] = conn
        if not (resumed or restarted):
            self.adopt(conn, held)
        cancel, resume = [], {}
        for cmd_id in held:
            command = conn.commands.get(cmd_id)
            if command is None:
                cancel.append(cmd_id)
            else:
                resume[cmd_id] = dict(command.received)
        output = {"flush_bytes": OUTPUT_FLUSH_BYTES, "flush_delay": OUTPUT_FLUSH_DELAY, "window": OUTPUT_WINDOW}
        conn.send(
            protocol.WELCOME,
            Welcome(self.heartbeat, self.liveness, cancel, resume, output, self.fence).encode(),
            re=message.msg_id,
        )
        for command in list(conn.commands.values()):
            worker_has = held.get(command.cmd_id)
            if command.transfer is not None and not (isinstance(worker_has, dict) and worker_has.get("finished")):
                conn.abandon(command, WorkerLost("the connection to the worker broke during the transfer"))
                continue
            if worker_has is None:  # sent while the link was down: send it again
                conn.send_start(command)
            if command.interrupted is not None:
                conn.send(protocol.INTERRUPT, command.interrupted.encode())
            if resumed or restarted:  # what is stored: the acknowledgements sent may have been lost with the old route
                conn.send_output_ack(command)
        if not (resumed or restarted):
            log.info("worker %s connected from %s (%s)", name, info.get("hostname", "?"), info.get("platform", "?"))
            self.events.emit(EventKind.WORKER_CONNECTED, worker=name, info=info)
            self.on_connected(conn)

    # -- messages of a known worker -----------------------------------------------------------

    def _on_heartbeat(self, conn: WorkerConnection, heartbeat: Heartbeat) -> None:
        pass

    def _on_output(self, conn: WorkerConnection, output: Output) -> None:
        command = conn.commands.get(output.cmd_id)
        if command is None:
            self._drop("bad-output", conn.route, f"for command {output.cmd_id!r}")
            return
        stream, offset, data = output.stream, output.offset, output.data
        held = command.received.get(stream, 0)
        if offset > held:
            log.warning(
                "worker %s: %d bytes of %s output of command %s are missing",
                conn.name,
                offset - held,
                stream,
                command.cmd_id,
            )
        elif offset < held:  # a replay overlapping what is here already
            data = data[held - offset :]
        command.received[stream] = max(held, offset + len(output.data))
        if command.stored_lines.get(stream):
            data = command.drop_stored(stream, data)
            if not data:
                conn.ack_output(command, stream, command.received[stream])
                return
        if not data:
            return
        held_back, stored = command.output.write(stream, data)
        upto = command.received[stream] - held_back
        if stored is None:
            conn.ack_output(command, stream, upto)
        else:
            stored.add_done_callback(lambda _: conn.ack_output(command, stream, upto))

    def _on_finished(self, conn: WorkerConnection, finished: Finished) -> None:
        command = conn.commands.get(finished.cmd_id)
        if command is None or command.result.done():  # a repeat, or a command this master no longer waits for
            conn.ack_finished(finished.cmd_id)
            return
        conn.ack_finished_once_stored(finished.cmd_id, command.output.end())
        command.result.set_result(finished.result())

    def _on_file_data(self, conn: WorkerConnection, chunk: FileData) -> None:
        command = conn.commands.get(chunk.cmd_id)
        if command is None or command.transfer is None:
            self._drop("bad-file-data", conn.route, f"for command {chunk.cmd_id!r}")
            return
        try:
            command.transfer.file_data(chunk)
        except TransferError as exc:
            conn.abandon(command, exc)
            return
        conn.send(protocol.FILE_CREDIT, FileCredit(chunk.cmd_id).encode())

    def _on_file_credit(self, conn: WorkerConnection, credit: FileCredit) -> None:
        command = conn.commands.get(credit.cmd_id)
        if command is not None and command.transfer is not None:
            command.transfer.file_credit(credit.credits)

    def _on_disconnect(self, conn: WorkerConnection, goodbye: Disconnect) -> None:
        self._lose(conn, f"the worker said goodbye: {goodbye.reason}")

    # -- liveness -------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Heartbeats to idle workers, and the liveness check, a few times per interval."""
        while True:
            await asyncio.sleep(self.heartbeat / 4)
            await self.sweep()

    async def sweep(self) -> None:
        """One round of heartbeats and liveness checks, :data:`~flowbot.defaults.SWEEP_BATCH`
        workers a turn of the loop: thousands of workers that connected together come due
        together, and a signed heartbeat each in one turn would hold the loop for all of them."""
        self.cutoffs.catch_up()
        now = time.monotonic()
        for route in [r for r, c in self._challenges.items() if c.expires < now]:
            self._unanswered(route, f"not within {self.window:g} s")
        conns = list(self.connections.values())
        for first in range(0, len(conns), SWEEP_BATCH):
            if first:
                await asyncio.sleep(0)
                now = time.monotonic()
            heard = self._heard_until(now)
            for conn in conns[first : first + SWEEP_BATCH]:
                if not conn.lost:
                    self._check(conn, now, heard)

    def _check(self, conn: WorkerConnection, now: float, heard: float) -> None:
        """Lose ``conn`` if it was silent too long, else send it a heartbeat if it is due one."""
        silent = now - conn.last_recv
        if heard - conn.last_recv > (self.hold if conn.commands else self.window):
            self._lose(conn, f"no message for {silent:.1f} s (liveness {self.liveness} x {self.heartbeat:g} s)")
            return
        conn.silent = heard - conn.last_recv > self.window
        if conn.silent:
            return  # nothing is sent to it now, so its fence counts from a window ago at the latest
        if now - conn.last_sent >= self.heartbeat:
            conn.send(protocol.HEARTBEAT)
        conn.last_seen = time.time() - silent
        self._check_transfers(conn, now)

    def _heard_until(self, now: float) -> float:
        """Up to when the master has read what its workers sent: now, unless messages wait unread
        (its loop was held by other work), then the last time none did. Silence is counted up to
        there, so a worker is never lost for the time the master itself could not listen."""
        received = self._receiving is not None and self._receiving.done()  # read by ZeroMQ, not yet handled
        if received or self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return self._caught_up
        self._caught_up = now
        return now

    def _check_transfers(self, conn: WorkerConnection, now: float) -> None:
        """Fail transfers that stopped moving although the worker is there (a lost chunk or credit)."""
        for command in list(conn.commands.values()):
            progressed = command.transfer.progressed if command.transfer is not None else None
            if progressed is not None and now - progressed > self.transfer_timeout:
                conn.abandon(command, TransferError(f"no progress for {self.transfer_timeout:g} s"))

    def forget(self, name: str, reason: str) -> None:
        """Let an instance started on demand go: tell its worker to exit if it is connected (its
        credential is no longer among :attr:`instances`, so it could not say hello again)."""
        conn = self.connections.get(name)
        if conn is not None:
            conn.send(protocol.SHUTDOWN, Shutdown(graceful=False).encode())  # it exits, and does not knock again
            self._lose(conn, f"the master let it go: {reason}")

    def _lose(self, conn: WorkerConnection, reason: str) -> None:
        if self.connections.get(conn.name) is not conn:
            return
        conn.lost = True
        del self.connections[conn.name]
        self._by_route.pop(conn.route, None)
        # A worker saying goodbye is news; one that vanished is a warning.
        level = (
            logging.INFO if reason.startswith(("the worker said goodbye", "the master let it go")) else logging.WARNING
        )
        log.log(level, "worker %s lost: %s", conn.name, reason)
        conn.fail_all(f"worker {conn.name} lost: {reason}")
        self.events.emit(EventKind.WORKER_LOST, worker=conn.name, reason=reason)
        self.on_lost(conn)


def _carries_on(conn: WorkerConnection, hello: Hello) -> bool:
    """Whether the builds of ``conn``, whose worker has restarted (``hello``, from its new process),
    may go on rather than run again: the worker keeps a journal, in the same directory on the same
    host, and each command of theirs either ended (its result comes again) or never started (it is
    started now); none was cut short by the worker's death."""
    if hello.lost is None or not conn.commands:
        return False
    if any(hello.info.get(key) != conn.info.get(key) for key in ("hostname", "basedir")):
        return False
    for cmd_id in conn.commands:
        state = hello.held.get(cmd_id)
        if cmd_id in hello.lost or not (state is None or (isinstance(state, dict) and state.get("finished") is True)):
            return False
    return True


class _Handler(NamedTuple):
    """What the registry does with one kind of message from a welcomed worker."""

    #: Reads the message's body (content and blobs); raises ProtocolError if it cannot.
    decode: Decode
    #: Acts on the body read.
    act: Callable[[WorkerRegistry, WorkerConnection, Any], None]
    #: What a body that cannot be read is counted as, among the messages dropped.
    malformed: str = "bad-body"


#: Every kind of message a welcomed worker may send (a hello is answered before any of these).
_HANDLERS: dict[str, _Handler] = {
    protocol.HEARTBEAT: _Handler(Heartbeat.decode, WorkerRegistry._on_heartbeat),
    protocol.OUTPUT: _Handler(Output.decode, WorkerRegistry._on_output, "bad-output"),
    protocol.FINISHED: _Handler(Finished.decode, WorkerRegistry._on_finished),
    protocol.DISCONNECT: _Handler(Disconnect.decode, WorkerRegistry._on_disconnect),
    protocol.FILE_DATA: _Handler(FileData.decode, WorkerRegistry._on_file_data, "bad-file-data"),
    protocol.FILE_CREDIT: _Handler(FileCredit.decode, WorkerRegistry._on_file_credit, "bad-file-credit"),
}
