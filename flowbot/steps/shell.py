"""Steps that run commands on the worker: ``Shell`` and ``SetPropertyFromCommand``."""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections import Counter
from collections.abc import Callable
from typing import Any

from .. import junit
from ..defaults import SHELL_TIMEOUT
from ..errors import FlowbotError
from ..fields import (
    ANYTHING,
    BYTES,
    ENV,
    EXIT_CODE,
    FLAG,
    FUNCTION,
    RENDERED_TEXT,
    SECONDS,
    TEXT,
    checked,
    either,
    instance,
    list_of,
    mapping,
    optional,
    refuse,
    rendered,
)
from ..properties import Renderable
from ..results import Result, worst
from ..retry import FLAKY
from .base import BuildContext, CommandResult, StartedCommand, Step

#: What a command's renderables must make for each build.
_RENDERED_COMMAND = either(TEXT, list_of(ANYTHING, "a list of arguments"))
_LOGFILES = mapping(TEXT, TEXT, "a dict of log names to paths")
RESULT = instance(Result, "a Result such as Result.WARNINGS")


class Shell(Step):
    """Run a shell command (a string) or a program (an argv list) in the build directory.

    Args:
        command: ``"make test"`` runs through ``/bin/sh -c``; ``["make", "test"]`` runs as is;
            either may be (or contain) renderables such as ``Interpolate``.
        workdir: directory relative to the builder's directory on the worker.
        env: extra environment; ``${VAR}`` expands on the worker, None unsets a variable.
        timeout: seconds without output before the command is killed (None: never).
        max_time: seconds in all before the command is killed (None: no limit).
        logfiles: ``{log name: path}`` of files the command writes, shown as extra logs.
        decode_rc: ``{exit code: Result}``, what each exit code means (Buildbot's ``decodeRC``);
            an exit code it leaves out is a FAILURE. The default is ``{0: Result.SUCCESS}``.
        junit: a JUnit XML report the command writes (relative to ``workdir``, or an absolute
            path on the worker, which must be inside the worker's directory); its test cases
            are stored with the step. A missing or malformed report makes the step WARNINGS.
        max_log: the most bytes of output each of its logs keeps (None: the pipeline's
            ``max_log``); past it output is counted, not stored, and the log and the step's
            summary say how much was not kept.
        **flags: the flags of :class:`~flowbot.steps.base.Step` (``name``, ``halt_on_failure``...).

    Raises:
        ConfigError: a command that is neither text, a renderable, nor a list of them.
    """

    default_name = "shell"

    @checked(
        workdir=RENDERED_TEXT,
        env=ENV,
        timeout=optional(SECONDS),
        max_time=optional(SECONDS),
        logfiles=optional(mapping(TEXT, RENDERED_TEXT, "a dict of log names to paths")),
        junit=optional(RENDERED_TEXT),
        max_log=optional(BYTES),
        decode_rc=optional(mapping(EXIT_CODE, RESULT, "a dict of exit codes to results")),
    )
    def __init__(
        self,
        command: Any,
        *,
        workdir: Any = "build",
        env: dict[str, Any] | None = None,
        timeout: float | None = SHELL_TIMEOUT,
        max_time: float | None = None,
        logfiles: dict[str, str] | None = None,
        junit: Any = None,
        max_log: int | None = None,
        decode_rc: dict[int, Result] | None = None,
        **flags: Any,
    ):
        super().__init__(**flags)
        self.junit = junit
        self.max_log = max_log
        self.decode_rc = dict(decode_rc) if decode_rc is not None else {0: Result.SUCCESS}
        if self.retry is not None and self.retry.when == FLAKY and junit is None:
            raise refuse(self, "retry", "Retry(when='flaky') judges the tests a step reports: give it junit=...")
        if isinstance(command, (list, tuple)):
            if not command:
                raise ValueError("Shell needs a command; got an empty list")
            command = list(command)
        elif isinstance(command, str) and not command.strip():
            raise ValueError("Shell needs a command; got an empty string")
        elif command is None:
            raise ValueError("Shell needs a command")
        self._check_command(command)
        self.command = command
        self.workdir = workdir
        self.env = dict(env or {})
        self.timeout = timeout
        self.max_time = max_time
        self.logfiles = dict(logfiles or {})

    def _check_command(self, command: Any) -> None:
        """Refuse, where the pipeline says it, a command that would only fail once a build runs it."""
        if isinstance(command, list):
            wrong = next((arg for arg in command if not _is_argument(arg)), None)
            if wrong is None:
                return
            problem = f"an argument {wrong!r} ({type(wrong).__name__}) that is neither text nor a renderable"
        elif isinstance(command, str) or _is_renderable(command):
            return
        else:
            problem = f"{command!r} ({type(command).__name__})"
        raise refuse(self, "command", f"command must be a string, a renderable or a list of them; got {problem}")

    def command_args(self, build: BuildContext) -> dict[str, Any]:
        """The ``shell`` command's arguments, rendered for this build."""
        command = rendered(self, "command", build.render(self.command), _RENDERED_COMMAND)
        if isinstance(command, list):
            command = [str(arg) for arg in command]
        return {
            "command": command,
            "workdir": rendered(self, "workdir", build.render(self.workdir), TEXT),
            "env": {**build.env(), **rendered(self, "env", build.render(self.env), ENV)},
            "timeout": self.timeout,
            "max_time": self.max_time,
            "logfiles": rendered(self, "logfiles", build.render(self.logfiles), _LOGFILES),
        }

    async def run(self, build: BuildContext) -> Result:
        return await self._judge(build, await build.run_command("shell", self.command_args(build)))

    async def resume(self, build: BuildContext, command: StartedCommand) -> Result:
        self.command_args(build)  # rendered again for the secrets it uses, so they stay hidden in what it prints
        return await self._judge(build, await command)

    async def _judge(self, build: BuildContext, outcome: CommandResult) -> Result:
        result = self.evaluate(outcome)
        if self.junit is not None:
            result = worst(result, await self._collect_tests(build))
        return result

    async def _collect_tests(self, build: BuildContext) -> Result:
        """Bring the JUnit report to the master and store its test cases."""
        # An absolute path stays as it is: the worker refuses one outside its directory, clearly.
        report = posixpath.join(build.render(self.workdir), build.render(self.junit))
        try:
            report_bytes = await build.fetch(report)
            # Up to 64 MiB of XML: parsed on a thread, so the master's loop goes on meanwhile.
            cases = await asyncio.to_thread(junit.parse, report_bytes, report)
        except (FlowbotError, OSError) as exc:
            build.log().header(f"test report {report}: {exc}")
            return Result.WARNINGS
        build.log().header(f"test report {report}: {junit.describe(Counter(str(case.outcome) for case in cases))}")
        build.record_tests(cases)
        return Result.SUCCESS

    def evaluate(self, outcome: CommandResult) -> Result:
        """The step's result from the command's (by ``decode_rc``); subclasses may look at more."""
        return self.decode_rc.get(outcome.rc, Result.FAILURE) if outcome.rc is not None else Result.FAILURE


