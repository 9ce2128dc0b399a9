"""The database goes away under a running master and comes back: nothing accepted is left behind,
no step runs twice, and every log is whole, without restarting the master."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest
from flowbot_worker import protocol

from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.errors import FlowbotError
from flowbot.master import Master, logs
from flowbot.record_json import build_json

from ..support import step_log, wait_for
from .fake_worker import FakeWorker, until

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

#: Each test runs real builds through an outage: on a loaded machine they take a while.
pytestmark = pytest.mark.timeout(300)


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
    revisions = [f"r{i}" for i in range(12)]
    accepted = {master.client.force("work", revision=revision)[0]: revision for revision in revisions}
    wait_for(lambda: len(runs(tmp_path / "runs" / "end")) >= 2, 60, "the first builds to end")

    # When the database stops in the middle of builds, for a few seconds
    stoppable_postgres.stop()
    time.sleep(1.0)
    # Then what is asked for meanwhile is refused, saying why, rather than accepted and lost
    with pytest.raises(FlowbotError, match=r"\(503\).*database"):
        master.client.force("work", revision="during")
    # And /metrics shows it, with the writes that wait
    metrics = master.client.request("GET", "/metrics")
    assert "flowbot_store_available 0" in metrics
    (held,) = [line.split()[1] for line in metrics.splitlines() if line.startswith("flowbot_store_held_writes ")]
    assert float(held) > 0
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
    metrics = master.client.request("GET", "/metrics")
    assert "flowbot_store_available 1" in metrics and "flowbot_store_held_writes 0" in metrics
    assert master.client.force("work", revision="after")


TRIGGERING = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Triggerable, Trigger
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["parent"]), Triggerable("children", builders=["child"])],
        builders=[
            Builder("parent", workers=["w1"], steps=[
                Shell("touch {runs}/parent; sleep 3", name="work"),
                Trigger("children", wait_for_finish=True, name="trigger"),
            ]),
            Builder("child", workers=["w2"], steps=[Shell("echo child >> {runs}/child", name="child")]),
        ],
    )
"""


def test_a_build_that_triggers_others_while_the_database_is_away_waits_for_it(
    stoppable_postgres, master_factory, worker_factory, tmp_path
):
    # Given a build on PostgreSQL whose next step triggers another build
    db = stoppable_postgres.create_database()
    master = master_factory(TRIGGERING.format(runs=tmp_path), db=db)
    worker_factory(master, "w1", "s1")
    worker_factory(master, "w2", "s2")
    master.client.force("parent")
    wait_for(lambda: (tmp_path / "parent").exists(), 30, "the parent's first step")

    # When the database is away as it triggers
    stoppable_postgres.stop()
    time.sleep(5.0)
    stoppable_postgres.start()

    # Then the trigger waited for the database: the child ran once and the parent ended well
    wait_for(lambda: master.client.buildrequests(pending=True) == [], 60, "every request to complete")
    builds = {b["builder"]: b for b in master.client.builds(limit=10)}
    assert (builds["parent"]["result"], builds["child"]["result"]) == ("SUCCESS", "SUCCESS")
    assert (tmp_path / "child").read_text() == "child\n"


#: A program that prints 30,000 numbered lines of 100 bytes in 100 bursts.
PRINTING = """\
import sys, time
for i in range(1, 30001):
    print(f"line {i} " + "x" * 88)
    if i % 300 == 0:
        sys.stdout.flush()
        time.sleep(0.05)
"""
PRINTER = f"""
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1")],
        schedulers=[ForceScheduler("force", builders=["print"])],
        builders=[Builder("print", workers=["w1"], steps=[Shell(["python3", "-c", {PRINTING!r}], name="print")])],
    )
"""


def printed_lines(client, build_id: int) -> list[str]:
    return [line.split(" ")[1] for line in step_log(client, build_id, 0).splitlines() if line.startswith("line ")]


def test_a_full_disk_holds_a_builds_log_until_there_is_room_again(small_disk, master_factory, worker_factory):
    # Given a master whose SQLite database is on a small filesystem, running a build with a long log
    disk = small_disk(24 * 1024 * 1024)
    master = master_factory(PRINTER, db=f"sqlite:///{disk.path / 'state.sqlite'}")
    worker_factory(master, "w1", "s1")
    (request_id,) = master.client.force("print")
    wait_for(lambda: len(_running_log(master.client)) > 3000, 30, "some output")

    # When the filesystem fills up for a few seconds, and then there is room again
    disk.fill()
    wait_for(lambda: "database outage:" in master.log(), 20, "the master to notice")
    time.sleep(3.0)
    disk.free()

    # Then the build ends as it would have, its log whole, with no restart
    (build,) = finished(master.client, 1)
    assert (build["request_id"], build["result"]) == (request_id, "SUCCESS")
    assert printed_lines(master.client, build["id"]) == [str(i) for i in range(1, 30001)]
    # And writes are back: the next build runs and is recorded
    master.client.force("print")
    assert finished(master.client, 2)[-1]["result"] == "SUCCESS"
    # And the outage took a few lines of the master's log, not one per write
    assert sum(" ERROR " in line for line in master.log().splitlines()) <= 2


def test_a_master_whose_disk_is_full_stops_cleanly(small_disk, master_factory, worker_factory):
    # Given a master whose SQLite database is on a small filesystem, that has run a build
    disk = small_disk(24 * 1024 * 1024)
    master = master_factory(PRINTER, db=f"sqlite:///{disk.path / 'state.sqlite'}")
    worker_factory(master, "w1", "s1")
    master.client.force("print")
    finished(master.client, 1)

    # When the filesystem is full and the master is stopped
    disk.fill()
    code = master.stop()

    # Then it stops cleanly: no traceback, no pid file left behind
    assert code == 0, master.log()
    assert "Traceback" not in master.log()
    assert not (master.basedir / "master.pid").exists()


