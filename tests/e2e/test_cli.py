"""The ``flowbot`` command line as a user types it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from flowbot_worker.launch import command as worker_command

from ..support import MasterProcess, finished_builds, free_port, wait_for


def flowbot(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowbot", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_create_master_writes_a_sample_that_checks_and_runs(tmp_path, worker_factory):
    created = flowbot("create-master", str(tmp_path / "m"))
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "m" / "pipeline.py").exists()
    assert "OK: 2 workers, 2 schedulers, 2 builders" in flowbot("checkconfig", str(tmp_path / "m")).stdout
    again = flowbot("create-master", str(tmp_path / "m"))
    assert again.returncode == 1 and "not overwriting" in again.stderr

    # The sample runs as written
    master = MasterProcess(tmp_path / "m").wait_ready()
    try:
        worker_factory(master, "w1", "change-me")
        worker_factory(master, "w2", "other")
        sent = flowbot(
            "sendchange",
            "--master",
            master.url,
            "--branch",
            "main",
            "--revision",
            "1a2b3c",
            "--who",
            "alice",
            "--comments",
            "fix parser",
            "src/parser.py",
        )
        assert sent.returncode == 0, sent.stderr
        assert "change 1 accepted" in sent.stdout
        forced = flowbot("force", "--master", master.url, "unit")
        assert forced.returncode == 0 and "forced unit" in forced.stdout
        builds = finished_builds(master.client, 3)
        assert sorted(b["result"] for b in builds) == ["FAILURE", "SUCCESS", "SUCCESS"]
        change = master.client.request("GET", f"/api/builds/{builds[0]['id']}")
        assert change["revision"] == "1a2b3c"

        status = flowbot("status", "--master", master.url)
        assert status.returncode == 0, status.stderr
        for text in ("Builders", "unit", "lint", "FAILURE", "SUCCESS", "Workers", "w1", "connected", "ms"):
            assert text in status.stdout, text

        stopped = flowbot("stop", str(tmp_path / "m"))
        assert stopped.returncode == 0, stopped.stderr
        assert master.proc.wait(timeout=10) == 0
        assert "stopped" in master.log()
        assert not (tmp_path / "m" / "master.pid").exists()
    finally:
        master.stop()


BROKEN = {
    "syntax": ("from flowbot import Pipeline\n\npipeline = = Pipeline()\n", 3, "syntax error: invalid syntax"),
    "unknown builder": (
        """\
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                AnyBranchScheduler("s", builders=["unti"]),
            ],
            builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
        )
        """,
        5,
        "scheduler 's' names builder 'unti', which no builder defines",
    ),
    "undeclared worker": (
        """\
        from flowbot import Pipeline, Worker, Builder, Shell
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            builders=[
                Builder("unit", workers=["w7"], steps=[Shell("true")]),
            ],
        )
        """,
        5,
        "builder 'unit' names worker 'w7', which no worker declares",
    ),
    "duplicate": (
        """\
        from flowbot import Pipeline, Worker, Builder, Shell
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            builders=[
                Builder("unit", workers=["w1"], steps=[Shell("true")]),
                Builder("unit", workers=["w1"], steps=[Shell("false")]),
            ],
        )
        """,
        6,
        "duplicate builder name 'unit'",
    ),
    "exception": (
        "from flowbot import Pipeline\n\nraise RuntimeError('no such thing')\n",
        3,
        "RuntimeError: no such thing",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_pipeline_is_refused_with_file_line_and_problem(tmp_path, case):
    source, line, problem = BROKEN[case]
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(source))
    expected = f"{tmp_path / 'pipeline.py'}:{line}: {problem}"
    for command in ("checkconfig", "start"):
        result = flowbot(command, str(tmp_path), timeout=30)
        assert result.returncode == 1
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_commands_say_clearly_when_no_master_answers(tmp_path):
    result = flowbot("status", "--master", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "no master answers at http://127.0.0.1:9" in result.stderr
    result = flowbot("stop", str(tmp_path))
    assert result.returncode == 1 and "no master is running" in result.stderr


def test_a_stale_pid_file_never_gets_another_process_signalled(tmp_path):
    # Given the pid file of a killed master, whose number another program has since been given
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "master.pid").write_text(f"{bystander.pid}\n")
        # When the master is to be stopped, Then nothing is signalled: no master runs there
        result = flowbot("stop", str(tmp_path))
        assert result.returncode == 1 and "no master is running" in result.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_second_master_on_the_same_port_says_why_it_cannot_start(master_factory, tmp_path):
    master = master_factory()
    other = tmp_path / "other"
    other.mkdir()
    (other / "pipeline.py").write_text((master.basedir / "pipeline.py").read_text())
    # (on a worker port of its own, so that only the HTTP port is taken, whatever holds the default one)
    worker_port = f"tcp://127.0.0.1:{free_port()}"
    result = flowbot("start", str(other), "--http", f"127.0.0.1:{master.http_port}", "--zmq", worker_port, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen for HTTP on 127.0.0.1:{master.http_port}" in result.stderr


def test_demo_once_runs_builds_that_pass_and_fail():
    result = flowbot("demo", "--once", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Three commits to a real repository, polled, checked out and tested by two builders
    commits = re.findall(r"^  ([0-9a-f]{12})  (\w+ \w+): (.+)$", out, re.MULTILINE)
    assert [who for _, who, _ in commits] == ["Alice Liddell", "Bob Builder", "Carol Reviewer"]
    assert "6 builds in" in out
    rows = re.findall(r"^(unit|lint)\s+\d+\s+main\s+([0-9a-f]{12})\s+(\w+)", out, re.MULTILINE)
    results = {(builder, revision): result for builder, revision, result in rows}
    assert len(results) == 6
    (good, _, _), (bad, _, _), (fixed, _, _) = commits
    assert results == {
        ("unit", good): "SUCCESS",
        ("lint", good): "SUCCESS",
        ("unit", bad): "FAILURE",
        ("lint", bad): "SUCCESS",
        ("unit", fixed): "SUCCESS",
        ("lint", fixed): "SUCCESS",
    }
    # The failing test, as unittest reported it on the worker
    assert "AssertionError: 3 != 5" in out and "FAILED (failures=1)" in out
    assert "The web page is at http://127.0.0.1:" in out
    # And, run once, it leaves no throwaway directory behind
    assert not Path(re.search(r"^flowbot demo in (\S+)$", out, re.MULTILINE)[1]).exists()


def test_demo_runs_until_ctrl_c_and_then_stops_every_process_it_started():
    # Given the demo running until Ctrl-C
    demo = subprocess.Popen(
        [sys.executable, "-m", "flowbot", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = []
    try:
        for line in demo.stdout:
            out.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(out)
        assert "6 builds in" in text, text
        url = re.search(r"The web page is at (http://\S+)/ ", text)[1]
        root = Path(re.search(r"^flowbot demo in (\S+)$", text, re.MULTILINE)[1])
        # When Ctrl-C reaches the terminal's process group
        os.killpg(demo.pid, signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    # Then it says so, exits cleanly, and its master no longer answers; its files stay for a look
    assert demo.returncode == 0, text + rest
    assert "stopping the demo; its files stay in" in rest
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/api/builders", timeout=5)
    assert (root / "master.log").exists()
    shutil.rmtree(root)


def test_worker_command_refuses_to_run_without_a_secret(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flowbot_worker", "--name", "w1", "--basedir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "no secret" in result.stderr


def test_a_worker_reads_its_secret_from_a_file_and_a_master_stops_on_ctrl_c(tmp_path, master_factory):
    # Given a master, and a worker started with --secret-file (the secret is not on its command line)
    master = master_factory()
    (tmp_path / "w1.secret").write_text("change-me\n")
    worker = subprocess.Popen(
        worker_command(master.endpoint, "w1", tmp_path / "w1", "--secret-file", str(tmp_path / "w1.secret")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "FLOWBOT_WORKER_SECRET"},
    )
    try:
        # Then it is let in and builds
        wait_for(lambda: master.client.workers()[0]["connected"], 20, "the worker to connect")
        master.client.force("unit", branch="main")
        assert finished_builds(master.client, 1)[0]["result"] == "SUCCESS"

        # And Ctrl-C stops the master cleanly, as SIGTERM does
        master.proc.send_signal(signal.SIGINT)
        assert master.proc.wait(timeout=15) == 0
        assert "stopped" in master.log() and "Traceback" not in master.log()
        assert not (master.basedir / "master.pid").exists()
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def _start_until_connected(master: MasterProcess, basedir: Path, name: str = "w1") -> None:
    """``flowbot-worker start BASEDIR`` until worker ``name`` is connected to ``master``; then stop it."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "flowbot_worker", "start", str(basedir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: any(w["name"] == name and w["connected"] for w in master.client.workers()),
            20,
            f"worker {name} to connect",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def test_worker_directories_keep_their_settings(tmp_path, master_factory):
    master = master_factory()
    (tmp_path / "secret").write_text("change-me\n")
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowbot_worker",
            "create-worker",
            str(tmp_path / "w1"),
            "--master",
            master.endpoint,
            "--name",
            "w1",
            "--secret-file",
            str(tmp_path / "secret"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "w1" / "worker.json").stat().st_mode & 0o077 == 0
    _start_until_connected(master, tmp_path / "w1")


