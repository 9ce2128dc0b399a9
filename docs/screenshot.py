"""Take the README's pictures of the web page, in Debian's headless Chromium: docs/overview.png
(the builders with a few builds), docs/build.png (a failed build's coloured log), docs/tests.png
(its Tests tab) and docs/grid.png (revisions by builder).

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

from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command
from playwright.sync_api import sync_playwright

from flowbot.client import Client

# A test run that prints in colour, as pytest does, writes a JUnit report, and fails on revision 5.
UNIT = r"""
printf '\033[1m============ test session starts ============\033[0m\n'
for t in parser lexer render cache; do printf 'tests/test_%s.py \033[32m.........\033[0m\n' $t; done
if [ "${FLOWBOT_REVISION#5}" != "$FLOWBOT_REVISION" ]; then
  printf 'tests/test_api.py \033[32m....\033[31mF\033[0m\n'
  printf '\033[31mE   AssertionError: expected 200, got 500\033[0m\n'
  printf '\033[31m======= 1 failed, 40 passed in 0.42s =======\033[0m\n'
  failure='<failure message="AssertionError: expected 200, got 500">tests/test_api.py:31: AssertionError</failure>'
else
  printf 'tests/test_api.py \033[32m.....\033[0m\n'
  printf '\033[32m=========== 41 passed in 0.40s ===========\033[0m\n'
fi
{ echo '<testsuite name="pytest">'
  for i in $(seq 1 40); do echo "<testcase classname=\"tests.test_parser\" name=\"test_case_$i\" time=\"0.01\"/>"; done
  echo "<testcase classname=\"tests.test_api\" name=\"test_status\" time=\"0.02\">$failure</testcase></testsuite>"
} > report.xml
[ -z "$failure" ]
"""

PIPELINE = f"""\
from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
UNIT = {UNIT!r}
pipeline = Pipeline(
    workers=[Worker("w1", secret="one"), Worker("w2", secret="two")],
    schedulers=[AnyBranchScheduler("on-change", builders=["unit", "lint", "docs", "integration"]),
                ForceScheduler("force", builders=["unit", "lint", "docs", "integration"])],
    builders=[
        Builder("unit", workers=["w1", "w2"], description="pytest, fast", tags=["tests"], steps=[
            Shell('eval "$UNIT_SCRIPT"', env={{"UNIT_SCRIPT": UNIT}}, name="pytest", junit="report.xml")]),
        Builder("lint", workers=["w1", "w2"], description="ruff", tags=["style"], steps=[
            Shell('case "$FLOWBOT_REVISION" in *3*) exit 1;; esac', name="ruff")]),
        Builder("docs", workers=["w1", "w2"], tags=["style"], steps=[Shell("echo building docs", name="sphinx")]),
        Builder("integration", workers=["w2"], description="the slow suite", tags=["tests"], steps=[
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
                        worker_command(f"tcp://127.0.0.1:{zmq}", name, base / name),
                        env={**os.environ, SECRET_VARIABLE: secret},
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
                page = browser.new_page(viewport={"width": 1000, "height": 440}, device_scale_factor=1)
                page.goto(url + "/")
                page.wait_for_selector(".cell")
                time.sleep(1)
                page.screenshot(path=str(out))
                print(f"wrote {out}")
                failed = next(b for b in client.builds(builder="unit", limit=20) if b["result"] == "FAILURE")
                page.set_viewport_size({"width": 1000, "height": 640})
                shots = {
                    "build.png": f"#/builds/{failed['id']}",
                    "tests.png": f"#/builds/{failed['id']}/tests",
                    "grid.png": "#/grid",
                }
                for name, where in shots.items():
                    page.goto(f"{url}/{where}")
                    page.wait_for_selector(
                        {"build.png": "pre.log .line", "tests.png": "li.test", "grid.png": ".grid-cell"}[name]
                    )
                    time.sleep(1)
                    page.screenshot(path=str(out.parent / name))
                    print(f"wrote {out.parent / name}")
                browser.close()
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)


if __name__ == "__main__":
    main()
