"""What each message of the protocol carries: one dataclass per body, that encodes itself and
decodes what came over the link.

:mod:`flowbot_worker.protocol` frames, signs and binds a message to its connection; this module says
what a ``hello``, a ``start_command`` or an ``output`` holds. The side that sends a body builds it
and calls ``encode``; the side that receives it calls ``decode`` (with the message's blobs, for the
bodies whose bytes ride as one), so a field is named in one place. ``decode`` raises
:class:`~flowbot_worker.errors.ProtocolError` (``bad-body``) on a body it cannot act on: a field it
needs that is missing or of the wrong type. The receiver drops and counts it and acts on none of
it. A field it can do without (an elapsed time that is not a number, a worker's host information
that is not an object) is read as missing instead, so the message still does its work.

The bodies are plain ``slots`` dataclasses, not frozen ones: a frozen dataclass costs several times
as much to make, and those of a build's commands (``start_command``, ``output``, ``finished``,
``ack``) are made for every message. Nothing keeps a body after its message is handled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .defaults import SIGTERM_GRACE
from .errors import ProtocolError

#: How a receiver reads a body: from the message's content and blobs (each body's ``decode``).
Decode = Callable[[dict[str, Any], tuple[bytes, ...]], Any]

#: The output settings a master may give its workers in ``welcome`` (see :class:`Welcome`).
FLUSH_SETTINGS = ("flush_bytes", "flush_delay", "window")


def _cmd_id(content: dict[str, Any], kind: str) -> str:
    cmd_id = content.get("cmd_id")
    if type(cmd_id) is not str:
        raise ProtocolError("bad-body", f"{kind} names its command by {type(cmd_id).__name__}, not a string id")
    return cmd_id


def _finite(value: object) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _number(value: object, default: float) -> float:
    return float(value) if _finite(value) else default


def _is_count(value: object) -> bool:
    """Whether ``value`` is an integer (not a bool) of zero or more: an offset, a sequence number."""
    return type(value) is int and value >= 0


def _counts(values: Iterable[object]) -> bool:
    """Whether every one of ``values`` is a count (a loop, not ``all()``: acknowledgements are frequent)."""
    for value in values:  # noqa: SIM110 (a loop costs less than all() over a generator)
        if type(value) is not int or value < 0:
            return False
    return True


def _strings(values: Iterable[object]) -> bool:
    """Whether every one of ``values`` is a string (command ids)."""
    for value in values:  # noqa: SIM110 (a loop costs less than all() over a generator)
        if type(value) is not str:
            return False
    return True


def _one_blob(blobs: tuple[bytes, ...], kind: str, cmd_id: str) -> bytes:
    if len(blobs) != 1:
        raise ProtocolError("bad-body", f"{kind} of command {cmd_id} carries {len(blobs)} blobs, not 1")
    return blobs[0]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command on the worker ended, as the master and the steps read it."""

    #: Exit code; negative for a signal; None when no process ran.
    rc: int | None
    #: Why it ended early (``timeout``, ``max_time``, ``interrupted``, ``error``, ``invalid``), or None.
    reason: str | None = None
    #: What the worker said about it.
    message: str = ""
    #: Seconds it ran on the worker.
    elapsed: float = 0.0
    #: The command's output, when it was asked for with ``collect=True``.
    stdout: str = ""
    stderr: str = ""
    #: What the command reports besides its output (``got_revision`` for a checkout, ...).
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StartCommand:
    """``start_command``: run command ``name`` with ``args`` as ``cmd_id`` (master to worker)."""

    cmd_id: str
    name: str
    args: dict[str, Any]

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "name": self.name, "args": self.args}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> StartCommand:
        cmd_id = _cmd_id(content, "start_command")
        args = content.get("args")
        if type(args) is not dict:
            raise ProtocolError("bad-body", f"start_command {cmd_id} has no args object")
        name = content.get("name")
        return cls(cmd_id, name if type(name) is str else str(name), args)


