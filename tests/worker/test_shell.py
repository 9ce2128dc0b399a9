"""Tests for ``flowbot_worker.commands.shell``: real processes under /bin/sh, run as a worker runs them.

The ``shell`` fixture starts a :class:`ShellCommand` as a task, with an :class:`OutputBuffer` whose
``send`` goes to a fake master that rebuilds each stream from its offsets and (by default) acknowledges
everything it gets, as the real master does. Commands still running at teardown are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from flowbot_worker import protocol
from flowbot_worker.commands import COMMANDS, Outcome, ShellCommand
from flowbot_worker.commands import shell as shell_module
from flowbot_worker.commands.shell import build_env
from flowbot_worker.errors import CommandError
from flowbot_worker.output import OutputBuffer


class Run:
    """One command started by the ``shell`` fixture, and the master's view of its output."""

    def __init__(self, args: dict[str, Any], basedir: Path, *, ack: bool, **buffer_options: Any):
        self.loop = asyncio.get_running_loop()
        self.streams: dict[str, bytearray] = {}
        self.gaps: list[str] = []
        #: Set by every output message the master gets.
        self.got_output = asyncio.Event()
        #: Largest number of bytes the worker held (sent or not) when it sent something.
        self.most_held = 0
        self.window_opened = 0
        self.acking = ack
        self.output = OutputBuffer("cmd-1", self._send, self._window_open, **buffer_options)
        self.command = ShellCommand("cmd-1", args, basedir, self.output)
        self.task: asyncio.Task[Outcome] = self.loop.create_task(self.command.run())

    def _send(self, kind: str, content: dict, blobs: tuple[bytes, ...]) -> None:
        assert kind == protocol.OUTPUT
        stream = self.streams.setdefault(content["stream"], bytearray())
        if content["offset"] != len(stream):  # recorded, not raised: this runs in an event loop callback
            self.gaps.append(f"{content['stream']} at {content['offset']}, holding {len(stream)}")
        stream += b"".join(blobs)
        self.most_held = max(self.most_held, self.output.in_flight)
        self.got_output.set()
        if self.acking:
            self.loop.call_soon(self.ack_all)

    def _window_open(self) -> None:
        self.window_opened += 1
        self.command.resume_reading()

    def ack_all(self) -> None:
        """Acknowledge everything received, as the master does when it has stored it."""
        self.output.ack({name: len(data) for name, data in self.streams.items()})

    def start_acking(self) -> None:
        self.acking = True
        self.ack_all()

    async def outcome(self, timeout: float = 4.0) -> Outcome:
        """The command's outcome; fails the test if it takes longer than ``timeout`` seconds."""
        outcome = await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert self.gaps == [], "output arrived with gaps"
        return outcome

    def text(self, stream: str = "stdout") -> str:
        return self.streams.get(stream, bytearray()).decode()


@pytest.fixture
async def shell(tmp_path: Path) -> AsyncIterator[Callable[..., Run]]:
    """Start shell commands in ``tmp_path/"basedir"``; any still running at teardown are killed."""
    basedir = tmp_path / "basedir"
    basedir.mkdir()
    runs: list[Run] = []

    def start(args: dict[str, Any], *, ack: bool = True, **buffer_options: Any) -> Run:
        buffer_options.setdefault("flush_delay", 0.01)
        run = Run(args, basedir, ack=ack, **buffer_options)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if not run.task.done():
            run.command.interrupt("test teardown", 0.0)
        with contextlib.suppress(Exception):  # the test has already reported whatever went wrong
            await asyncio.wait_for(run.task, 5)
        run.output.close()