def _running_log(client) -> list[str]:
    running = [b for b in client.builds(limit=5) if b["result"] is None]
    return printed_lines(client, running[0]["id"]) if running else []


def finished(client, count: int) -> list[dict]:
    return wait_for(
        lambda: (done := [b for b in client.builds(limit=10) if b["result"]]) and len(done) >= count and done[::-1],
        90,
        f"{count} finished build(s)",
    )


def _builder_pipeline() -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s1")],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("print what the worker says")])],
    )


async def _acks(worker: FakeWorker, timeout: float) -> list[dict]:
    """The acknowledgements the master sends within ``timeout`` seconds."""
    acks = []
    with contextlib.suppress(AssertionError):
        while True:
            acks.append((await worker.expect(protocol.ACK, timeout=timeout)).content)
    return acks


async def test_output_is_acknowledged_once_stored_and_a_result_once_its_output_is(stoppable_postgres):
    # Given a master on PostgreSQL, and a worker (one that shows what the master acknowledges) running its command
    master = Master(_builder_pipeline(), db=stoppable_postgres.create_database())
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s1")
    try:
        assert (await worker.hello()).type == protocol.WELCOME
        await master.force("b")
        cmd_id = (await worker.expect(protocol.START_COMMAND)).content["cmd_id"]
        await worker.send(protocol.OUTPUT, {"cmd_id": cmd_id, "stream": "stdout", "offset": 0}, (b"one\ntwo\n",))
        (ack,) = await _acks(worker, 2.0)
        assert (ack["of"], ack["offsets"]) == (protocol.OUTPUT, {"stdout": 8})

        # When the database stops, and the command prints more (the end of a line to come) and finishes
        stoppable_postgres.stop()
        await worker.send(protocol.OUTPUT, {"cmd_id": cmd_id, "stream": "stdout", "offset": 8}, (b"three\nfo",))
        await worker.send(protocol.OUTPUT, {"cmd_id": cmd_id, "stream": "stdout", "offset": 16}, (b"ur\nfive",))
        await worker.send(protocol.FINISHED, {"cmd_id": cmd_id, "rc": 0, "elapsed": 0.1, "offsets": {"stdout": 23}})

        # Then nothing of it is acknowledged while it cannot be stored (the worker keeps it all)
        assert await _acks(worker, 3.0) == []

        # And once the database is back, the output is acknowledged, then the result
        stoppable_postgres.start()
        acks = await _acks(worker, 6.0)
        assert [a["of"] for a in acks][-1] == protocol.FINISHED and acks[-1]["cmd_ids"] == [cmd_id]
        stored = [a["offsets"]["stdout"] for a in acks if a["of"] == protocol.OUTPUT]
        assert stored == sorted(stored) and all(offset <= 23 for offset in stored)
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query()]
        assert build["result"] == "SUCCESS"
        lines = [line for stream, line in await master.store.logs.lines(build["id"], 0) if stream == "o"]
        assert lines == ["one", "two", "three", "four", "five"]
    finally:
        worker.close()
        await master.stop()


async def test_a_log_that_could_not_be_kept_says_so_and_its_build_is_not_a_plain_success(small_disk, monkeypatch):
    # Given a master whose SQLite database is on a small filesystem, whose logs wait a second for
    # a database that cannot take them, running a build that prints 30,000 lines
    monkeypatch.setattr(logs, "LOG_WRITE_PATIENCE", 1.0)
    disk = small_disk(24 * 1024 * 1024)
    printer = Shell(["python3", "-c", PRINTING], name="print")
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1")],
        schedulers=[ForceScheduler("force", builders=["print"])],
        builders=[Builder("print", workers=["w1"], steps=[printer])],
    )
    async with Master(pipeline, db=f"sqlite:///{disk.path / 'state.sqlite'}") as master:
        await master.start_local_workers()
        await master.force("print")
        await until(lambda: any(b.id for b in master.running.values()), what="the build to start")
        build_id = next(iter(master.running.values())).id

        async def printed() -> int:
            return sum(line.startswith("line ") for _, line in await master.store.logs.lines(build_id, 0))

        while await printed() < 3000:
            await asyncio.sleep(0.05)

        # When the filesystem is full for longer than a log waits
        disk.fill()
        await asyncio.sleep(5.0)
        disk.free()

        # Then the build goes on and ends, as WARNINGS, saying how many lines it lost
        await master.wait_idle(timeout=90)
        (build,) = [build_json(b) for b in await master.store.builds.query()]
        assert build["result"] == "WARNINGS"
        lines = await master.store.logs.lines(build_id, 0)
        notes = [line for _, line in lines if "could not be stored" in line]
        assert notes and all(note.endswith("the database is unavailable (database or disk is full)]") for note in notes)
        lost = sum(int(note[1:].split(" ")[0]) for note in notes)
        # (the 30,000 lines, between the command's description and the line saying how it ended)
        described = next(i for i, (_, line) in enumerate(lines) if line.startswith("line "))
        assert len(lines) - len(notes) + lost == described + 30000 + 1
        kept = [int(line.split(" ")[1]) for _, line in lines if line.startswith("line ")]
        assert kept == sorted(kept) and 30000 - lost <= len(kept) < 30000
        assert f"{lost} log line(s) could not be stored" in build["summary"]
