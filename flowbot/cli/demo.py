"""``flowbot demo``: a master and two workers as real processes on a throwaway directory.

It sends a few changes (one on a ``wip/`` branch, which the lint builder refuses), waits for the
builds, prints them, and keeps the master up for a look at its API until Ctrl-C (``--once``: exits).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from ..client import Client, MasterUnreachable
from ..defaults import HTTP_HOST, HTTP_PORT, PIPELINE_FILE
from ..errors import FlowbotError
from .table import builds_table

#: (branch, revision, author, comments, files) of the changes the demo sends.
CHANGES = [
    ("main", "3f9c2a1d7e", "alice", "Fix the parser on empty input", ["src/parser.py"]),
    ("main", "8b41e07c22", "bob", "Test the lexer's unicode paths", ["tests/test_lexer.py"]),
    ("wip/speedup", "c7d05e9af1", "carol", "Try a faster tokenizer", ["src/tokenizer.py"]),
    ("main", "e2a6b8d403", "dave", "Document the CLI", ["docs/cli.md"]),
]
WORKERS = {"w1": "demo-secret-1", "w2": "demo-secret-2"}


def _port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers will
            try:
                s.bind((HTTP_HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise FlowbotError("no free port on loopback")


def _wait(what: str, check, timeout: float, processes: dict[str, subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in processes.items():
            if proc.poll() is not None:
                log = (logs / f"{name}.log").read_text()[-3000:]
                raise FlowbotError(f"the demo's {name} exited (code {proc.returncode}):\n{log}")
        try:
            if check():
                return
        except MasterUnreachable:
            pass
        time.sleep(0.05)
    raise FlowbotError(f"timed out waiting for {what}; logs are in {logs}")


def demo(once: bool = False) -> None:
    """Run the demo; see the module docstring."""
    root = Path(tempfile.mkdtemp(prefix="flowbot-demo-"))
    master_dir = root / "master"
    master_dir.mkdir()
    (master_dir / PIPELINE_FILE).write_text(
        resources.files("flowbot.cli").joinpath("templates/demo_pipeline.py").read_text()
    )
    http_port, zmq_port = _port(HTTP_PORT), _port(9989)
    url, endpoint = f"http://{HTTP_HOST}:{http_port}", f"tcp://{HTTP_HOST}:{zmq_port}"
    processes: dict[str, subprocess.Popen] = {}

    def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(root / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )

    try:
        print(f"flowbot demo in {root}")
        spawn(
            "master",
            [
                sys.executable,
                "-m",
                "flowbot",
                "start",
                str(master_dir),
                "--http",
                f"{HTTP_HOST}:{http_port}",
                "--zmq",
                endpoint,
            ],
        )
        client = Client(url, timeout=10)
        _wait("the master", lambda: client.builders() is not None, 60, processes, root)
        for name, secret in WORKERS.items():
            spawn(
                name,
                [
                    sys.executable,
                    "-m",
                    "flowbot_worker",
                    "--master",
                    endpoint,
                    "--name",
                    name,
                    "--basedir",
                    str(root / name),
                ],
                {"FLOWBOT_WORKER_SECRET": secret},
            )
        _wait("the workers", lambda: all(w["connected"] for w in client.workers()), 60, processes, root)
        print(f"master and workers {', '.join(WORKERS)} are up; sending {len(CHANGES)} changes")
        started = time.monotonic()
        for branch, revision, author, comments, files in CHANGES:
            client.sendchange(branch=branch, revision=revision, author=author, comments=comments, files=files)
        expected = 2 * len(CHANGES)
        _wait("the builds", lambda: not client.buildrequests(pending=True), 120, processes, root)
        elapsed = time.monotonic() - started
        builds = sorted(client.builds(limit=expected), key=lambda b: b["id"])
        print(f"\n{len(builds)} builds in {elapsed:.2f} s:\n")
        print(builds_table(builds))
        failed = [b for b in builds if b["result"] != "SUCCESS"]
        if failed:
            first = failed[0]
            print(
                f"\n{len(failed)} failed as they should (lint refuses wip/ branches); the log of "
                f"{first['builder']} #{first['number']}:"
            )
            print(client.request("GET", f"/api/builds/{first['id']}/steps/0/log").rstrip())
        print(f"\nThe web page is at {url}/ and the API at {url}/api; logs are in {root}")
        if not once:
            print("Press Ctrl-C to stop the demo.")
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            raise FlowbotError("a demo process exited; logs are in " + str(root))
    except KeyboardInterrupt:
        print("\nstopping the demo")
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if once:
            shutil.rmtree(root, ignore_errors=True)
