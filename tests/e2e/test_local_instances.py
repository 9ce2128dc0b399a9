"""Workers started on demand as local processes: a real master starts real worker processes for the
requests that wait, and removes them when their work is done, cancelled, or they fail to connect."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from flowbot_worker.curve import create_key

import flowbot
from flowbot import Builder, ForceScheduler, LocalWorker, Pipeline, Shell, Trigger, Triggerable, Worker
from flowbot.master.events import EventKind

from ..support import TEST_HEARTBEAT, WorkerProcess, finished_builds, pid_alive, wait_for_async


def pipeline(worker: LocalWorker, command: str = "echo built on $FLOWBOT_WORKER") -> Pipeline:
    return Pipeline(
        workers=[worker],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=[worker.name], collapse_requests=False, steps=[Shell(command)])],
    )


def hanging_python(tmp_path: Path) -> str:
    """An "interpreter" that starts and never connects, as a worker stuck on a bad network would."""
    script = tmp_path / "hang.sh"
    script.write_text("#!/bin/sh\nexec sleep 120\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def processes_running(launcher) -> list[int]:
    return [p.pid for p in launcher._processes.values() if p.poll() is None]


async def test_three_builds_on_two_instances_each_run_on_a_fresh_worker_that_is_removed_after(tmp_path) -> None:
    # Given a worker started on demand, at most two at a time, one build each
    worker = LocalWorker("local", max_instances=2, idle_timeout=0, start_timeout=30)
    directory = tmp_path / "instances"
    worker.launcher.directory = directory
    master = flowbot.Master(
        pipeline(worker, "sleep 0.5; echo built on $FLOWBOT_WORKER"),
        basedir=tmp_path / "m",
        http=None,
        heartbeat=TEST_HEARTBEAT,
    )
    await master.start()
    try:
        # When three builds are asked for
        for _ in range(3):
            await master.force("unit")
        await master.wait_idle(timeout=60)
        await master.latent.settled(timeout=30)

        # Then all three succeeded, each on an instance of its own, never more than two at once
        builds = master.history.builds()
        assert list(builds["result"].astype(str)) == ["SUCCESS"] * 3
        assert set(builds["worker"]) <= {"local-1", "local-2"}
        metrics = master_metrics(master)
        assert 'flowbot_instance_starts_total{worker="local"} 3' in metrics
        assert 'flowbot_instance_failures_total{worker="local"} 0' in metrics
        assert 'flowbot_instance_connect_seconds_count{worker="local"} 3' in metrics
        assert (
            'flowbot_instances{state="connected",worker="local"}' in metrics
        )  # labels sorted, as Prometheus's client writes them
        # ... and nothing is left: no process, no directory, no record
        assert not processes_running(worker.launcher)
        assert list(directory.iterdir()) == []
    finally:
        await master.stop()


async def test_cancelling_a_request_that_waits_for_a_starting_worker_stops_the_start(tmp_path) -> None:
    worker = LocalWorker("local", python=hanging_python(tmp_path), start_timeout=60)
    master = flowbot.Master(pipeline(worker), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: processes_running(worker.launcher), 10, "the instance to start")
        (pid,) = processes_running(worker.launcher)
        assert [v.state.value for v in master.latent.views()] == ["starting"]

        await master.cancel_request(request)

        await master.latent.settled(timeout=20)
        assert not pid_alive(pid)
        await master.wait_idle(timeout=10)
        assert master.latent.failures["local"] == 0
    finally:
        await master.stop()


async def test_a_worker_that_never_connects_fails_its_start_and_the_request_waits(tmp_path) -> None:
    worker = LocalWorker("local", python=hanging_python(tmp_path), start_timeout=1)
    master = flowbot.Master(pipeline(worker), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["local"], 20, "the start to fail")
        await master.latent.settled(timeout=20)

        assert request in master.queue  # it waits for a start that works, or for another worker
        assert not processes_running(worker.launcher)
        metrics = master_metrics(master)
        assert 'flowbot_instance_starts_total{worker="local"} 1' in metrics
        assert 'flowbot_instance_failures_total{worker="local"} 1' in metrics
        assert 'flowbot_instance_connect_seconds_count{worker="local"}' not in metrics  # it never connected
    finally:
        await master.stop()


async def test_a_worker_process_that_exits_at_once_fails_without_waiting_for_the_timeout(tmp_path) -> None:
    worker = LocalWorker("local", python="/bin/false", start_timeout=120)
    master = flowbot.Master(pipeline(worker), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        await master.force("unit")
        # Then the start fails within seconds, long before its start_timeout of two minutes, and the
        # build waits for a start that works instead of failing
        await wait_for_async(lambda: master.latent.failures["local"], 10, "the start to fail")
        assert master.latent.failures["local"] >= 1 and len(master.queue) == 1 and not master.running
    finally:
        await master.stop()


def master_metrics(master) -> str:
    from flowbot.web.metrics import Metrics

    metrics = Metrics(master.web_services())
    try:
        return metrics.render()
    finally:
        metrics.close()


def test_flowbot_workers_lists_instances_and_their_state(master_factory, tmp_path) -> None:
    # Given a master whose worker on demand is starting (it never connects) and another that ran its build
    master = master_factory(f"""
        from flowbot import Pipeline, LocalWorker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[
                LocalWorker("stuck", python={hanging_python(tmp_path)!r}, start_timeout=120),
                LocalWorker("quick", idle_timeout=-1),
            ],
            schedulers=[ForceScheduler("force", builders=["never", "once"])],
            builders=[
                Builder("never", workers=["stuck"], steps=[Shell("true")]),
                Builder("once", workers=["quick"], steps=[Shell("true")]),
            ],
        )
        """)
    master.client.force("never")
    master.client.force("once")
    finished_builds(master.client, 1, timeout=60)

    # When someone asks the command line
    listed = flowbot_cli("workers", master=master)
    status = flowbot_cli("status", master=master)

    # Then each instance shows with its worker, kind and state
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "stuck" in rows["stuck-1"] and "local process" in rows["stuck-1"] and "starting" in rows["stuck-1"]
    assert "quick" in rows["quick-1"] and "connected" in rows["quick-1"]
    assert "Instances of workers started on demand" in status.stdout
    assert "stuck-1" in status.stdout
    assert {i["name"] for i in master.client.instances()} == {"stuck-1", "quick-1"}


def flowbot_cli(*args: str, master) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowbot", *args, "--master", master.url], capture_output=True, text=True, timeout=60
    )


async def test_a_copy_of_an_instances_credential_is_refused_to_another_process(tmp_path) -> None:
    # Given an instance whose worker connected with the credential of its start
    worker = LocalWorker("local", idle_timeout=-1)
    master = flowbot.Master(pipeline(worker), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        await master.force("unit")
        await master.wait_idle(timeout=60)
        connection = master.registry.connections["local-1"]
        token = master.registry.instances["local-1"].secret
        assert token != worker.secret

        # When someone who read it (from the process's environment, say) connects with it
        thief = WorkerProcess(master.dial_endpoint(), "local-1", token, tmp_path / "thief")
        try:
            await wait_for_async(lambda: "used already" in thief.log(), 20, "the copy to be refused")
        finally:
            thief.stop()

        # Then the instance's own worker is still the one connected
        assert master.registry.connections["local-1"] is connection

        # ... and nothing connects as the worker started on demand itself, not even with its secret
        poser = WorkerProcess(master.dial_endpoint(), "local", worker.secret, tmp_path / "poser")
        try:
            await wait_for_async(lambda: "only its instances connect" in poser.log(), 20, "the poser to be refused")
        finally:
            poser.stop()
        assert "local" not in master.registry.connections
    finally:
        await master.stop()


async def test_on_an_encrypted_link_each_instance_gets_a_key_pair_of_its_own(tmp_path) -> None:
    create_key(tmp_path, "master")
    worker = LocalWorker("local", idle_timeout=0)
    encrypted = Pipeline(
        workers=[worker],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["local"], steps=[Shell("echo encrypted")])],
        curve_key=tmp_path / "master.key_secret",
    )
    master = flowbot.Master(encrypted, basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    keys = []  # the key each instance's connection proved, as it connected
    master.events.subscribe(
        lambda e: keys.append(master.registry.connections[e["worker"]].key), {EventKind.WORKER_CONNECTED}
    )
    await master.start()
    try:
        for _ in range(2):
            await master.force("unit")
            await master.wait_idle(timeout=60)
            await master.latent.settled(timeout=30)

        assert list(master.history.builds()["result"].astype(str)) == ["SUCCESS", "SUCCESS"]
        assert keys[0] and keys[1] and keys[0] != keys[1]  # each start proved a key of its own
        assert master.registry.local_keys == {}  # and none is admitted once its instance is gone
    finally:
        await master.stop()


async def test_stopping_a_build_whose_triggered_build_waits_for_a_start_leaves_no_instance(tmp_path) -> None:
    # Given a build that triggered another, whose worker on demand is starting (it never connects)
    child_worker = LocalWorker("child-worker", python=hanging_python(tmp_path), start_timeout=120)
    both = Pipeline(
        workers=[Worker("w1", secret="s"), child_worker],
        schedulers=[ForceScheduler("force", builders=["parent"]), Triggerable("child", builders=["child"])],
        builders=[
            Builder("parent", workers=["w1"], steps=[Trigger(["child"], wait_for_finish=True)]),
            Builder("child", workers=["child-worker"], steps=[Shell("true")]),
        ],
    )
    master = flowbot.Master(both, basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("parent")
        await wait_for_async(lambda: processes_running(child_worker.launcher), 20, "the child's instance to start")
        (pid,) = processes_running(child_worker.launcher)
        (parent,) = master.running.values()

        # When the parent build is stopped
        await master.stop_build(parent.id, "not needed")

        # Then the triggered request is withdrawn and its instance removed, process and all
        await master.wait_idle(timeout=30)
        await master.latent.settled(timeout=30)
        assert not pid_alive(pid)
        assert master.latent.failures["child-worker"] == 0
    finally:
        await master.stop()