def _worker_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowbot_worker", *args], capture_output=True, text=True, timeout=30)


def test_an_encrypted_link_is_set_up_from_the_command_line(tmp_path, master_factory):
    # Given key pairs made with create-key, for the master and for a worker
    made = flowbot("create-key", str(tmp_path / "master"))
    assert made.returncode == 0, made.stderr
    master_key = re.search(r"master public key: (\S{40})", made.stdout)[1]
    made = _worker_command("create-key", str(tmp_path / "keys"), "--name", "w1")
    assert made.returncode == 0, made.stderr
    worker_key = re.search(r"public key: (\S{40})", made.stdout)[1]
    # The secret halves are private from the start, and never overwritten
    for secret in (tmp_path / "master" / "master.key_secret", tmp_path / "keys" / "w1.key_secret"):
        assert secret.stat().st_mode & 0o077 == 0
    assert master_key in (tmp_path / "master" / "master.key").read_text()
    again = flowbot("create-key", str(tmp_path / "master"))
    assert again.returncode == 1 and "exists already; not overwriting it" in again.stderr
    assert master_key in (tmp_path / "master" / "master.key").read_text()

    # When the pipeline uses them, as create-key said to
    master = master_factory(
        f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s", public_key={worker_key!r})],
            schedulers=[ForceScheduler("force", builders=["b"])],
            builders=[Builder("b", workers=["w1"], steps=[Shell("true")])],
            curve_key="master.key_secret",
        )
        """
    )
    checked = flowbot("checkconfig", str(master.basedir))
    assert "OK: 1 worker, 1 scheduler, 1 builder; worker link encrypted (CURVE)" in checked.stdout

    # Then a worker directory made with the keys keeps them, and its worker connects
    created = _worker_command(
        "create-worker",
        str(tmp_path / "w1"),
        "--master",
        master.endpoint,
        "--name",
        "w1",
        "--secret",
        "s",
        "--master-key",
        str(tmp_path / "master" / "master.key"),
        "--key-file",
        str(tmp_path / "keys" / "w1.key_secret"),
    )
    assert created.returncode == 0, created.stderr
    _start_until_connected(master, tmp_path / "w1")


def test_the_worker_command_refuses_half_or_bad_keys(tmp_path):
    # Given a worker key file, and a public key file that is not a secret one
    assert _worker_command("create-key", str(tmp_path), "--name", "w1").returncode == 0
    base = ["--name", "w1", "--secret", "s", "--basedir", str(tmp_path / "w1")]

    for options, said in [
        (["--key-file", str(tmp_path / "w1.key_secret")], "give both --master-key and --key-file"),
        (["--master-key", "tooshort", "--key-file", str(tmp_path / "w1.key_secret")], "neither a CURVE key"),
        (["--master-key", str(tmp_path / "w1.key"), "--key-file", str(tmp_path / "w1.key")], "no secret-key in it"),
    ]:
        # When the worker is started with them
        result = _worker_command(*base, *options)

        # Then it stops at once and says what is wrong
        assert result.returncode == 1
        assert said in result.stderr