async def readable(fd: int) -> None:
    """Wait until ``fd`` is readable; for a pidfd, until that process has ended."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def test_shell_is_the_command_the_master_names_shell() -> None:
    assert COMMANDS["shell"] is ShellCommand


# -- exit codes and output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "rc"),
    [("true", 0), ("exit 3", 3), (["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42)],
    ids=["string-0", "string-3", "argv-0", "argv-1", "argv-42"],
)
async def test_exit_code_is_the_processs(shell, command: str | list[str], rc: int) -> None:
    outcome = await shell({"command": command}).outcome()

    assert outcome == Outcome(rc, None, "")


async def test_string_goes_through_the_shell_and_an_argv_list_does_not(shell) -> None:
    piped = shell({"command": "echo one two | wc -w"})
    literal = shell({"command": ["echo", "$HOME | wc -w"]})

    await piped.outcome()
    await literal.outcome()

    assert piped.text().strip() == "2"
    assert literal.text() == "$HOME | wc -w\n"


async def test_stdout_and_stderr_arrive_on_their_own_streams_in_order(shell) -> None:
    run = shell({"command": "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 1"})

    outcome = await run.outcome()

    assert outcome.rc == 1
    assert run.text("stdout") == "out1\nout2\n"
    assert run.text("stderr") == "err1\nerr2\n"


async def test_large_output_arrives_complete_and_in_order(shell) -> None:
    run = shell({"command": ["seq", "1", "100000"]})

    assert (await run.outcome()).rc == 0

    assert run.text() == "".join(f"{i}\n" for i in range(1, 100001))


async def test_output_arrives_while_the_command_still_runs(shell) -> None:
    run = shell({"command": "echo early; sleep 30"})

    await asyncio.wait_for(run.got_output.wait(), 4)

    assert run.text() == "early\n"
    assert not run.task.done()
    run.command.interrupt("seen enough", 1.0)
    assert (await run.outcome()).reason == "interrupted"


async def test_the_process_reads_an_empty_stdin(shell) -> None:
    run = shell({"command": "cat; echo eof"})

    await run.outcome()

    assert run.text() == "eof\n"


@pytest.mark.parametrize("command", [None, [], ["ls", 1], {"argv": ["ls"]}, 7])
async def test_a_command_that_is_neither_a_string_nor_a_list_of_strings_is_refused(shell, command: Any) -> None:
    with pytest.raises(CommandError):
        await shell({"command": command}).outcome()


@pytest.mark.parametrize("limit", ["timeout", "max_time"])
@pytest.mark.parametrize("value", ["10 minutes", 0, -5, True])
async def test_a_time_limit_that_is_not_a_number_of_seconds_is_refused_before_anything_runs(
    shell, tmp_path: Path, limit: str, value: Any
) -> None:
    run = shell({"command": "touch ran", limit: value})

    with pytest.raises(CommandError, match=f"shell {limit} must be a number of seconds above 0, not {value!r}"):
        await run.outcome()
    assert list(tmp_path.rglob("ran")) == []


async def test_a_program_that_does_not_exist_ends_with_an_error_not_an_exception(shell) -> None:
    outcome = await shell({"command": ["/nonexistent/flowbot-program", "--flag"]}).outcome()

    assert outcome.rc is None
    assert outcome.reason == "error"
    assert "/nonexistent/flowbot-program" in outcome.message


async def test_a_shell_string_naming_a_missing_program_fails_like_the_shell(shell) -> None:
    run = shell({"command": "flowbot-no-such-program-here"})

    outcome = await run.outcome()

    assert (outcome.rc, outcome.reason) == (127, None)
    assert "flowbot-no-such-program-here" in run.text("stderr")


# -- environment ----------------------------------------------------------------------------------


async def test_env_expands_worker_variables_and_none_unsets(shell, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a worker environment with a name to expand and a variable the master wants gone
    monkeypatch.setenv("FLOWBOT_TEST_NAME", "world")
    monkeypatch.setenv("FLOWBOT_TEST_SECRET", "hunter2")
    env = {
        "GREETING": "hello ${FLOWBOT_TEST_NAME}${FLOWBOT_TEST_MISSING}!",
        "SEARCH": ["/opt/${FLOWBOT_TEST_NAME}", "/usr"],
        "COUNT": 3,
        "FLOWBOT_TEST_SECRET": None,
    }

    # When a command prints them
    run = shell(
        {
            "command": 'printf "%s|%s|%s|%s" "$GREETING" "$SEARCH" "$COUNT" "${FLOWBOT_TEST_SECRET-unset}"',
            "env": env,
        }
    )
    await run.outcome()

    # Then it saw the expanded values, lists joined as paths, and no secret
    assert run.text() == f"hello world!|/opt/world{os.pathsep}/usr|3|unset"


async def test_env_keeps_the_rest_of_the_workers_environment(shell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBOT_TEST_INHERITED", "kept")

    run = shell({"command": 'echo "$FLOWBOT_TEST_INHERITED"', "env": {"OTHER": "x"}})
    await run.outcome()

    assert run.text() == "kept\n"


def test_build_env_leaves_other_forms_to_the_shell_and_the_worker_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBOT_TEST_NAME", "world")
    before = dict(os.environ)

    env = build_env({"A": "$FLOWBOT_TEST_NAME ${FLOWBOT_TEST_NAME} ${1BAD}", "FLOWBOT_TEST_NAME": None})

    assert env["A"] == "$FLOWBOT_TEST_NAME world ${1BAD}"
    assert "FLOWBOT_TEST_NAME" not in env
    assert dict(os.environ) == before
    assert build_env(None) == before


# -- working directory ----------------------------------------------------------------------------


async def test_runs_in_basedir_builddir_workdir_which_is_created(shell, tmp_path: Path) -> None:
    expected = (tmp_path / "basedir" / "build" / "src").resolve()
    assert not expected.exists()

    run = shell({"command": "pwd", "builddir": "build", "workdir": "src"})
    await run.outcome()

    assert run.text() == f"{expected}\n"
    assert expected.is_dir()


async def test_runs_in_basedir_without_builddir_or_workdir(shell, tmp_path: Path) -> None:
    run = shell({"command": ["pwd"]})

    await run.outcome()

    assert run.text() == f"{(tmp_path / 'basedir').resolve()}\n"


@pytest.mark.parametrize(
    ("builddir", "workdir"),
    [("build", "../../etc"), ("..", None), ("/etc", None), ("build", "/tmp"), ("link-out", None)],
)
async def test_a_directory_outside_basedir_is_refused(
    shell, tmp_path: Path, builddir: str, workdir: str | None
) -> None:
    # Given a symlink in basedir that leads out of it
    (tmp_path / "outside").mkdir()
    (tmp_path / "basedir" / "link-out").symlink_to(tmp_path / "outside")

    # When a command asks to run outside basedir
    run = shell({"command": "touch escaped", "builddir": builddir, "workdir": workdir})

    # Then it is refused before anything runs or is created
    with pytest.raises(CommandError, match="outside the worker's basedir"):
        await run.outcome()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["basedir", "link-out", "outside"]


async def test_dot_dot_that_stays_inside_basedir_is_allowed(shell, tmp_path: Path) -> None:
    run = shell({"command": "pwd", "builddir": "build", "workdir": "../other"})

    await run.outcome()

    assert run.text() == f"{(tmp_path / 'basedir' / 'other').resolve()}\n"


# -- time limits and interrupts -------------------------------------------------------------------


async def test_a_silent_command_is_killed_after_timeout(shell) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    outcome = await shell({"command": "sleep 30", "timeout": 0.3}).outcome()

    assert outcome.rc == -signal.SIGTERM
    assert outcome.reason == "timeout"
    assert "no output for 0.3 s" in outcome.message
    assert loop.time() - started >= 0.3


async def test_timeout_counts_silence_not_running_time(shell) -> None:
    # Given a command that runs 0.8 s in all but never stays silent for 0.1 s
    run = shell({"command": "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done", "timeout": 0.5})

    # When it runs with a 0.5 s timeout
    outcome = await run.outcome()

    # Then it runs out
    assert outcome == Outcome(0, None, "")
    assert run.text().split() == [str(i) for i in range(1, 9)]


async def test_max_time_kills_a_command_that_keeps_printing(shell) -> None:
    run = shell({"command": "while :; do echo tick; sleep 0.02; done", "timeout": 10, "max_time": 0.3})

    outcome = await run.outcome()

    assert outcome.rc == -signal.SIGTERM
    assert outcome.reason == "max_time"
    assert "max_time=0.3" in outcome.message
    assert run.text().startswith("tick\n")


async def test_interrupt_stops_the_whole_process_group(shell) -> None:
    # Given a command whose child has reported its pid
    run = shell({"command": "sleep 30 & echo $!; wait"})
    await asyncio.wait_for(run.got_output.wait(), 4)
    child = os.pidfd_open(int(run.text()))
    try:
        # When it is interrupted
        run.command.interrupt("cancelled by user", 5.0)
        outcome = await run.outcome()

        # Then the shell and its child both got SIGTERM, without waiting for the grace period
        assert outcome == Outcome(-signal.SIGTERM, "interrupted", "cancelled by user")
        await asyncio.wait_for(readable(child), 1.0)
    finally:
        os.close(child)


async def test_interrupt_kills_a_process_that_ignores_sigterm_after_the_grace(shell) -> None:
    # Given a command that ignores SIGTERM and has said so
    loop = asyncio.get_running_loop()
    run = shell({"command": 'trap "" TERM; echo ready; sleep 30'})
    await asyncio.wait_for(run.got_output.wait(), 4)

    # When it is interrupted with a 0.3 s grace
    interrupted_at = loop.time()
    run.command.interrupt("stop", 0.3)
    outcome = await run.outcome()

    # Then it is SIGKILLed once the grace is over
    assert outcome == Outcome(-signal.SIGKILL, "interrupted", "stop")
    assert loop.time() - interrupted_at >= 0.29


async def test_timeout_honours_sigterm_grace(shell) -> None:
    run = shell({"command": 'trap "" TERM; sleep 30', "timeout": 0.2, "sigterm_grace": 0.2})

    outcome = await run.outcome()

    assert (outcome.rc, outcome.reason) == (-signal.SIGKILL, "timeout")


async def test_the_first_reason_to_stop_is_the_one_reported(shell) -> None:
    run = shell({"command": 'trap "" TERM; echo ready; sleep 30', "timeout": 0.2, "sigterm_grace": 0.5})
    await asyncio.wait_for(run.got_output.wait(), 4)

    # The timeout fires during the grace period of the interrupt and must not take over.
    run.command.interrupt("user", 0.5)
    outcome = await run.outcome()

    assert (outcome.rc, outcome.reason, outcome.message) == (-signal.SIGKILL, "interrupted", "user")


async def test_interrupting_a_finished_command_does_nothing(shell) -> None:
    run = shell({"command": "exit 0"})
    assert (await run.outcome()).rc == 0

    run.command.interrupt("too late", 0.0)

    assert (await run.outcome()).reason is None


async def test_a_background_grandchild_holding_the_pipes_does_not_keep_the_command_running(shell) -> None:
    # Given a command that leaves a child behind with its stdout and stderr
    run = shell({"command": "sleep 30 & echo $!"})
    try:
        # When the command itself exits
        outcome = await run.outcome(timeout=3.0)
        grandchild = int(run.text())

        # Then it has finished with its own exit code and output, though the grandchild lives on
        assert outcome == Outcome(0, None, "")
        os.kill(grandchild, 0)
    finally:
        if run.text().strip().isdigit():
            os.kill(int(run.text()), signal.SIGKILL)


# -- back-pressure --------------------------------------------------------------------------------


async def test_a_command_printing_more_than_the_window_completes_as_acks_arrive(shell) -> None:
    # Given a 4 KiB window and a master that acknowledges each message as it gets it
    expected = "".join(f"{i}\n" for i in range(1, 60001))
    run = shell({"command": ["seq", "1", "60000"]}, window=4096, flush_bytes=1024)

    # When a command prints far more than that (350 KB)
    outcome = await run.outcome()

    # Then reading paused and resumed, the worker never held much more than a window plus one
    # read, and every byte arrived in order
    assert outcome.rc == 0
    assert run.window_opened > 0
    assert run.most_held <= 4096 + 64 * 1024
    assert run.text() == expected


async def test_a_command_blocked_by_a_slow_master_is_not_killed_for_silence(shell) -> None:
    # Given a master that acknowledges nothing for 0.8 s, and a 0.3 s timeout for silence
    loop = asyncio.get_running_loop()
    run = shell({"command": ["seq", "1", "60000"], "timeout": 0.3}, ack=False, window=4096, flush_bytes=1024)
    loop.call_later(0.8, run.start_acking)

    # When the command fills the window and its pipe, and must wait in write()
    outcome = await run.outcome()

    # Then it was waiting on the master, not silent: it completes once the acks come
    assert outcome == Outcome(0, None, "")
    assert run.text() == "".join(f"{i}\n" for i in range(1, 60001))


async def test_without_acks_reading_stops_at_the_window(shell) -> None:
    # Given a master that never acknowledges
    run = shell({"command": ["seq", "1", "60000"]}, ack=False, window=4096, flush_bytes=1024)
    await asyncio.wait_for(run.got_output.wait(), 4)

    # When the worker has read what it may
    await asyncio.sleep(0.2)  # no event marks "stopped reading": give it time to read on if it wrongly would

    # Then it holds no more than a window plus one read, and the command waits
    assert run.output.full
    assert run.output.in_flight <= 4096 + 64 * 1024
    assert not run.task.done()

    # And once acks come, it completes
    run.start_acking()
    assert (await run.outcome()).rc == 0
    assert len(run.text()) == len("".join(f"{i}\n" for i in range(1, 60001)))


async def test_an_interrupt_that_arrives_before_the_process_starts_keeps_it_from_starting(tmp_path):
    # Given a command the master interrupts before the worker got round to starting it
    sent = []
    output = OutputBuffer("c1", lambda *message: sent.append(message), lambda: None)
    command = ShellCommand("c1", {"command": f"touch {tmp_path / 'ran'}; sleep 30"}, tmp_path, output)
    command.interrupt("parent stopped", 1.0)

    # When it runs
    outcome = await asyncio.wait_for(command.run(), 5)

    # Then it ends at once as interrupted, and nothing ran
    assert (outcome.rc, outcome.reason, outcome.message) == (None, "interrupted", "parent stopped")
    assert not (tmp_path / "ran").exists()


async def test_a_failure_following_log_files_is_logged_and_the_command_ends_as_its_process(
    shell, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a command whose log files cannot be followed
    async def broken(self: Any) -> None:
        raise RuntimeError("cannot follow")

    monkeypatch.setattr(shell_module._LogFiles, "follow", broken)
    with caplog.at_level(logging.ERROR, logger="flowbot_worker.tasks"):
        # When it runs
        outcome = await shell({"command": "echo hi"}).outcome()
    # Then it ends as its process did, and the failure is logged by the command's id
    assert (outcome.rc, outcome.reason) == (0, None)
    assert [r.getMessage() for r in caplog.records] == ["command cmd-1: its log files failed: cannot follow"]
