"""The master's processes as an operator runs them: a taken port, signals, running in the background."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ..support import SAMPLE_PIPELINE, free_port, wait_for


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
        [sys.executable, "-m", "flowbot_worker", "--master", master, "--name", name, "--basedir", str(basedir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FLOWBOT_WORKER_SECRET": secret},
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
    # Told to keep trying, it does
    stubborn = _worker(master.endpoint, name, secret, tmp_path / "b", "--keep-trying")
    try:
        wait_for(lambda: _refusals(master) >= 2, 30, "a second refusal")
        assert stubborn.poll() is None
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
