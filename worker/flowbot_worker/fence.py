"""The fence: a worker's commands stop once it has heard nothing from its master for too long.

The master gives up a silent worker's builds and runs them elsewhere only after the fence has
fired (see ``PROTOCOL.md``), so a step never completes on a worker the master has given up while it
runs again on another. The worker cannot always stop its commands itself: a worker frozen
(SIGSTOP, a suspended VM) runs no timer, and a killed one runs nothing, while its commands, each in
a process group of its own, run on. So the fence is a small process of its own, a watchdog, that
holds each command's process group with a deadline the worker moves on whenever it hears from the
master, and kills (SIGKILL) every group whose deadline passes, and every group it holds when the
worker's end of its pipe closes (the worker died). One watchdog serves every worker of a process.

Deadlines are ``time.monotonic()`` values: CLOCK_MONOTONIC is one clock for every process of a
Linux machine, and it goes on while processes are stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("flowbot_worker")


class Fence:
    """The worker's end of the watchdog process (started at the first command, shared by the
    workers of a process through :meth:`shared`).

    ``hold(pgid, deadline)`` hands a process group to the watchdog, or moves its deadline on;
    ``release(pgid)`` takes it back once the command has ended and been reaped.
    """

    _shared: Fence | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @classmethod
    def shared(cls) -> Fence:
        """The process's fence (a child process after a fork makes its own)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._pid != os.getpid():
                cls._shared = cls()
            return cls._shared

    def hold(self, pgid: int, deadline: float) -> None:
        self._write(f"{pgid} {deadline:.3f}\n")

    def release(self, pgid: int) -> None:
        self._write(f"{pgid} -\n")

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "flowbot_worker.fence"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,  # not stopped or interrupted with the worker's group
                    )
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
            except OSError as exc:
                log.error("cannot reach the fence watchdog: %s", exc)

    def close(self) -> None:
        """Stop the watchdog; it kills what it still holds."""
        with self._lock:
            if self._proc is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
                self._proc.wait()
                self._proc = None


class Lease:
    """One worker's hold on the fence: the process groups of its commands, and how long they may
    run on without word from the master (``seconds``, which the master's welcome sets; None: no
    fence, for a master that does not ask for one)."""

    def __init__(self, fence: Fence, seconds: float | None = None):
        self.fence = fence
        self.seconds = seconds
        #: When the worker last heard from the master (``time.monotonic()``).
        self.heard = time.monotonic()
        self.groups: set[int] = set()
        self._renewed = 0.0

    @property
    def deadline(self) -> float:
        return self.heard + self.seconds if self.seconds is not None else math.inf

    def lapsed(self, now: float) -> bool:
        """Whether the master has been silent past the fence (its commands are killed by now)."""
        return now > self.deadline

    def renew(self, now: float) -> None:
        """The master was heard from at ``now``: move every group's deadline on (a few times per fence)."""
        self.heard = now
        if self.groups and self.seconds is not None and now - self._renewed >= self.seconds / 8:
            self._renewed = now
            for pgid in self.groups:
                self.fence.hold(pgid, self.deadline)

    def hold(self, pgid: int) -> None:
        """Fence the process group of a command that has just started."""
        if self.seconds is not None:
            self.groups.add(pgid)
            self.fence.hold(pgid, self.deadline)

    def release(self, pgid: int) -> None:
        """The command has ended and been reaped: its group id may be another's soon."""
        if pgid in self.groups:
            self.groups.discard(pgid)
            self.fence.release(pgid)

    def kill(self) -> None:
        """Kill every group now (the worker found the fence lapsed before its watchdog did)."""
        for pgid in self.groups:
            _kill(pgid)


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def watch(fd: int) -> None:
    """The watchdog: read ``pgid deadline`` and ``pgid -`` lines from ``fd``; kill each group whose
    deadline passes, and every group held when ``fd`` reaches its end."""
    held: dict[int, float] = {}
    pending = b""
    while True:
        now = time.monotonic()
        for pgid in [p for p, deadline in held.items() if deadline <= now]:
            del held[pgid]
            _kill(pgid)
        timeout = min(held.values(), default=math.inf) - now
        readable, _, _ = select.select([fd], [], [], None if timeout == math.inf else max(timeout, 0.0))
        if not readable:
            continue
        data = os.read(fd, 65536)
        if not data:
            for pgid in held:
                _kill(pgid)
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            pgid, _, deadline = line.decode().partition(" ")
            if deadline == "-":
                held.pop(int(pgid), None)
            else:
                held[int(pgid)] = float(deadline)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(sys.stdin.fileno())
