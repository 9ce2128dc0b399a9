"""The master's processes as an operator runs them: a taken port, signals, running in the background."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from ..support import SAMPLE_PIPELINE, free_port


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
