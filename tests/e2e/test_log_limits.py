"""Logs bounded end to end: a real master and worker, a step that prints more than its log keeps,
lines too long to keep whole, and last lines without a newline, on the worker and on the master."""

from __future__ import annotations

from flowbot.defaults import LOG_LINE_CUT

from ..support import finished_builds, step_log


def test_a_step_keeps_its_log_up_to_its_limit_and_says_how_much_it_did_not(master_factory, worker_factory):
    # Given a pipeline whose logs keep 1 MiB, and a step that keeps 10,000 bytes
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, MasterShell, ForceScheduler
        FLOOD = "python3 -c 'import sys; [sys.stdout.write(f\\"line {n:06}\\\\n\\") for n in range(200000)]'"
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["b"])],
            builders=[Builder("b", workers=["w1"], steps=[
                Shell(FLOOD, name="capped", max_log=10_000),
                Shell(FLOOD, name="default"),
                Shell("echo one; printf 'no newline'", name="worker tail"),
                MasterShell("echo one; printf 'no newline'", name="master tail"),
            ])],
            max_log=1024 * 1024,
        )
    """)
    worker_factory(master, "w1", "s")

    # When it builds (each flood prints 2,400,000 bytes in 200,000 lines)
    master.client.force("b")
    (build,) = finished_builds(master.client, 1, timeout=120)

    # Then the build succeeds, and each capped log holds what fit, then says it reached its limit, then
    # how much it did not keep, then how the program ended
    assert build["result"] == "SUCCESS"
    capped = step_log(master.client, build["id"], 0).splitlines()
    assert capped[1:834] == [f"line {n:06}" for n in range(833)]  # 833 lines of 12 bytes, and 4 bytes more
    assert capped[834:] == [
        "line",
        "[this log reached its limit of 9.8 KiB (max_log): output past it is counted, not stored]",
        "[2,390,000 bytes (2.3 MiB, 199,167 lines) of output past the limit were not stored]",
        capped[-1],
    ]
    assert capped[-1].startswith("program finished with exit code 0")
    default = step_log(master.client, build["id"], 1).splitlines()
    assert len(default) == 1 + 87_381 + 1 + 2 + 1 and "limit of 1 MiB" in default[-3]

    # And the steps' summaries say so too
    detail = master.client.request("GET", f"/api/builds/{build['id']}")
    summaries = [s["summary"] for s in detail["steps"]]
    assert summaries[:2] == [
        "log stdio cut at 9.8 KiB: 2.3 MiB not stored",
        "log stdio cut at 1 MiB: 1.3 MiB not stored",
    ]

    # And a last line without its newline comes before the line that says how the program ended
    for step in (2, 3):
        lines = step_log(master.client, build["id"], step).splitlines()
        assert lines[1:3] == ["one", "no newline"] and "exit code 0" in lines[3], lines


def test_a_line_too_long_to_keep_whole_is_split_with_a_mark(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["b"])],
            builders=[Builder("b", workers=["w1"], steps=[
                Shell("python3 -c 'print(\\"x\\" * 200000)'; printf 'tail'", name="long"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("b")
    (build,) = finished_builds(master.client, 1)

    lines = step_log(master.client, build["id"], 0).splitlines()[1:-1]
    assert [len(line.removesuffix(LOG_LINE_CUT)) for line in lines] == [65536, 65536, 65536, 3392, 4]
    assert [line.endswith(LOG_LINE_CUT) for line in lines] == [True, True, True, False, False]
    assert "".join(line.removesuffix(LOG_LINE_CUT) for line in lines) == "x" * 200_000 + "tail"
