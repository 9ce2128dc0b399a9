"""Take docs/overview.png: the web page's overview with a few builds, in Debian's headless Chromium.

Run from the repository: ``.venv/bin/python docs/screenshot.py``. It starts a master and two
workers on a throwaway directory, sends a few changes, and photographs the page while one build
is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from flowbot.client import Client

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="one"), Worker("w2", secret="two")],
    schedulers=[AnyBranchScheduler("on-change", builders=["unit", "lint", "docs", "integration"]),
                ForceScheduler("force", builders=["unit", "lint", "docs", "integration"])],
    builders=[
        Builder("unit", workers=["w1", "w2"], description="pytest, fast", steps=[
            Shell("echo testing $FLOWBOT_REVISION", name="test")]),
        Builder("lint", workers=["w1", "w2"], description="ruff", steps=[
            Shell('case "$FLOWBOT_REVISION" in *3*) exit 1;; esac', name="ruff")]),
        Builder("docs", workers=["w1", "w2"], steps=[Shell("echo building docs", name="sphinx")]),
        Builder("integration", workers=["w2"], description="the slow suite", steps=[
            Shell('case "$FLOWBOT_REVISION" in *7*) sleep 120;; *2*) exit 2;; esac; echo ok', name="suite")]),
    ],
)
"""
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    out = Path(__file__).parent / "overview.png"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "m").mkdir()
        (base / "m" / "pipeline.py").write_text(PIPELINE)
        http, zmq = free_port(), free_port()
        url = f"http://127.0.0.1:{http}"
        python = [sys.executable, "-m"]
        procs = [
            subprocess.Popen(
                [
                    *python,
                    "flowbot",
                    "start",
                    str(base / "m"),
                    "--http",
                    f"127.0.0.1:{http}",
                    "--zmq",
                    f"tcp://127.0.0.1:{zmq}",
                ],
                stderr=subprocess.DEVNULL,
            )
        ]
        try:
            client = Client(url)
            for _ in range(100):
                try:
                    client.builders()
                    break
                except Exception:
                    time.sleep(0.1)
            for name, secret in (("w1", "one"), ("w2", "two")):
                procs.append(
                    subprocess.Popen(
                        [
                            *python,
                            "flowbot_worker",
                            "--master",
                            f"tcp://127.0.0.1:{zmq}",
                            "--name",
                            name,
                            "--basedir",
                            str(base / name),
                        ],
                        env={**os.environ, "FLOWBOT_WORKER_SECRET": secret},
                        stderr=subprocess.DEVNULL,
                    )
                )
            while sum(w["connected"] for w in client.workers()) < 2:
                time.sleep(0.1)
            authors = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
            for n in range(1, 9):
                client.sendchange(
                    branch="main",
                    revision=f"{n}eadbe{n}f",
                    author=authors[n - 1],
                    comments=f"change {n}",
                    files=["src/app.py"],
                )
                time.sleep(0.4)
            time.sleep(3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 330}, device_scale_factor=1)
                page.goto(url + "/")
                page.wait_for_selector(".cell")
                time.sleep(1)
                page.screenshot(path=str(out))
                browser.close()
            print(f"wrote {out}")
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)


if __name__ == "__main__":
    main()
