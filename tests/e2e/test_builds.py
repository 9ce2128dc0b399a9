"""Builds end to end: a real master, real workers over ZeroMQ, real shell commands, SQLite."""

from __future__ import annotations

import sys
import time

import pytest

import flowbot
from flowbot.defaults import LOG_LINE_CUT
from flowbot.errors import InvalidRequest, NotFound

from ..support import finished_builds, pid_alive, running_build, step_log, wait_for


@pytest.fixture
def sample(master_factory, worker_factory):
    """The README's first pipeline, exactly as written there, with both workers connected."""
    master = master_factory()
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    return master


def test_a_change_builds_every_builder_and_results_follow_exit_codes(sample):
    # When a change arrives
    answer = sample.client.sendchange(
        branch="main", revision="1a2b3c", author="alice", comments="fix parser", files=["src/parser.py"]
    )
    assert len(answer["buildrequest_ids"]) == 2

    # Then unit passes and lint fails (exit 3), on the worker lint allows
    builds = {b["builder"]: b for b in finished_builds(sample.client, 2)}
    assert builds["unit"]["result"] == "SUCCESS"
    assert builds["lint"]["result"] == "FAILURE"
    assert builds["lint"]["worker"] == "w2"
    assert builds["unit"]["branch"] == "main" and builds["unit"]["revision"] == "1a2b3c"
    assert builds["unit"]["finished_at"] >= builds["unit"]["started_at"] >= builds["unit"]["submitted_at"]

    unit = sample.client.request("GET", f"/api/builds/{builds['unit']['id']}")
    assert [(s["name"], s["result"]) for s in unit["steps"]] == [("test", "SUCCESS"), ("report", "SUCCESS")]
    assert "testing 1a2b3c" in step_log(sample.client, unit["id"], 0)
    assert "done" in step_log(sample.client, unit["id"], 1)
    assert "exit code 3" in step_log(sample.client, builds["lint"]["id"], 0)
    assert sample.client.buildrequests(pending=True) == []


