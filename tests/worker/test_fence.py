"""The fence's watchdog: it kills a command's process group once its deadline passes, or once the
worker that holds it is gone, and leaves alone a group released or renewed in time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from flowbot_worker.fence import Fence

from ..support import pid_alive, wait_for


def _command() -> subprocess.Popen:
    """A process group that would run for a minute: a shell and its sleep."""
    return subprocess.Popen(["sh", "-c", "sleep 60; true"], start_new_session=True)


def _end(command: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(command.pid, signal.SIGKILL)
    command.wait()


def test_a_group_whose_deadline_passes_is_killed_and_one_renewed_is_not():
    fence = Fence()
    lapsing, renewed = _command(), _command()
    try:
        fence.hold(lapsing.pid, time.monotonic() + 0.3)
        fence.hold(renewed.pid, time.monotonic() + 0.3)
        fence.hold(renewed.pid, time.monotonic() + 30)
        assert lapsing.wait(timeout=10) == -9
        assert renewed.poll() is None
    finally:
        _end(renewed)
        fence.close()


def test_a_group_released_is_left_alone():
    fence = Fence()
    command = _command()
    try:
        fence.hold(command.pid, time.monotonic() + 0.3)
        fence.release(command.pid)
        time.sleep(1.0)
        assert command.poll() is None
    finally:
        _end(command)
        fence.close()


def test_every_group_held_is_killed_when_the_worker_is_gone():
    fence = Fence()
    command = _command()
    fence.hold(command.pid, time.monotonic() + 300)
    watchdog = fence._proc.pid
    fence.close()  # as the pipe closes when the worker dies
    assert command.wait(timeout=10) == -9
    wait_for(lambda: not pid_alive(watchdog), 10, "the watchdog to exit")
