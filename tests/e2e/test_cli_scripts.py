"""The command line as people script it, against a real master and worker: ids, waiting, logs, JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from ..support import finished_builds, running_build, wait_for

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit", "bad", "slow", "warn"])],
    builders=[
        Builder("unit", collapse_requests=False, workers=["w1"], steps=[
            Shell("echo compiling", name="compile"),
            Shell("seq 1 3000", name="count"),
        ]),
        Builder("bad", workers=["w1"], steps=[Shell("echo boom >&2; exit 3", name="test")]),
        Builder("warn", workers=["w1"], steps=[Shell("exit 1", name="style", warn_on_failure=True,
                                                      flunk_on_failure=False)]),
        Builder("slow", collapse_requests=False, workers=["w1"], steps=[
            Shell("echo first; sleep 3; echo second", name="wait"),
        ]),
    ],
)
"""


def flowbot(*args: str, master: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FLOWBOT_MASTER"}
    if master is not None:
        env["FLOWBOT_MASTER"] = master
    return subprocess.run(
        [sys.executable, "-m", "flowbot", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    return master


def test_force_wait_exits_with_the_build_result_and_status_shows_ids(master):
    # The address without a scheme, from the environment
    address = f"127.0.0.1:{master.http_port}"
    passed = flowbot("force", "--wait", "unit", master=address)
    assert passed.returncode == 0, passed.stderr
    assert "unit/1 (build 1): SUCCESS" in passed.stdout
    failed = flowbot("force", "--wait", "bad", master=address)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "bad/1 (build 2): FAILURE" in failed.stdout
    warned = flowbot("force", "--wait", "warn", "--json", master=address)
    assert warned.returncode == 0, warned.stderr
    assert json.loads(warned.stdout.splitlines()[-1])["result"] == "WARNINGS"

    status = flowbot("status", master=address)
    assert status.returncode == 0, status.stderr
    assert "unit/1 (id 1)" in status.stdout
    assert status.stdout.splitlines()[0] == "Builders"
    header = next(line for line in status.stdout.splitlines() if line.startswith("ID"))
    assert header.split()[:3] == ["ID", "BUILDER", "#"]
    as_json = json.loads(flowbot("status", "--json", "--master", master.url).stdout)
    assert {b["name"] for b in as_json["builders"]} == {"unit", "bad", "warn", "slow"}
    assert sorted(b["id"] for b in as_json["builds"]) == [1, 2, 3]


def test_logs_by_builder_and_number_whole_or_one_step(master):
    master.client.force("unit")
    finished_builds(master.client, 1)
    whole = flowbot("logs", "unit/1", "--master", master.url)
    assert whole.returncode == 0, whole.stderr
    out = whole.stdout.splitlines()
    assert out[0] == "── step 1: compile ──"
    assert "compiling" in out
    assert "── step 2: count ──" in out
    numbers = [line for line in out if line.isdigit()]
    assert numbers == [str(n) for n in range(1, 3001)]
    # One step, by its number as the page shows it or by its name: the log alone
    second = flowbot("logs", "1", "2", "--master", master.url).stdout.splitlines()
    assert second[0] == "shell: seq 1 3000 in unit/build"  # the command, as its header says
    assert second[1:3001] == [str(n) for n in range(1, 3001)]
    assert second == flowbot("logs", "unit/1", "count", "--master", master.url).stdout.splitlines()
    lines = [
        json.loads(line)
        for line in flowbot("logs", "unit/1", "count", "--json", "--master", master.url).stdout.splitlines()
    ]
    assert lines[1] == {"step": 2, "line": 2, "stream": "o", "text": "1"}
    assert len(lines) == len(second)
    # A build or step that does not exist says so
    missing = flowbot("logs", "unit/9", "--master", master.url)
    assert missing.returncode == 1 and "no build unit/9" in missing.stderr
    wrong = flowbot("logs", "unit/1", "7", "--master", master.url)
    assert wrong.returncode == 1 and "has no step '7' (its steps: 1 compile, 2 count)" in wrong.stderr
    bad = flowbot("logs", "unit-1", "--master", master.url)
    assert bad.returncode == 1 and "give its id (42) or BUILDER/NUMBER (unit/7)" in bad.stderr


def test_follow_prints_the_log_as_it_comes_and_exits_with_the_result(master):
    # Given a forced build followed from the command line
    follower = subprocess.Popen(
        [sys.executable, "-m", "flowbot", "force", "--follow", "slow", "--master", master.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for line in follower.stdout:
            seen.append(line.rstrip("\n"))
            if line.strip() == "first":
                # Then the first line shows while the build still runs
                assert running_build(master.client, "slow")["result"] is None
                break
        rest, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    seen += rest.splitlines()
    assert follower.returncode == 0, err
    assert seen[0] == "forced slow: build request(s) 1"
    assert seen[1] == "── step 1: wait ──"
    assert seen.index("first") < seen.index("second")
    assert seen.count("second") == 1
    assert seen[-1] == "slow/1 (build 1): SUCCESS"
    # And logs --follow on a finished build prints it whole and exits with its result
    again = flowbot("logs", "--follow", "slow/1", "--master", master.url)
    assert again.returncode == 0 and "second" in again.stdout


def test_stop_and_rebuild_take_builder_slash_number(master):
    master.client.force("slow")
    build = running_build(master.client, "slow")
    stopped = flowbot("stop-build", f"slow/{build['number']}", "--master", master.url)
    assert stopped.returncode == 0, stopped.stderr
    assert finished_builds(master.client, 1)[0]["result"] == "CANCELLED"
    rebuilt = flowbot("rebuild", "slow/1", "--master", master.url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilding build slow/1: build request(s) 2" in rebuilt.stdout
    wait_for(lambda: len(master.client.builds(builder="slow")) == 2, what="the rebuild")


def test_help_shows_defaults_and_counts_read_well(tmp_path):
    assert "(default: http://127.0.0.1:8010)" in flowbot("status", "--help").stdout
    assert "(default: 127.0.0.1:8010)" in flowbot("start", "--help").stdout
    (tmp_path / "pipeline.py").write_text(
        "from flowbot import Pipeline, Worker, Builder, Shell\n"
        'pipeline = Pipeline(workers=[Worker("w", secret="s")], builders=[Builder("b", workers=["w"], '
        'steps=[Shell("true")])])\n'
    )
    checked = flowbot("checkconfig", str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert "OK: 1 worker, 0 schedulers, 1 builder" in checked.stdout


WAITING = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit", "deploy"])],
    builders=[
        Builder("unit", workers=["w1"], steps=[Shell("true")]),
        Builder("deploy", workers=["w2"], steps=[Shell("true")]),
    ],
)
"""


def test_status_says_why_requests_wait_and_why_a_worker_is_paused(master_factory, worker_factory):
    # Given w1 connected but paused, with a reason, and w2 never started
    master = master_factory(WAITING)
    worker_factory(master, "w1", "s")
    paused = flowbot("worker", "pause", "w1", "--reason", "disk full", "--master", master.url)
    assert paused.returncode == 0, paused.stderr
    # When both builders are forced
    master.client.force("unit")
    master.client.force("deploy")
    # Then status says why each request waits, and why w1 is paused
    status = flowbot("status", "--master", master.url).stdout
    assert "Waiting requests (oldest first)" in status
    assert re.search(r"^1\s+unit\s+.+\s+w1 is paused \(disk full\)$", status, re.MULTILINE), status
    assert re.search(r"^2\s+deploy\s+.+\s+w2 is offline$", status, re.MULTILINE), status
    assert re.search(r"^w1\s+connected, paused \(disk full\)", status, re.MULTILINE), status
    waiting = json.loads(flowbot("status", "--json", "--master", master.url).stdout)["waiting"]
    assert [r["waiting"] for r in waiting] == ["w1 is paused (disk full)", "w2 is offline"]
    # And once w1 is unpaused, its request runs and waits no more
    flowbot("worker", "unpause", "w1", "--master", master.url)
    finished_builds(master.client, 1)
    assert [r["builder"] for r in master.client.buildrequests(pending=True)] == ["deploy"]