def test_steps_see_the_build_in_their_environment_and_halt_on_failure(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["env", "halting", "flunking"])],
            builders=[
                Builder("env", workers=["w1"], steps=[
                    Shell("echo B=$FLOWBOT_BRANCH R=$FLOWBOT_REVISION N=$FLOWBOT_BUILDER No=$FLOWBOT_BUILD_NUMBER",
                          name="show"),
                ]),
                Builder("halting", workers=["w1"], steps=[
                    Shell("exit 1", name="fails", halt_on_failure=True),
                    Shell("echo never", name="skipped"),
                    Shell("echo cleanup", name="cleanup", always_run=True),
                ]),
                Builder("flunking", workers=["w1"], steps=[
                    Shell("exit 1", name="fails"),
                    Shell("echo still runs", name="next"),
                    Shell("exit 2", name="tolerated", flunk_on_failure=False, warn_on_failure=True),
                ]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    for builder in ("env", "halting", "flunking"):
        master.client.force(builder, branch="feature/x", revision="cafe42")
    builds = {b["builder"]: b for b in finished_builds(master.client, 3)}

    assert "B=feature/x R=cafe42 N=env No=1" in step_log(master.client, builds["env"]["id"], 0)

    halting = master.client.request("GET", f"/api/builds/{builds['halting']['id']}")
    assert halting["result"] == "FAILURE"
    assert [(s["name"], s["result"]) for s in halting["steps"]] == [("fails", "FAILURE"), ("cleanup", "SUCCESS")]

    flunking = master.client.request("GET", f"/api/builds/{builds['flunking']['id']}")
    assert flunking["result"] == "FAILURE"
    assert [s["result"] for s in flunking["steps"]] == ["FAILURE", "SUCCESS", "FAILURE"]


def test_output_streams_both_ways_and_survives_bytes_that_are_not_utf8(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["noisy"])],
            builders=[Builder("noisy", workers=["w1"], steps=[Shell(
                "echo out; echo err >&2; printf 'caf\\\\351\\\\n'; seq 1 20000", name="noise")])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("noisy")
    (build,) = finished_builds(master.client, 1)
    assert build["result"] == "SUCCESS"
    log = step_log(master.client, build["id"], 0).splitlines()
    assert "out" in log and "err" in log
    assert "caf\ufffd" in log
    numbers = [line for line in log if line.isdigit()]
    assert numbers == [str(i) for i in range(1, 20001)]


def test_force_through_the_api(sample):
    ids = sample.client.force("unit", reason="checking", branch="release", revision="abc123")
    assert len(ids) == 1
    (build,) = finished_builds(sample.client, 1)
    assert (build["builder"], build["branch"], build["revision"], build["result"]) == (
        "unit",
        "release",
        "abc123",
        "SUCCESS",
    )
    with pytest.raises(NotFound, match="no builder named 'nope'"):
        sample.client.force("nope")
    with pytest.raises(InvalidRequest, match="unknown field"):
        sample.client.request("POST", "/api/builders/unit/force", {"brnach": "typo"})


def test_api_errors_are_json_with_a_message_never_a_traceback(sample):
    client = sample.client
    with pytest.raises(NotFound, match="no build 999"):
        client.request("GET", "/api/builds/999")
    with pytest.raises(NotFound, match="no such endpoint"):
        client.request("GET", "/api/nothing-here")
    with pytest.raises(NotFound, match="no builder named 'ghost'"):
        client.builds(builder="ghost")
    with pytest.raises(NotFound):
        client.request("GET", "/api/builds/1/steps/0/log")
    with pytest.raises(InvalidRequest, match="files must be a list"):
        client.sendchange(files="src/a.py")
    with pytest.raises(InvalidRequest, match="unknown result"):
        client.builds(result="GREEN")
    with pytest.raises(InvalidRequest, match="limit"):
        client.builds(limit=0)

    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{sample.url}/api/changes", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    body = raised.value.read().decode()
    assert raised.value.code == 400
    assert "not valid JSON" in body and "Traceback" not in body


@pytest.mark.parametrize("step", ["Shell", "MasterShell"])
def test_stopping_a_build_kills_its_processes_and_cancels_it(master_factory, worker_factory, tmp_path, step):
    # Given a build whose command, on the worker or on the master, started a process of its own
    pidfile = tmp_path / "sleeper.pid"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, ForceScheduler, {step}
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["slow"])],
            builders=[Builder("slow", workers=["w1"], steps=[
                {step}("sleep 300 & echo $! > {pidfile}; wait", name="sleep"),
                {step}("echo after", name="after"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("slow")
    build = running_build(master.client, "slow")
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the step's pid"))

    # When someone stops it
    started = time.monotonic()
    master.client.stop(build["id"], "wrong branch")

    # Then it ends as CANCELLED at once, the later step does not run, and the processes are gone
    (stopped,) = finished_builds(master.client, 1, timeout=15)
    assert time.monotonic() - started < 10
    assert stopped["result"] == "CANCELLED"
    steps = master.client.request("GET", f"/api/builds/{build['id']}")["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [("sleep", "CANCELLED")]
    assert "build stopped: wrong branch" in step_log(master.client, build["id"], 0)
    wait_for(lambda: not pid_alive(pid), 5, "the started process to be gone")


def test_a_stopped_build_runs_its_cleanup_steps_and_a_second_stop_interrupts_one(
    master_factory, worker_factory, tmp_path
):
    # Buildbot: alwaysRun steps run after a stop; the build is still CANCELLED
    skipped, cleaned, released = (tmp_path / name for name in ("skipped", "cleaned", "released"))
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, ForceScheduler, Shell
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["deploy"])],
            builders=[Builder("deploy", workers=["w1"], steps=[
                Shell("sleep 300", name="long"),
                Shell("touch {skipped}", name="skipped"),
                Shell("touch {cleaned}; sleep 300", name="clean up", always_run=True),
                Shell("touch {released}", name="release", always_run=True),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("deploy")
    build = running_build(master.client, "deploy")
    wait_for(lambda: build_step(master.client, build["id"]) == 0, 10, "the long step")

    # When someone stops it, its cleanup step runs its command
    master.client.stop(build["id"], "wrong release")
    wait_for(lambda: cleaned.exists(), 10, "the cleanup step's command")

    # And when they stop it again, the cleanup step is interrupted, and the next cleanup step runs
    started = time.monotonic()
    master.client.stop(build["id"], "do not wait")
    (stopped,) = finished_builds(master.client, 1, timeout=15)
    assert time.monotonic() - started < 10
    assert stopped["result"] == "CANCELLED"
    steps = master.client.request("GET", f"/api/builds/{build['id']}")["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [
        ("long", "CANCELLED"),
        ("clean up", "CANCELLED"),
        ("release", "SUCCESS"),
    ]
    assert "build stopped: do not wait" in step_log(master.client, build["id"], 2)
    assert released.exists() and not skipped.exists()


def build_step(client, build_id: int) -> int | None:
    """The step a build is running."""
    return client.request("GET", f"/api/builds/{build_id}")["current_step"]


def test_a_command_on_the_master_may_print_lines_of_any_length(master_factory, worker_factory):
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, ForceScheduler, MasterShell
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["report"])],
            builders=[Builder("report", workers=["w1"], steps=[
                MasterShell([{sys.executable!r}, "-c", "print('x' * 200_000); print('done')"], name="report"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("report")
    (build,) = finished_builds(master.client, 1)
    assert build["result"] == "SUCCESS"
    log = step_log(master.client, build["id"], 0)
    pieces = [line.removesuffix(LOG_LINE_CUT) for line in log.splitlines() if line.startswith("x")]
    assert sum(len(piece) for piece in pieces) == 200_000 and {"".join(set(piece)) for piece in pieces} == {"x"}
    assert log.count(LOG_LINE_CUT) == len(pieces) - 1  # every piece but the last says the line goes on
    assert "\ndone\n" in log


def test_a_pending_request_can_be_cancelled(master_factory):
    # Given a builder whose only worker never connects
    master = master_factory()
    (request_id,) = master.client.force("lint")
    pending = master.client.buildrequests(pending=True)
    assert [r["id"] for r in pending] == [request_id]
    assert pending[0]["builder"] == "lint"

    master.client.request("POST", f"/api/buildrequests/{request_id}/cancel")

    assert master.client.buildrequests(pending=True) == []
    (done,) = master.client.buildrequests(pending=False)
    assert done["result"] == "CANCELLED"
    with pytest.raises(NotFound):
        master.client.request("POST", f"/api/buildrequests/{request_id}/cancel")


def test_builders_and_workers_report_their_state(sample):
    sample.client.sendchange(branch="main", revision="r1")
    finished_builds(sample.client, 2)
    builders = {b["name"]: b for b in sample.client.builders()}
    assert builders["unit"]["last_build"]["result"] == "SUCCESS"
    assert builders["lint"]["last_build"]["result"] == "FAILURE"
    assert builders["unit"]["workers"] == ["w1", "w2"]
    assert builders["unit"]["steps"] == ["test", "report"]
    workers = {w["name"]: w for w in sample.client.workers()}
    assert workers["w1"]["connected"] and workers["w2"]["connected"]
    assert workers["w1"]["info"]["os"] == "posix"
    assert workers["w1"]["last_seen"] > time.time() - 30


def test_a_master_on_postgresql_runs_the_same_builds(master_factory, worker_factory, postgres_db):
    master = master_factory(db=postgres_db)
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    master.client.sendchange(branch="main", revision="pg1", files=["a.py"], properties={"k": "v"})
    builds = {b["builder"]: b for b in finished_builds(master.client, 2)}
    assert (builds["unit"]["result"], builds["lint"]["result"]) == ("SUCCESS", "FAILURE")
    assert "testing pg1" in step_log(master.client, builds["unit"]["id"], 0)
    assert not (master.basedir / "state.sqlite").exists()


def test_long_branches_authors_and_test_names_are_taken_on_every_database(master_factory, worker_factory, db_url):
    # Given a master on SQLite or PostgreSQL whose builds report a test with a 600-character name
    long_test = "test_" + "p" * 595
    master = master_factory(
        f"""
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler
        REPORT = '<testsuite name="unit"><testcase classname="tests.test_params" name="{long_test}"/></testsuite>'
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[AnyBranchScheduler("on-change", builders=["unit"])],
            builders=[Builder("unit", workers=["w1"], steps=[
                Shell(f"echo '{{REPORT}}' > report.xml; echo on $FLOWBOT_BRANCH", name="test", junit="report.xml"),
            ])],
        )
        """,
        db=db_url,
    )
    worker_factory(master, "w1", "s")

    # When a change arrives through the API with a 300-character branch and a long author
    branch, author = "feature/" + "b" * 292, "Somebody " + "with a long name " * 20 + "<s@example.org>"
    master.client.sendchange(branch=branch, revision="r1", author=author, repository="https://example.org/" + "r" * 600)

    # Then it is stored, built, and its test result kept, whole
    (build,) = finished_builds(master.client, 1)
    assert (build["branch"], build["result"]) == (branch, "SUCCESS")
    assert f"on {branch}" in step_log(master.client, build["id"], 0)
    (change,) = master.client.request("GET", "/api/changes")["changes"]
    assert change["author"] == author
    with flowbot.History(db_url) as history:
        assert list(history.test_results()["name"]) == [long_test]

    # And a branch too long for the index is refused with a reason, not lost with a 503
    with pytest.raises(InvalidRequest, match="branch is 2000 bytes long"):
        master.client.sendchange(branch="b" * 2000, revision="r2")
