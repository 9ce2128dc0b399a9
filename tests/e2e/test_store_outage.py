"""The database goes away under a running master and comes back: nothing accepted is left behind,
no step runs twice, and every log is whole, without restarting the master."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from flowbot.errors import FlowbotError

from ..support import step_log, wait_for

#: Each build appends its revision to a file as each of its steps starts, so runs can be counted.
PIPELINE = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["work"])],
        builders=[Builder("work", workers=["w1", "w2"], collapse_requests=False, steps=[
            Shell("echo $FLOWBOT_REVISION >> {runs}/print; "
                  "for i in $(seq 1 {lines}); do echo line $i; sleep 0.01; done", name="print"),
            Shell("echo $FLOWBOT_REVISION >> {runs}/end", name="end"),
        ])],
    )
"""
LINES = 60


def runs(path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def test_a_database_outage_mid_run_leaves_no_request_behind_and_runs_no_step_twice(
    stoppable_postgres, master_factory, worker_factory, tmp_path
):
    # Given a master on PostgreSQL with two workers and a queue of accepted requests
    (tmp_path / "runs").mkdir()
    db = stoppable_postgres.create_database()
    master = master_factory(PIPELINE.format(runs=tmp_path / "runs", lines=LINES), db=db)
    worker_factory(master, "w1", "s1")
    worker_factory(master, "w2", "s2")
    revisions = [f"r{i}" for i in range(16)]
    accepted = {master.client.force("work", revision=revision)[0]: revision for revision in revisions}
    wait_for(lambda: len(runs(tmp_path / "runs" / "end")) >= 2, 60, "the first builds to end")

    # When the database stops in the middle of builds, for a few seconds
    stoppable_postgres.stop()
    time.sleep(1.0)
    # Then what is asked for meanwhile is refused, saying why, rather than accepted and lost
    with pytest.raises(FlowbotError, match=r"\(503\).*database"):
        master.client.force("work", revision="during")
    time.sleep(2.0)
    stoppable_postgres.start()

    # Then, with no restart of the master, every accepted request is built, once
    wait_for(lambda: master.client.buildrequests(pending=True) == [], 90, "every accepted request to complete")
    builds = master.client.builds(limit=100)
    assert sorted(b["request_id"] for b in builds) == sorted(accepted)
    assert {b["result"] for b in builds} == {"SUCCESS"}
    assert {b["revision"] for b in builds} == set(revisions)
    # And no step ran twice, none was left out
    assert runs(tmp_path / "runs" / "print") == Counter(revisions)
    assert runs(tmp_path / "runs" / "end") == Counter(revisions)
    # And every log is whole
    for build in builds:
        printed = [line for line in step_log(master.client, build["id"], 0).splitlines() if line.startswith("line ")]
        assert printed == [f"line {i}" for i in range(1, LINES + 1)], build
    # And the master said what happened, once, not for every write
    assert master.log().count("database outage:") == 1
    assert "database outage over" in master.log()
    assert master.client.force("work", revision="after")
