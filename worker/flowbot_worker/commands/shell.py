"""The ``shell`` command: run a process, stream its output, enforce its time limits.

The process gets its own session (process group), so an interrupt or a timeout reaches everything
it started: SIGTERM first, SIGKILL after a grace period; and so does the fence, which kills the
group when the worker has heard nothing from its master for too long. Pipes are read with the event loop's
readers and the exit is seen through a pidfd where the kernel has them, so running a command costs
no thread and no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..defaults import SIGTERM_GRACE
from ..errors import CommandError
from ..output import OutputBuffer
from ..tasks import Tasks
from .base import Command, Outcome

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_READ_SIZE = 64 * 1024


def build_env(overrides: dict[str, Any] | None) -> dict[str, str]:
    """The worker's environment with the master's overrides; ``${VAR}`` expands, None unsets."""
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        elif isinstance(value, list):
            env[key] = os.pathsep.join(_VAR.sub(lambda m: os.environ.get(m[1], ""), str(v)) for v in value)
        else:
            env[key] = _VAR.sub(lambda m: os.environ.get(m[1], ""), str(value))
    return env


class ShellCommand(Command):
    """Run ``args["command"]``: a string through ``/bin/sh -c`` or an argv list as is.

    Arguments: ``command``, ``builddir``, ``workdir``, ``env``, ``timeout`` (seconds without
    output), ``max_time`` (seconds in all), ``sigterm_grace``.
    """

    name = "shell"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._proc: subprocess.Popen | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pipes: dict[int, tuple[str, Any]] = {}  # fd -> (stream, Popen's file object)
        self._paused = False
        self._reason: str | None = None
        self._message = ""
        self._last_output = 0.0
        self._timers: list[asyncio.TimerHandle] = []

    async def run(self) -> Outcome:
        command = self.args.get("command")
        if isinstance(command, str) and command.strip():
            argv, shell = command, True
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv, shell = command, False
        else:
            raise CommandError("shell needs a command: a string or a non-empty list of strings")
        for limit in ("timeout", "max_time"):
            value = self.args.get(limit)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise CommandError(f"shell {limit} must be a number of seconds above 0, not {value!r}")
        cwd = self.directory()
        if self._reason is not None:  # interrupted before it could start
            return Outcome(None, self._reason, self._message)
        try:
            self._proc = subprocess.Popen(
                argv,
                shell=shell,
                cwd=cwd,
                env=build_env(self.args.get("env")),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return Outcome(None, "error", f"cannot start {argv!r}: {exc}")
        if self.lease is not None:
            self.lease.hold(self._proc.pid)
        self._last_output = self._loop.time()
        for pipe, stream in ((self._proc.stdout, "stdout"), (self._proc.stderr, "stderr")):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._pipes[fd] = (stream, pipe)
            self._loop.add_reader(fd, self._read, fd)
        self._watch_exit()
        self._start_timers()
        logfiles = _LogFiles(cwd, self.args.get("logfiles") or {}, self.output)
        tasks = Tasks()
        tasks.spawn(logfiles.follow(), f"command {self.cmd_id}: its log files")
        try:
            rc = await self._exited
        finally:
            for timer in self._timers:
                timer.cancel()
            self._drain_and_close()
            await tasks.cancel()
            logfiles.read(limit=64 * 1024 * 1024)  # what the command wrote last
        self.output.flush()
        return Outcome(rc, self._reason, self._message)

    # -- output -------------------------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_fd(fd)
            return
        self._last_output = self._loop.time()
        self.output.write(self._pipes[fd][0], data)
        if self.output.full and not self._paused:
            self._paused = True
            for open_fd in self._pipes:
                self._loop.remove_reader(open_fd)

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._last_output = self._loop.time()  # waiting for the master was not silence
            for fd in self._pipes:
                self._loop.add_reader(fd, self._read, fd)

    def _close_fd(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        self._pipes.pop(fd)[1].close()

    def _drain_and_close(self) -> None:
        """Read what the process left in its pipes, then let go of them.

        A background grandchild may hold the pipes open forever; the command ends with its own
        process, so anything written later is not waited for.
        """
        for fd in list(self._pipes):
            while True:
                try:
                    data = os.read(fd, _READ_SIZE)
                except OSError:  # BlockingIOError included: nothing more for now
                    break
                if not data:
                    break
                self.output.write(self._pipes[fd][0], data)
            self._close_fd(fd)

    # -- exit ---------------------------------------------------------------------------------

    def _watch_exit(self) -> None:
        pid = self._proc.pid
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            # No pidfd (not Linux, or an old kernel): one blocking wait in the default executor.
            waiter = self._loop.run_in_executor(None, os.waitpid, pid, 0)
            waiter.add_done_callback(lambda f: self._reaped(f.result()[1]))
            return

        def on_exit() -> None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            self._reaped(status)

        self._loop.add_reader(pidfd, on_exit)

    def _reaped(self, status: int) -> None:
        rc = os.waitstatus_to_exitcode(status)
        self._proc.returncode = rc  # we reaped it; keep Popen from trying again
        if self.lease is not None:
            self.lease.release(self._proc.pid)
        if not self._exited.done():
            self._exited.set_result(rc)

    # -- limits and interrupts ----------------------------------------------------------------

    def _start_timers(self) -> None:
        timeout = self.args.get("timeout")
        max_time = self.args.get("max_time")
        if timeout:
            self._timers.append(self._loop.call_later(timeout, self._check_silence, float(timeout)))
        if max_time:
            self._timers.append(
                self._loop.call_later(
                    max_time, self._stop, "max_time", f"command ran longer than max_time={max_time} s"
                )
            )

    def _check_silence(self, timeout: float) -> None:
        # While reading is paused the process waits on the master's acks, so it is not silent.
        quiet = 0.0 if self._paused else self._loop.time() - self._last_output
        if quiet >= timeout:
            self._stop("timeout", f"command produced no output for {timeout:g} s")
        else:
            self._timers.append(self._loop.call_later(timeout - quiet, self._check_silence, timeout))

    def interrupt(self, reason: str, grace: float) -> None:
        self._stop("interrupted", reason or "interrupted", grace)

    def _stop(self, reason: str, message: str, grace: float | None = None) -> None:
        if self._exited.done() or self._reason is not None:
            return
        self._reason, self._message = reason, message
        if self._proc is None:
            return  # not started yet: run() sees the reason and never starts it
        if grace is None:
            grace = float(self.args.get("sigterm_grace", SIGTERM_GRACE))
        self._signal(signal.SIGTERM)
        self._timers.append(self._loop.call_later(grace, self._signal, signal.SIGKILL))

    def _signal(self, sig: int) -> None:
        if self._exited.done():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)


class _LogFiles:
    """Files a command writes, followed while it runs and sent as logs of their own."""

    #: Seconds between looks at the files.
    INTERVAL = 0.5

    def __init__(self, cwd: Path, files: dict[str, str], output: OutputBuffer):
        self.files = {name: cwd / path for name, path in files.items() if isinstance(path, str)}
        self.offsets = dict.fromkeys(self.files, 0)
        self.output = output

    async def follow(self) -> None:
        while self.files:
            await asyncio.sleep(self.INTERVAL)
            self.read()

    def read(self, limit: int = 1024 * 1024) -> None:
        """Send what each file gained since the last look, up to ``limit`` bytes per file."""
        for name, path in self.files.items():
            try:
                with open(path, "rb") as source:
                    source.seek(self.offsets[name])
                    data = source.read(limit)
            except OSError:
                continue  # not written yet
            if data:
                self.offsets[name] += len(data)
                self.output.write(f"log:{name}", data)
