"""``flowbot demo``: a master and two workers as real processes on a throwaway directory.

It makes a small git repository there, which the master polls with ``GitPoller``; once the poller
watches, it commits a few changes (one breaks the tests, the next fixes them). Each commit is
checked out by a ``Git`` step and tested. The demo waits for the builds, prints them, and keeps
the master up for a look at its API until Ctrl-C (``--once``: exits).
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

from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command

from ..client import Client, MasterUnreachable
from ..defaults import HTTP_HOST, HTTP_PORT, PIPELINE_FILE
from ..errors import FlowbotError
from ..record_json import build_from_json
from . import demo_project
from .table import builds_table

#: The builders of the demo's pipeline; each builds every commit.
BUILDERS = ("unit", "lint")
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


def _log(root: Path) -> str:
    """The master's log so far."""
    try:
        return (root / "master.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does: with everything it started


def demo(once: bool = False) -> None:
    """Run the demo; see the module docstring. SIGTERM stops it as Ctrl-C does."""
    previous = signal.signal(signal.SIGTERM, _stop)
    root = Path(tempfile.mkdtemp(prefix="flowbot-demo-"))
    project = root / "project"
    demo_project.create(project)
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
            spawn(name, worker_command(endpoint, name, root / name), {SECRET_VARIABLE: secret})
        _wait("the workers", lambda: all(w["connected"] for w in client.workers()), 60, processes, root)
        _wait("the poller's first look at the repository", lambda: "first poll of" in _log(root), 60, processes, root)
        print(f"master and workers {', '.join(WORKERS)} are up; committing to {project}:")
        started = time.monotonic()
        for author, message, files in demo_project.COMMITS:
            revision = demo_project.commit(project, author, message, files)
            print(f"  {revision[:12]}  {author.split(' <')[0]}: {message}")
        expected = len(BUILDERS) * len(demo_project.COMMITS)

        def done() -> bool:
            builds = client.builds(limit=expected)
            return len(builds) >= expected and all(b["result"] for b in builds)

        _wait("the builds", done, 120, processes, root)
        elapsed = time.monotonic() - started
        builds = sorted(client.builds(limit=expected), key=lambda b: b["id"])
        print(f"\n{len(builds)} builds in {elapsed:.2f} s (from the commits, through polling, to the results):\n")
        print(builds_table([build_from_json(b) for b in builds]))
        failed = [b for b in builds if b["result"] != "SUCCESS"]
        if failed:
            first = failed[0]
            steps = client.request("GET", f"/api/builds/{first['id']}")["steps"]
            step = next((s for s in steps if s["result"] not in ("SUCCESS", "SKIPPED")), steps[-1])
            print(
                f"\n{len(failed)} failed, as expected (bob's commit breaks add, carol's fixes it); the "
                f"{step['name']!r} log of {first['builder']} #{first['number']}:"
            )
            print(client.request("GET", f"/api/builds/{first['id']}/steps/{step['number']}/log").rstrip())
        print(f"\nThe web page is at {url}/ and the API at {url}/api")
        if not once:
            print(_next_steps(url, failed[0] if failed else builds[-1]))
            print(f"Logs and the demo's repository are in {root}.")
            print("Press Ctrl-C to stop the demo.")
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            raise FlowbotError("a demo process exited; logs are in " + str(root))
    except KeyboardInterrupt:
        print(f"\nstopping the demo; its files stay in {root}")
    except BaseException:
        once = False  # keep the logs the error names
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one does not cut the clean-up short
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
        signal.signal(signal.SIGTERM, previous)
    if once:
        print("Next, a master of your own: flowbot create-master ./m (the README shows the rest)")


def _next_steps(url: str, build: dict) -> str:
    """What to try while the demo runs."""
    ref = f"{build['builder']}/{build['number']}"
    tries = [
        (f"flowbot status --master {url}", "builders, builds with their ids, workers"),
        (f"flowbot logs {ref} --master {url}", f"the log of build {ref}"),
        (f"flowbot force --follow unit --master {url}", "build again, printing the log live"),
    ]
    width = max(len(command) for command, _ in tries)
    return "\n".join(
        [
            "Try, in another terminal (FLOWBOT_MASTER set to the address does without --master):",
            *(f"  {command.ljust(width)}  {what}" for command, what in tries),
            "Next, a master of your own: flowbot create-master ./m (the README shows the rest)",
        ]
    )