@dataclass(slots=True)
class Interrupt:
    """``interrupt``: stop command ``cmd_id``, SIGTERM then SIGKILL after ``grace`` s (master to worker)."""

    cmd_id: str
    reason: str = "interrupted"
    grace: float = SIGTERM_GRACE

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "reason": self.reason, "grace": self.grace}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Interrupt:
        reason = content.get("reason", "interrupted")
        return cls(_cmd_id(content, "interrupt"), str(reason), _number(content.get("grace"), SIGTERM_GRACE))


@dataclass(slots=True)
class Finished:
    """``finished``: how command ``cmd_id`` ended, and where each stream of its output ends (worker
    to master; sent again until acknowledged)."""

    cmd_id: str
    rc: int | None
    reason: str | None = None
    message: str = ""
    elapsed: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    #: The end offset of each stream of its output.
    offsets: dict[str, int] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        return {
            "cmd_id": self.cmd_id,
            "rc": self.rc,
            "reason": self.reason,
            "message": self.message,
            "data": self.data,
            "elapsed": self.elapsed,
            "offsets": self.offsets,
        }

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Finished:
        get = content.get
        rc, reason, message, data, offsets = get("rc"), get("reason"), get("message"), get("data"), get("offsets")
        return cls(
            _cmd_id(content, "finished"),
            rc if type(rc) is int else None,
            reason if type(reason) is str else None,
            message if type(message) is str else str(message or ""),
            _number(get("elapsed"), 0.0),
            data if type(data) is dict else {},
            offsets if type(offsets) is dict else {},
        )

    def result(self) -> CommandResult:
        """The command's end as the master's steps read it."""
        return CommandResult(self.rc, self.reason, self.message, self.elapsed, data=self.data)


@dataclass(slots=True)
class Output:
    """``output``: bytes of one stream of command ``cmd_id``'s output, from ``offset`` in that stream;
    the bytes ride as the message's one blob (worker to master)."""

    cmd_id: str
    #: ``stdout``, ``stderr`` or ``header``.
    stream: str
    offset: int
    data: bytes

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "stream": self.stream, "offset": self.offset}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Output:
        # Checked inline rather than through the helpers: this is the most frequent body of all.
        cmd_id, stream, offset = content.get("cmd_id"), content.get("stream"), content.get("offset")
        if type(cmd_id) is not str or type(stream) is not str or type(offset) is not int or offset < 0:
            _cmd_id(content, "output")
            raise ProtocolError("bad-body", f"output of command {cmd_id} names no stream and offset")
        if len(blobs) != 1:
            _one_blob(blobs, "output", cmd_id)
        return cls(cmd_id, stream, offset, blobs[0])


@dataclass(slots=True)
class OutputAck:
    """``ack`` of ``output``: the master has stored command ``cmd_id``'s output below ``offsets``
    (per stream); the worker may forget those bytes (master to worker)."""

    cmd_id: str
    offsets: dict[str, int]

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "of": protocol.OUTPUT, "offsets": self.offsets}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> OutputAck:
        cmd_id = _cmd_id(content, "ack")
        offsets = content.get("offsets")
        if type(offsets) is not dict or not _counts(offsets.values()):
            raise ProtocolError("bad-body", f"ack of output of command {cmd_id} has no offsets by stream")
        return cls(cmd_id, offsets)


@dataclass(slots=True)
class FinishedAck:
    """``ack`` of ``finished``: the master has the results of commands ``cmd_ids``; the worker may
    forget them (master to worker)."""

    cmd_ids: list[str]

    def encode(self) -> dict[str, Any]:
        # ``cmd_id`` too, for workers that read one id per acknowledgement (they send the rest again).
        return {"of": protocol.FINISHED, "cmd_ids": self.cmd_ids, "cmd_id": self.cmd_ids[0] if self.cmd_ids else None}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> FinishedAck:
        cmd_ids = content.get("cmd_ids")
        if cmd_ids is None:  # a master that acknowledges one result per message
            return cls([_cmd_id(content, "ack")])
        if type(cmd_ids) is not list or not _strings(cmd_ids):
            raise ProtocolError("bad-body", "ack of finished names its commands by anything but a list of string ids")
        return cls(cmd_ids)


