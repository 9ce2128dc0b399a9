"""Steps that run on the master rather than a worker: ``SetProperty`` and ``MasterShell``."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..results import Result
from .base import BuildContext, Step


class SetProperty(Step):
    """Set a property (``value`` may be a renderable)."""

    default_name = "set property"

    def __init__(self, property: str, value: Any, **flags: Any):
        super().__init__(**flags)
        self.property = property
        self.value = value

    async def run(self, build: BuildContext) -> Result:
        build.set_property(self.property, build.render(self.value), "SetProperty Step")
        return Result.SUCCESS


class MasterShell(Step):
    """Run a command on the master's host, in the master's directory (deploy hooks, notifications).

    Args:
        command: a string for ``/bin/sh -c`` or an argv list; renderables allowed.
        env: extra environment variables.
    """

    default_name = "master shell"

    def __init__(self, command: Any, *, env: dict[str, Any] | None = None, **flags: Any):
        super().__init__(**flags)
        self.command = command
        self.env = dict(env or {})

    async def run(self, build: BuildContext) -> Result:
        command = build.render(self.command)
        env = {**os.environ, **build.env(), **{k: str(v) for k, v in build.render(self.env).items()}}
        log = build.log()
        log.header(f"master shell: {command}")
        if isinstance(command, str):
            process = await asyncio.create_subprocess_shell(
                command, env=env, cwd=build.master_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        else:
            process = await asyncio.create_subprocess_exec(
                *[str(a) for a in command],
                env=env,
                cwd=build.master_dir,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )

        async def pump(stream: asyncio.StreamReader, write: Any) -> None:
            while line := await stream.readline():
                write(line.decode("utf-8", "replace").rstrip("\n"))

        try:
            await asyncio.gather(pump(process.stdout, log.stdout), pump(process.stderr, log.stderr))
            rc = await process.wait()
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        log.header(f"program finished with exit code {rc}")
        return Result.SUCCESS if rc == 0 else Result.FAILURE