def _is_renderable(value: Any) -> bool:
    return isinstance(value, Renderable) and not isinstance(value, type)


def _is_argument(value: Any) -> bool:
    """One argument of an argv command: text, a path, or a renderable (``Interpolate``, say)."""
    return isinstance(value, (str, os.PathLike)) or _is_renderable(value)


class SetPropertyFromCommand(Shell):
    """Run a command and keep its output as a property.

    Args:
        property: the property that gets the output (stripped when ``strip``).
        extract_fn: ``fn(rc, stdout, stderr) -> {name: value}`` to set several properties instead;
            as in Buildbot, it is called whatever the exit code (``property`` is set only on success).
            Either way the step fails when the command does.
    """

    default_name = "set property"

    @checked(property=optional(TEXT), extract_fn=optional(FUNCTION), strip=FLAG)
    def __init__(
        self,
        command: Any,
        property: str | None = None,
        *,
        extract_fn: Callable[[int | None, str, str], dict[str, Any]] | None = None,
        strip: bool = True,
        **options: Any,
    ):
        super().__init__(command, **options)
        if (property is None) == (extract_fn is None):
            raise refuse(self, None, "needs exactly one of property= and extract_fn=")
        self.property = property
        self.extract_fn = extract_fn
        self.strip = strip

    async def run(self, build: BuildContext) -> Result:
        outcome = await build.run_command("shell", self.command_args(build), collect=True)
        source = f"{type(self).__name__} Step"
        if self.extract_fn is not None:
            for name, value in self.extract_fn(outcome.rc, outcome.stdout, outcome.stderr).items():
                build.set_property(name, value, source)
        elif outcome.rc == 0:
            build.set_property(self.property, outcome.stdout.strip() if self.strip else outcome.stdout, source)
        return self.evaluate(outcome)
