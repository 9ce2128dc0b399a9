"""What every worker command shares: its arguments, its output, and a safe working directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..bodies import FileData
from ..errors import CommandError
from ..fence import Lease
from ..output import OutputBuffer, Send


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a command ended; becomes the content of the ``finished`` message."""

    #: Exit code; negative for a signal; None when no process ran.
    rc: int | None
    #: Why it ended early: ``timeout``, ``max_time``, ``interrupted``, ``error``, ``invalid``; None when it ran out.
    reason: str | None = None
    #: A human-readable explanation to show in the step's log.
    message: str = ""
    #: What the command reports besides its output (``got_revision`` after a checkout, say).
    data: dict[str, Any] = field(default_factory=dict)


class Command:
    """Base class for commands; a subclass sets ``name`` and implements ``run``.

    Args:
        cmd_id: the master's id for this command (start is idempotent by it).
        args: the command's arguments as the master sent them.
        basedir: the worker's base directory; nothing may run or write outside it.
        output: where the command's output goes.
        send: how to send other messages to the master (file chunks, credit).
        lease: the worker's hold on the fence, which a command that starts processes hands each
            process group to (see :mod:`flowbot_worker.fence`).
    """

    name: ClassVar[str]

    def __init__(
        self,
        cmd_id: str,
        args: dict[str, Any],
        basedir: Path,
        output: OutputBuffer,
        send: Send | None = None,
        lease: Lease | None = None,
    ):
        self.cmd_id = cmd_id
        self.args = args
        self.basedir = basedir
        self.output = output
        self.send = send
        self.lease = lease

    async def run(self) -> Outcome:
        raise NotImplementedError

    def interrupt(self, reason: str, grace: float) -> None:
        """Ask the command to stop; the default has nothing to stop."""

    def resume_reading(self) -> None:
        """The output window has room again; the default never paused."""

    def file_data(self, chunk: FileData) -> None:
        """A chunk of a file the master sends; only downloads expect them."""

    def file_credit(self, credits: int) -> None:
        """The master has room for more chunks; only uploads wait for it."""

    def resolve(self, relative: str) -> Path:
        """``basedir/builddir/relative``, refused if it escapes basedir."""
        builddir = str(self.args.get("builddir") or ".")
        path = (self.basedir / builddir / str(relative or ".")).resolve()
        base = self.basedir.resolve()
        if path != base and base not in path.parents:
            raise CommandError(f"{builddir}/{relative} is outside the worker's basedir")
        return path

    def directory(self) -> Path:
        """The command's working directory (``workdir`` under the builder's), created if missing."""
        path = self.resolve(self.args.get("workdir") or ".")
        path.mkdir(parents=True, exist_ok=True)
        return path
