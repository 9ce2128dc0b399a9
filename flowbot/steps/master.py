"""Steps that run on the master rather than a worker: ``SetProperty`` and ``MasterShell``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from typing import Any

from ..defaults import STOP_GRACE
from ..fields import ENV, RENDERED_TEXT, TEXT, checked, either, list_of
from ..results import Result
from .base import BuildContext, Step, StepLog


class SetProperty(Step):
    """Set a property (``value`` may be a renderable)."""

    default_name = "set property"

    @checked(property=TEXT)
    def __init__(self, property: str, value: Any, **flags: Any):
        super().__init__(**flags)
        self.property = property
        self.value = value

    async def run(self, build: BuildContext) -> Result:
        build.set_property(self.property, build.render(self.value), "SetProperty Step")
        return Result.SUCCESS


class MasterShell(Step):
    """Run a command on the master's host, in the master's directory (deploy hooks, notifications).

    Stopping the build stops the command: its whole process group gets SIGTERM, then SIGKILL after
    a grace period. So does anything else that ends the step early.

    Args:
        command: a string for ``/bin/sh -c`` or an argv list; renderables allowed.
        env: extra environment variables.
    """

    default_name = "master shell"

    @checked(command=either(RENDERED_TEXT, list_of(RENDERED_TEXT, "a list of arguments")), env=ENV)
    def __init__(self, command: Any, *, env: dict[str, Any] | None = None, **flags: Any):
        super().__init__(**flags)
        self.command = command
        self.env = dict(env or {})

    async def run(self, build: BuildContext) -> Result:
        command = build.render(self.command)
        env = {**os.environ, **build.env(), **{k: str(v) for k, v in build.render(self.env).items()}}
        log = build.log()
        log.header(f"master shell: {command}")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        transport, process = await asyncio.get_running_loop().subprocess_exec(
            lambda: _Process(log),
            *argv,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=build.master_dir,
            start_new_session=True,  # its own process group, to stop what it starts too
        )
        try:
            rc = await build.stoppable(asyncio.shield(process.ended))
        except BaseException:
            await _stop(transport.get_pid(), process.ended)
            raise
        finally:
            transport.close()
        log.end_lines()  # a last line without its newline comes before the line that says how it ended
        log.header(f"program finished with exit code {rc}")
        return Result.SUCCESS if rc == 0 else Result.FAILURE


class _Process(asyncio.SubprocessProtocol):
    """A command's output, going to the step's log as it comes; ``ended`` gives its exit code
    once it has exited and closed its output."""

    def __init__(self, log: StepLog):
        self.log = log
        self.ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.log.output("stderr" if fd == 2 else "stdout", data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(self._transport.get_returncode())


async def _stop(pid: int, ended: asyncio.Future[int]) -> None:
    """End process group ``pid``: SIGTERM, then SIGKILL if it is still there after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(asyncio.shield(ended), STOP_GRACE)
            return
        except TimeoutError:
            continue
