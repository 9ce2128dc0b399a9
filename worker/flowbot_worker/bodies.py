"""What the protocol's command messages carry, each body a frozen dataclass that encodes itself and
decodes what came over the link.

:mod:`flowbot_worker.protocol` frames, signs and binds a message to its connection; this module says
what a ``start_command``, ``interrupt`` and ``finished`` hold. The master builds the first two with
``encode`` and the worker reads them with ``decode``, and the other way round for ``finished``, so
a field is named in one place. ``decode`` raises :class:`~flowbot_worker.errors.ProtocolError`
(``bad-body``) on a body that does not name its command by a string id: the receiver drops and
counts it and acts on none of it. A field it can do without (an elapsed time that is not a number)
is read as missing, so a command still ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .defaults import SIGTERM_GRACE
from .errors import ProtocolError


def _cmd_id(content: dict[str, Any], kind: str) -> str:
    cmd_id = content.get("cmd_id")
    if not isinstance(cmd_id, str):
        raise ProtocolError("bad-body", f"{kind} names its command by {type(cmd_id).__name__}, not a string id")
    return cmd_id


def _number(value: object, default: float) -> float:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else default


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


@dataclass(frozen=True, slots=True)
class StartCommand:
    """``start_command``: run command ``name`` with ``args`` as ``cmd_id`` (master to worker)."""

    cmd_id: str
    name: str
    args: dict[str, Any]

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "name": self.name, "args": self.args}

    @classmethod
    def decode(cls, content: dict[str, Any]) -> StartCommand:
        cmd_id = _cmd_id(content, "start_command")
        args = content.get("args")
        if not isinstance(args, dict):
            raise ProtocolError("bad-body", f"start_command {cmd_id} has no args object")
        return cls(cmd_id, str(content.get("name")), args)


@dataclass(frozen=True, slots=True)
class Interrupt:
    """``interrupt``: stop command ``cmd_id``, SIGTERM then SIGKILL after ``grace`` s (master to worker)."""

    cmd_id: str
    reason: str = "interrupted"
    grace: float = SIGTERM_GRACE

    def encode(self) -> dict[str, Any]:
        return {"cmd_id": self.cmd_id, "reason": self.reason, "grace": self.grace}

    @classmethod
    def decode(cls, content: dict[str, Any]) -> Interrupt:
        reason = content.get("reason", "interrupted")
        return cls(_cmd_id(content, "interrupt"), str(reason), _number(content.get("grace"), SIGTERM_GRACE))


@dataclass(frozen=True, slots=True)
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
    def decode(cls, content: dict[str, Any]) -> Finished:
        rc, reason, data, offsets = (content.get(k) for k in ("rc", "reason", "data", "offsets"))
        return cls(
            cmd_id=_cmd_id(content, "finished"),
            rc=rc if type(rc) is int else None,
            reason=reason if isinstance(reason, str) else None,
            message=str(content.get("message") or ""),
            elapsed=_number(content.get("elapsed"), 0.0),
            data=data if isinstance(data, dict) else {},
            offsets=offsets if isinstance(offsets, dict) else {},
        )

    def result(self) -> CommandResult:
        """The command's end as the master's steps read it."""
        return CommandResult(self.rc, self.reason, self.message, self.elapsed, data=self.data)
