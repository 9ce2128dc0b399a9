"""Exit codes, retries and build time limits end to end: a real master, real workers, real commands."""

from __future__ import annotations

import urllib.parse

from flowbot import History
from flowbot.errors import NotFound

from ..support import finished_builds, step_log, wait_for


def build_detail(client, build_id: int) -> dict:
    return client.request("GET", f"/api/builds/{build_id}")


def log_of(client, build_id: int, step: int, name: str) -> str:
    return client.request("GET", f"/api/builds/{build_id}/steps/{step}/log?name={urllib.parse.quote(name)}")


def test_exit_codes_decide_the_step_result(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Result
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["lint"])],
            builders=[Builder("lint", workers=["w1"], steps=[
                Shell("exit 1", name="style", decode_rc={0: Result.SUCCESS, 1: Result.WARNINGS}),
                Shell("exit 3", name="unknown code", decode_rc={0: Result.SUCCESS, 1: Result.WARNINGS},
                      flunk_on_failure=False),
                Shell("exit 0", name="zero is bad", decode_rc={0: Result.FAILURE, 1: Result.SUCCESS},
                      flunk_on_failure=False),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("lint")
    (build,) = finished_builds(master.client, 1, timeout=90)
    steps = build_detail(master.client, build["id"])["steps"]
    assert [s["result"] for s in steps] == ["WARNINGS", "FAILURE", "FAILURE"]
    assert build["result"] == "SUCCESS"  # warnings and failures that do not flunk it


def test_a_step_runs_again_on_an_exit_code_and_keeps_each_attempts_log(master_factory, worker_factory, tmp_path):
    # Given a step that fails with exit code 75 twice, then passes
    counter = tmp_path / "count"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Retry
        COUNT = "{counter}"
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["flaky", "hopeless"])],
            builders=[
                Builder("flaky", workers=["w1"], steps=[
                    Shell(f"n=$(cat {{COUNT}} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{COUNT}}; "
                          f"echo run $n; [ $n -ge 3 ] || exit 75", name="fetch",
                          retry=Retry(attempts=3, on=[75], delay=0.2)),
                ]),
                Builder("hopeless", workers=["w1"], steps=[
                    Shell("echo 'connection reset by peer'; exit 1", name="upload",
                          retry=Retry(attempts=2, on=[r"connection reset"])),
                    Shell("exit 2", name="other code", retry=Retry(attempts=5, on=[75])),
                ]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # When it runs
    master.client.force("flaky")
    (build,) = finished_builds(master.client, 1, timeout=90, builder="flaky")

    # Then it succeeds on its third attempt, and each attempt keeps its log
    (step,) = build_detail(master.client, build["id"])["steps"]
    assert build["result"] == "SUCCESS"
    assert step["result"] == "SUCCESS" and step["attempts"] == 3
    assert sorted(step["logs"]) == ["stdio", "stdio (attempt 1)", "stdio (attempt 2)"]
    assert "attempt 3 of 3" in step["summary"] and "exit code 75" in step["summary"]
    assert "run 3" in step_log(master.client, build["id"], 0)
    first = log_of(master.client, build["id"], 0, "stdio (attempt 1)")
    assert "run 1" in first and "attempt 1 of 3 ended FAILURE (exit code 75); trying again" in first
    assert "run 2" in log_of(master.client, build["id"], 0, "stdio (attempt 2)")

    # And a log pattern retries up to its attempts; an exit code it does not name is not retried
    master.client.force("hopeless")
    (build,) = finished_builds(master.client, 1, timeout=90, builder="hopeless")
    upload, other = build_detail(master.client, build["id"])["steps"]
    assert build["result"] == "FAILURE"
    assert (upload["result"], upload["attempts"]) == ("FAILURE", 2)
    assert "the output matched 'connection reset'" in upload["summary"]
    assert (other["result"], other["attempts"]) == ("FAILURE", 1)

    # And the history has the attempts
    with History(f"sqlite:///{master.basedir / 'state.sqlite'}") as history:
        assert history.steps(builder="flaky")["attempts"].tolist() == [3]


def test_a_builder_retry_runs_the_build_again_as_a_new_attempt(master_factory, worker_factory, tmp_path):
    counter = tmp_path / "count"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Retry
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["deploy"])],
            builders=[Builder("deploy", workers=["w1"], retry=Retry(attempts=3, on=[9]), steps=[
                Shell("n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
                      "[ $n -ge 2 ] || exit 9", name="deploy"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("deploy")
    first, second = finished_builds(master.client, 2, timeout=90, builder="deploy")
    assert (first["result"], first["attempt"]) == ("RETRY", 1)
    assert "attempt 1 of 3 failed (exit code 9); it runs again" in first["summary"]
    assert (second["result"], second["attempt"]) == ("SUCCESS", 2)
    assert first["request_id"] == second["request_id"]
    with History(f"sqlite:///{master.basedir / 'state.sqlite'}") as history:
        assert history.builds(builder="deploy")["attempt"].tolist() == [1, 2]


def junit(**outcomes: str) -> str:
    cases = "".join(
        f'<testcase classname="suite" name="{name}">'
        + ("<failure message='boom'/>" if o == "failed" else "")
        + "</testcase>"
        for name, o in outcomes.items()
    )
    return f'<testsuite name="unit">{cases}</testsuite>'


def test_a_flaky_test_step_runs_again_only_when_every_failing_test_is_flaky(master_factory, worker_factory, tmp_path):
    # Given reports the step hands out one per run, in order
    queue = tmp_path / "reports"
    queue.mkdir()
    reports = [
        junit(test_net="failed", test_math="passed"),  # build 1: nothing is known flaky yet
        junit(test_net="passed", test_math="passed"),  # build 2, same revision: test_net is flaky now
        junit(test_net="failed", test_math="passed"),  # build 3, first attempt: only a flaky test failed
        junit(test_net="passed", test_math="passed"),  # build 3, second attempt
        junit(test_net="failed", test_math="failed"),  # build 4: test_math is not flaky
    ]
    for number, report in enumerate(reports):
        (queue / f"{number}.xml").write_text(report)
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Retry
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["tests"])],
            builders=[Builder("tests", workers=["w1"], steps=[
                Shell("f=$(ls {queue} | sort | head -1); mv {queue}/$f report.xml; "
                      "! grep -q failure report.xml",
                      name="pytest", junit="report.xml", retry=Retry(attempts=2, when="flaky")),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")

    def build(number: int, revision: str) -> dict:
        master.client.force("tests", revision=revision)
        found = finished_builds(master.client, number, timeout=90, builder="tests")[-1]
        return build_detail(master.client, found["id"])

    # When test_net fails before anything is known about it, it is not tried again
    first = build(1, "r1")
    assert (first["result"], first["steps"][0]["attempts"]) == ("FAILURE", 1)
    assert build(2, "r1")["result"] == "SUCCESS"

    # Then, once it passed and failed on one revision, a failure of it alone is tried again
    third = build(3, "r2")
    (step,) = third["steps"]
    assert (third["result"], step["attempts"]) == ("SUCCESS", 2)
    assert "1 failing test(s) known to be flaky: test_net" in step["summary"]
    assert [name for name in step["logs"] if name.startswith("stdio")] == ["stdio", "stdio (attempt 1)"]

    # And a failure of a test that is not flaky is not
    fourth = build(4, "r3")
    assert (fourth["result"], fourth["steps"][0]["attempts"]) == ("FAILURE", 1)


def test_max_time_ends_the_build_interrupting_its_command_and_runs_its_cleanup(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["slow"])],
            builders=[Builder("slow", workers=["w1"], max_time=2, steps=[
                Shell("echo started; sleep 60", name="soak"),
                Shell("echo never", name="after"),
                Shell("echo cleaning up", name="cleanup", always_run=True),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("slow")
    (build,) = finished_builds(master.client, 1, timeout=90)
    detail = build_detail(master.client, build["id"])
    assert build["result"] == "FAILURE"
    assert build["summary"] == "timed out: the build ran longer than its max_time of 2 s"
    soak, cleanup = detail["steps"]  # the step between them never ran
    assert soak["result"] == "FAILURE"
    assert "killed by signal" in step_log(master.client, build["id"], 0)
    assert (cleanup["name"], cleanup["result"]) == ("cleanup", "SUCCESS")
    assert "cleaning up" in step_log(master.client, build["id"], 2)
    assert build["finished_at"] - build["started_at"] < 50  # its command would have slept 60 s


LOST_WORKER = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Retry
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["fetch", "capped"])],
        builders=[
            Builder("fetch", workers=["w1", "w2"], steps=[
                Shell("echo before", name="before"),
                Shell('echo on $FLOWBOT_WORKER; [ "$FLOWBOT_WORKER" = w2 ] || sleep 120', name="fetch",
                      retry=Retry(attempts=2, on=["lost worker"])),
            ]),
            Builder("capped", workers=["w1", "w2"], retry=Retry(attempts=1, on=["lost worker"]),
                    steps=[Shell("sleep 120", name="hang")]),
        ],
    )
"""


def test_a_step_whose_worker_is_lost_runs_again_on_another_worker_of_its_builder(master_factory, worker_factory):
    # Given a step running on w1, which its Retry runs again when its worker is lost
    master = master_factory(LOST_WORKER)
    w1 = worker_factory(master, "w1", "s1")
    master.client.force("fetch")
    wait_for(lambda: "on w1" in _log_or_empty(master, "fetch", 1), 30, "the step to run on w1")
    worker_factory(master, "w2", "s2")

    # When w1 dies without a word
    w1.kill()

    # Then the same build goes on: the step runs again on w2 and the build succeeds, one build in all
    (build,) = finished_builds(master.client, 1, timeout=90, builder="fetch")
    assert (build["result"], build["attempt"], build["worker"]) == ("SUCCESS", 1, "w2")
    step = build_detail(master.client, build["id"])["steps"][1]
    assert (step["result"], step["attempts"]) == ("SUCCESS", 2)
    assert "the worker was lost" in step["summary"]
    assert "on w2" in step_log(master.client, build["id"], 1)
    assert "on w1" in log_of(master.client, build["id"], 1, "stdio (attempt 1)")


def test_a_builder_retry_caps_the_builds_a_lost_worker_makes(master_factory, worker_factory):
    # Given a builder whose Retry allows one build when workers are lost
    master = master_factory(LOST_WORKER)
    w1 = worker_factory(master, "w1", "s1")
    master.client.force("capped")
    wait_for(lambda: any(b["result"] is None for b in master.client.builds(builder="capped")), 30, "the build")

    # When its worker dies, the build is not run again
    w1.kill()
    (build,) = finished_builds(master.client, 1, timeout=90, builder="capped")
    assert build["result"] == "EXCEPTION"
    assert build["summary"] == "the worker was lost on attempt 1 of 1; not tried again"
    assert master.client.buildrequests(pending=True) == []


def _log_or_empty(master, builder: str, step: int) -> str:
    builds = master.client.builds(builder=builder, limit=1)
    if not builds:
        return ""
    try:
        return step_log(master.client, builds[0]["id"], step)
    except NotFound:  # the step has not started yet
        return ""
