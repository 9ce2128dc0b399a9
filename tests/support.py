"""What the tests share besides fixtures: real processes, waiting, and reading a master's API."""

from __future__ import annotations

import ast
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command

from flowbot.client import Client, MasterUnreachable

#: Heartbeat for test masters: a silent worker is lost after 3 x this.
TEST_HEARTBEAT = 0.3


def unowned_tasks(package: Path) -> list[str]:
    """Where the modules below ``package`` start a task bare (``create_task``, ``ensure_future``,
    ``TaskGroup``) rather than through an owner; its own ``tasks.py`` is the one that may."""
    bare = []
    for path in package.rglob("*.py"):
        if path.name == "tasks.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("create_task", "ensure_future", "TaskGroup"):
                bare.append(f"{path.name}:{node.lineno} {node.attr}")
    return bare


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def wait_for_async(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """:func:`wait_for` for a test that runs on the master's own loop: it yields while it waits."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (one that exited and waits to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone meanwhile
        return False


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup (a crash)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class MasterProcess(Process):
    """``flowbot start`` on free loopback ports."""

    def __init__(
        self,
        basedir: Path,
        db: str | None = None,
        heartbeat: float = TEST_HEARTBEAT,
        http_port: int | None = None,
        zmq_port: int | None = None,
    ):
        self.basedir = basedir
        self.http_port = http_port or free_port()
        self.zmq_port = zmq_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.endpoint = f"tcp://127.0.0.1:{self.zmq_port}"
        self.db = db
        argv = [
            sys.executable,
            "-m",
            "flowbot",
            "start",
            str(basedir),
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--zmq",
            self.endpoint,
            "--heartbeat",
            str(heartbeat),
        ]
        if db:
            argv += ["--db", db]
        super().__init__(argv, basedir.parent / f"{basedir.name}.log")
        self.client = Client(self.url, timeout=10)

    def wait_ready(self, timeout: float = 30.0) -> MasterProcess:
        def ready() -> bool:
            if not self.alive():
                pytest.fail(f"master exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.client.builders()
            except MasterUnreachable:
                return False
            return True

        try:
            wait_for(ready, timeout, "the master's HTTP API")
        except BaseException:
            self.stop()  # a master that never came up is not left running for a later test to trip on
            raise
        return self


def restart(master_factory: Callable[..., MasterProcess], master: MasterProcess, pipeline: str, **options: Any):
    """Start a master again (after it stopped or was killed) on ``master``'s directory, ports and database."""
    return master_factory(
        pipeline,
        name=master.basedir.name,
        http_port=master.http_port,
        zmq_port=master.zmq_port,
        db=master.db,
        **options,
    )


class WorkerProcess(Process):
    """``flowbot-worker`` dialing a master."""

    def __init__(self, endpoint: str, name: str, secret: str, basedir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.basedir = basedir
        super().__init__(
            worker_command(endpoint, name, basedir),
            basedir.parent / f"{name}.log",
            env={SECRET_VARIABLE: secret, **(env or {})},
        )


#: The README's first pipeline, exactly as written there.
SAMPLE_PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler

pipeline = Pipeline(
    workers=[Worker("w1", secret="change-me"), Worker("w2", secret="other")],
    schedulers=[
        AnyBranchScheduler("on-change", builders=["unit", "lint"]),
        ForceScheduler("force", builders=["unit", "lint"]),
    ],
    builders=[
        Builder("unit", workers=["w1", "w2"], steps=[
            Shell("echo testing $FLOWBOT_REVISION", name="test"),
            Shell(["python3", "-c", "print('done')"], name="report"),
        ]),
        Builder("lint", workers=["w2"], steps=[Shell("exit 3", name="lint")]),
    ],
)
"""


def finished_builds(client: Client, count: int, timeout: float = 30.0, **query: Any) -> list[dict[str, Any]]:
    """Wait until at least ``count`` builds (matching ``query``) have a result; oldest first."""

    def done() -> list[dict[str, Any]] | None:
        builds = [b for b in client.builds(limit=200, **query) if b["result"] is not None]
        return sorted(builds, key=lambda b: b["id"]) if len(builds) >= count else None

    return wait_for(done, timeout, f"{count} finished builds")


def running_build(client: Client, builder: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until ``builder`` has a build running, and return it."""

    def running() -> dict[str, Any] | None:
        return next((b for b in client.builds(builder=builder, limit=5) if b["result"] is None), None)

    return wait_for(running, timeout, f"a running build of {builder}")


def step_log(client: Client, build_id: int, step: int) -> str:
    return client.request("GET", f"/api/builds/{build_id}/steps/{step}/log")


def dropped_messages(client: Client) -> dict[str, float]:
    """The master's count of dropped worker messages by reason, as ``/metrics`` says."""
    counts = {}
    for line in client.request("GET", "/metrics").splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.startswith('flowbot_worker_messages_dropped_total{reason="'):
            counts[sample.split('"')[1]] = float(value)
    return counts


# -- the worker link on the wire ------------------------------------------------------------------

#: ZMTP 3's greeting: the signature, the version, the mechanism's name, as-server, filler.
_ZMTP_GREETING = 64
_ZMTP_MORE, _ZMTP_LONG, _ZMTP_COMMAND = 1, 2, 4


def zmtp_messages(stream: bytes) -> list[list[bytes]]:
    """The messages (lists of frames) in one direction of a ZMTP 3 connection without encryption,
    as a peer's socket sent them; the handshake's and heartbeats' commands are left out."""
    messages, frames, at = [], [], _ZMTP_GREETING
    while at < len(stream):
        flags = stream[at]
        if flags & _ZMTP_LONG:
            (size,), at = struct.unpack(">Q", stream[at + 1 : at + 9]), at + 9
        else:
            size, at = stream[at + 1], at + 2
        body, at = stream[at : at + size], at + size
        if len(body) < size:
            break  # cut off mid-frame
        if flags & _ZMTP_COMMAND:
            continue
        frames.append(body)
        if not flags & _ZMTP_MORE:
            messages.append(frames)
            frames = []
    return messages


class RecordingServer:
    """A real HTTP server on a free loopback port that records every request it gets.

    It answers each request with the next status of ``statuses`` (then 201 for ever), or, while
    ``hang`` is set, not at all for ``hang`` seconds: enough to play GitHub or any endpoint.
    """

    def __init__(self, statuses: list[int] | None = None):
        import http.server

        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self.hang = 0.0
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if recorder.hang:
                    time.sleep(recorder.hang)
                status = recorder.statuses.pop(0) if recorder.statuses else 201
                recorder.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "json": _json_or_none(body),
                        "status": status,
                        "time": time.time(),
                    }
                )
                answer = b'{"message": "recorded"}' if status < 400 else b'{"message": "Bad credentials"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answered(self, status: int = 201) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json_or_none(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None