def decode_ack(content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> OutputAck | FinishedAck:
    """The body of an ``ack``, by what it acknowledges (``of``).

    Raises:
        ProtocolError: it acknowledges neither output nor a result, or its body is malformed.
    """
    of = content.get("of")
    if of == protocol.OUTPUT:
        return OutputAck.decode(content, blobs)
    if of == protocol.FINISHED:
        return FinishedAck.decode(content, blobs)
    raise ProtocolError("bad-body", f"ack of {str(of)[:20]!r}, neither output nor finished")


# -- the session: hello to goodbye -----------------------------------------------------------------


@dataclass(slots=True)
class Hello:
    """``hello``: who the worker is, and the commands it still holds (worker to master)."""

    name: str
    #: The protocol version it speaks (:data:`~flowbot_worker.protocol.VERSION`), as sent: a master
    #: refuses any other, naming it.
    version: Any
    #: About its host: ``worker_version``, ``hostname``, ``platform``, ``python``, ``os``, ``basedir``, ``pid``.
    info: dict[str, Any] = field(default_factory=dict)
    #: The commands it holds, by id: ``{"offsets": {stream: [acknowledged, sent]}, "lines": {stream:
    #: lines below the acknowledged offset, or None}, "finished": bool}``
    #: each, as the worker says it (the master checks what it takes up).
    held: dict[str, Any] = field(default_factory=dict)
    #: From a worker that keeps a journal (see :mod:`flowbot_worker.journal`): the commands an
    #: earlier process of it started and never saw end (it died; the fence killed them), so a
    #: command it neither holds nor names here never started. None from a worker without one (or
    #: a list that is not of command ids), whose silence about a command says nothing.
    lost: list[str] | None = None

    def encode(self) -> dict[str, Any]:
        content = {"name": self.name, "version": self.version, "info": self.info, "held": self.held}
        if self.lost is not None:  # a master that knows nothing of journals reads no such field
            content["lost"] = self.lost
        return content

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Hello:
        name, info, held, lost = content.get("name"), content.get("info"), content.get("held"), content.get("lost")
        if not isinstance(name, str):
            raise ProtocolError("bad-body", f"hello names its worker by {type(name).__name__}, not a string")
        return cls(
            name,
            content.get("version"),
            info if isinstance(info, dict) else {},
            held if isinstance(held, dict) else {},
            lost if type(lost) is list and _strings(lost) else None,
        )


@dataclass(slots=True)
class Challenge:
    """``challenge``: the master's fresh nonce, which the worker's next hello must be signed over
    (master to worker; see :mod:`flowbot_worker.protocol`)."""

    nonce: str

    def encode(self) -> dict[str, Any]:
        return {"nonce": self.nonce}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Challenge:
        nonce = content.get("nonce")
        if not protocol.is_nonce(nonce):
            raise ProtocolError("bad-body", "challenge without a nonce")
        return cls(nonce)


@dataclass(slots=True)
class Welcome:
    """``welcome``: the master accepts the worker, with the link's timing and what to do with the
    commands its hello listed (master to worker)."""

    #: Seconds between heartbeats on an idle link.
    heartbeat: float
    #: Heartbeats missed before the other side counts as lost.
    liveness: int
    #: Commands the worker holds that the master knows nothing of: to stop and forget.
    cancel: list[str] = field(default_factory=list)
    #: Commands that go on, each with the offset the master holds of each stream of its output.
    resume: dict[str, dict[str, int]] = field(default_factory=dict)
    #: How the worker buffers output (:data:`FLUSH_SETTINGS`); one not given keeps the worker's default.
    output: dict[str, float] = field(default_factory=dict)
    #: Seconds without word from the master after which the worker stops its commands (the master
    #: runs them elsewhere); None from a master that sets no fence.
    fence: float | None = None

    def encode(self) -> dict[str, Any]:
        return {
            "heartbeat": self.heartbeat,
            "liveness": self.liveness,
            "cancel": self.cancel,
            "resume": self.resume,
            "output": self.output,
            "fence": self.fence,
        }

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Welcome:
        heartbeat, liveness = content.get("heartbeat"), content.get("liveness")
        if not (_finite(heartbeat) and heartbeat > 0 and type(liveness) is int and liveness > 0):
            raise ProtocolError("bad-body", "welcome without a positive heartbeat and liveness")
        cancel, resume, output = content.get("cancel", []), content.get("resume", {}), content.get("output", {})
        if type(cancel) is not list or not _strings(cancel):
            raise ProtocolError("bad-body", "welcome's cancel is not a list of command ids")
        if type(resume) is not dict or not all(type(o) is dict and _counts(o.values()) for o in resume.values()):
            raise ProtocolError("bad-body", "welcome's resume is not offsets by stream for each command")
        if type(output) is not dict or not all(_finite(v) and v > 0 for k, v in output.items() if k in FLUSH_SETTINGS):
            raise ProtocolError("bad-body", "welcome's output settings are not positive numbers")
        fence = content.get("fence")  # a fence that is no positive number is none
        return cls(
            float(heartbeat),
            liveness,
            cancel,
            resume,
            {k: v for k, v in output.items() if k in FLUSH_SETTINGS},
            float(fence) if _finite(fence) and fence > 0 else None,
        )


_NO_REASON = "no reason given"


@dataclass(slots=True)
class Disconnect:
    """``disconnect``: goodbye, from either side; from the master, unsigned, the refusal of a hello.
    A ``final`` refusal is one that trying again changes nothing about until the pipeline or the
    worker's settings do."""

    reason: str = _NO_REASON
    final: bool = False

    def encode(self) -> dict[str, Any]:
        return {"reason": self.reason, "final": True} if self.final else {"reason": self.reason}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Disconnect:
        # A goodbye is one whatever it says: a reason that is no text is read as none given.
        reason = content.get("reason")
        return cls(reason if isinstance(reason, str) else _NO_REASON, content.get("final") is True)


@dataclass(slots=True)
class Shutdown:
    """``shutdown``: the master asks the worker to leave, once its running commands' results are in
    (``graceful``) or now (master to worker)."""

    graceful: bool = True

    def encode(self) -> dict[str, Any]:
        return {"graceful": self.graceful}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Shutdown:
        graceful = content.get("graceful", True)
        if type(graceful) is not bool:
            raise ProtocolError("bad-body", f"shutdown is graceful or not, not {type(graceful).__name__}")
        return cls(graceful)


@dataclass(slots=True)
class Heartbeat:
    """``heartbeat``: sent by either side when it has sent nothing else for an interval; it carries
    nothing (any message shows the sender is alive)."""

    def encode(self) -> dict[str, Any]:
        return {}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> Heartbeat:
        return _HEARTBEAT


_HEARTBEAT = Heartbeat()


# -- file transfers ----------------------------------------------------------------------------------


@dataclass(slots=True)
class FileData:
    """``file_data``: chunk ``seq`` (from 0) of the file command ``cmd_id`` transfers, the last one
    if ``final``; the bytes ride as the message's one blob (either way)."""

    cmd_id: str
    seq: int
    final: bool
    data: bytes

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "seq": self.seq, "final": self.final}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> FileData:
        cmd_id = _cmd_id(content, "file_data")
        seq, final = content.get("seq"), content.get("final", False)
        if not _is_count(seq) or type(final) is not bool:
            raise ProtocolError("bad-body", f"file_data of command {cmd_id} without a chunk number")
        return cls(cmd_id, seq, final, _one_blob(blobs, "file_data", cmd_id))


@dataclass(slots=True)
class FileCredit:
    """``file_credit``: room for ``credits`` more chunks of command ``cmd_id``'s transfer, from the
    side that receives them (either way)."""

    cmd_id: str
    credits: int = 1

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "credits": self.credits}

    @classmethod
    def decode(cls, content: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> FileCredit:
        cmd_id = _cmd_id(content, "file_credit")
        credits = content.get("credits")
        if type(credits) is not int or credits <= 0:
            raise ProtocolError("bad-body", f"file_credit of command {cmd_id} grants no chunks")
        return cls(cmd_id, credits)
