"""``Shell``: run a command on the worker; exit 0 is SUCCESS, anything else FAILURE."""

from __future__ import annotations

from typing import Any

from ..defaults import SHELL_TIMEOUT
from ..results import Result
from .base import BuildContext, Step


class Shell(Step):
    """Run a shell command (a string) or a program (an argv list) in the build directory.

    Args:
        command: ``"make test"`` runs through ``/bin/sh -c``; ``["make", "test"]`` runs as is.
        workdir: directory relative to the builder's directory on the worker.
        env: extra environment; ``${VAR}`` expands on the worker, None unsets a variable.
        timeout: seconds without output before the command is killed (None: never).
        max_time: seconds in all before the command is killed (None: no limit).
        **flags: the flags of :class:`~flowbot.steps.base.Step` (``name``, ``halt_on_failure``...).
    """

    default_name = "shell"

    def __init__(
        self,
        command: str | list[str],
        *,
        workdir: str = "build",
        env: dict[str, Any] | None = None,
        timeout: float | None = SHELL_TIMEOUT,
        max_time: float | None = None,
        **flags: Any,
    ):
        super().__init__(**flags)
        if isinstance(command, (list, tuple)):
            command = [str(arg) for arg in command]
            if not command:
                raise ValueError("Shell needs a command; got an empty list")
        elif not isinstance(command, str) or not command.strip():
            raise ValueError(f"Shell needs a command string or argv list; got {command!r}")
        self.command = command
        self.workdir = workdir
        self.env = dict(env or {})
        self.timeout = timeout
        self.max_time = max_time

    async def run(self, build: BuildContext) -> Result:
        args = {
            "command": self.command,
            "workdir": self.workdir,
            "env": {**build.env(), **self.env},
            "timeout": self.timeout,
            "max_time": self.max_time,
        }
        outcome = await build.run_command("shell", args)
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE
