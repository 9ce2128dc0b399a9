"""The master's processes as an operator runs them: a taken port, signals, running in the background."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command

from ..support import SAMPLE_PIPELINE, MasterProcess, finished_builds, free_port, pid_alive, step_log, wait_for


def test_a_taken_worker_port_fails_start_at_once_with_the_address_and_the_reason(tmp_path):
    # Given a port something else listens on
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pipeline.py").write_text(SAMPLE_PIPELINE)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        # When a master is started with its worker endpoint there
        began = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowbot",
                "start",
                str(tmp_path / "m"),
                "--http",
                f"127.0.0.1:{free_port()}",
                "--zmq",
                f"tcp://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - began
    finally:
        taken.close()
    # Then it exits at once, saying where and why, and leaves no pid file
    assert result.returncode == 1, result.stderr
    assert f"cannot listen for workers on tcp://127.0.0.1:{port}: Address already in use" in result.stderr
    assert took < 30, took
    assert not (tmp_path / "m" / "master.pid").exists()


def _worker(master: str, name: str, secret: str, basedir, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        worker_command(master, name, basedir, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, SECRET_VARIABLE: secret},
    )


@pytest.mark.parametrize(
    ("name", "secret", "why"),
    [
        ("w1", "wrong", "bad signature: the worker's secret does not match the master's"),
        ("nobody", "change-me", "unknown worker: the pipeline declares no worker of that name"),
    ],
)
def test_a_worker_refused_for_good_exits_saying_why_unless_told_to_keep_trying(
    master_factory, tmp_path, name, secret, why
):
    master = master_factory()
    # A worker refused for a reason that trying again will not change exits at once, with code 3
    worker = _worker(f"127.0.0.1:{master.zmq_port}", name, secret, tmp_path / "a")
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 3, out
    assert f"the master at {master.endpoint} refused worker {name!r}: {why}" in out
    assert "Traceback" not in out
    # Told to keep trying, it does: refused, it says hello again and is refused again
    stubborn = _worker(master.endpoint, name, secret, tmp_path / "b", "--keep-trying")
    try:
        wait_for(lambda: _refusals(master) >= 3 or stubborn.poll() is not None, 60, "the worker's second refusal")
        assert stubborn.poll() is None, (
            f"told to keep trying, the worker exited with code {stubborn.returncode}:\n{stubborn.communicate()[0]}"
        )
    finally:
        stubborn.terminate()
        stubborn.communicate(timeout=30)


def _refusals(master) -> float:
    metrics = master.client.request("GET", "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("flowbot_worker_messages_dropped_total") and 'reason="refused"' in line
    )


def test_the_worker_refuses_an_address_it_cannot_dial_with_a_clear_message(tmp_path):
    for address, message in [
        ("http://127.0.0.1:8010", "is the master's HTTP address; a worker dials its worker port"),
        ("127.0.0.1:notaport", "is not the master's endpoint: give tcp://HOST:PORT (or HOST:PORT)"),
    ]:
        worker = _worker(address, "w1", "s", tmp_path)
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 1, out
        assert message in out and "Traceback" not in out


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_children(int(child))]
    return found


def test_sigterm_stops_the_demo_and_everything_it_started():
    # Given the demo, running until it is stopped
    demo = subprocess.Popen(
        [sys.executable, "-m", "flowbot", "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = []
    try:
        for line in demo.stdout:
            out.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(out)
        url = re.search(r"The web page is at (http://\S+)/ ", text)[1]
        started = _children(demo.pid)
        assert len(started) >= 3, text  # the master and two workers
        # And its last lines say what to do next
        assert f"flowbot status --master {url}" in text
        assert re.search(rf"flowbot logs unit/\d+ --master {re.escape(url)}", text)
        assert "flowbot create-master ./m" in text

        # When it is sent SIGTERM (alone: a service manager's stop, a kill)
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    # Then it stops, and so does every process it started
    assert demo.returncode == 0, text + rest
    assert "stopping the demo" in rest
    wait_for(lambda: not any(pid_alive(pid) for pid in started), 20, "the demo's processes to end")
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/api/builders", timeout=5)
    shutil.rmtree(re.search(r"^flowbot demo in (\S+)$", text, re.MULTILINE)[1], ignore_errors=True)


def _flowbot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowbot", *args], capture_output=True, text=True, timeout=timeout)


def test_a_master_runs_in_the_background_with_a_log_file_and_stops(tmp_path):
    # Given a master directory
    basedir = tmp_path / "m"
    basedir.mkdir()
    (basedir / "pipeline.py").write_text(SAMPLE_PIPELINE)
    http, zmq = free_port(), free_port()
    addresses = ["--http", f"127.0.0.1:{http}", "--zmq", f"tcp://127.0.0.1:{zmq}"]

    # When it is started as a daemon with a log file
    logfile = tmp_path / "logs" / "master.log"
    logfile.parent.mkdir()
    started = _flowbot("start", str(basedir), "--daemon", "--logfile", str(logfile), *addresses)

    # Then the command returns once the master serves, which runs on in the background, logging there
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"pid (\d+)", started.stdout)[1])
    assert f"logging to {logfile}; stop it with: flowbot stop {basedir}" in started.stdout
    try:
        assert (basedir / "master.pid").read_text().strip() == str(pid)
        assert json.load(urllib.request.urlopen(f"http://127.0.0.1:{http}/api/builders", timeout=10))["builders"]
        assert "master running" in logfile.read_text()
        assert os.getsid(pid) == pid  # a session of its own: the terminal closing does not stop it
        # A second one in the same directory is refused at once
        again = _flowbot("start", str(basedir), "--daemon", *addresses)
        assert again.returncode == 1 and f"a master is already running in {basedir} (pid {pid})" in again.stderr

        # And flowbot stop stops it
        stopped = _flowbot("stop", str(basedir))
        assert stopped.returncode == 0, stopped.stderr
        assert not pid_alive(pid)
        assert logfile.read_text().rstrip().endswith("stopped")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    # And one that cannot start says why, from its log, and returns 1
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        failed = _flowbot(
            "start", str(basedir), "--daemon", "--http", f"127.0.0.1:{port}", "--zmq", f"tcp://127.0.0.1:{zmq}"
        )
    finally:
        taken.close()
    assert failed.returncode == 1
    assert (
        "the master did not start:\n" in failed.stderr
        and f"cannot listen for HTTP on 127.0.0.1:{port}" in failed.stderr
    )
    assert (basedir / "master.log").exists()


def test_the_sample_pipeline_runs_on_a_host_without_a_python_command(tmp_path, worker_factory):
    # Given the sample that create-master writes, and workers whose PATH has python3 but no python (Debian's)
    assert _flowbot("create-master", str(tmp_path / "m")).returncode == 0
    assert not any(Path(d, "python").exists() for d in ("/usr/bin", "/bin"))
    master = MasterProcess(tmp_path / "m").wait_ready()
    try:
        worker_factory(master, "w1", "change-me", env={"PATH": "/usr/bin:/bin"})
        worker_factory(master, "w2", "other", env={"PATH": "/usr/bin:/bin"})
        # When its unit builder builds, Then its report step runs
        master.client.force("unit")
        (build,) = finished_builds(master.client, 1)
        assert build["result"] == "SUCCESS", step_log(master.client, build["id"], 1)
        assert "done" in step_log(master.client, build["id"], 1)
    finally:
        master.stop()
