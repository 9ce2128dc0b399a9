"""Workers started on demand in Docker containers, against the real Docker daemon: containers made
from a worker image built here, on the host's network so every connection stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap

import pytest

import flowbot
from flowbot import Builder, DockerWorker, ForceScheduler, Pipeline, Shell
from flowbot.client import Client

from ..support import TEST_HEARTBEAT, finished_builds, restart, running_build, step_log, wait_for, wait_for_async

#: Heartbeat of the masters killed and started again: the resume window is 3 heartbeats, time for
#: a container's worker to come back to a master restarting on a busy machine.
HEARTBEAT = 2.0

#: The first test to run builds the worker image (a minute or two on a new machine).
pytestmark = pytest.mark.timeout(600)


def containers(master_id: str) -> list[dict]:
    """The containers (running or not) labelled with master ``master_id``, as ``docker inspect`` has them."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=flowbot-master={master_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return []
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)


def pipeline(worker: DockerWorker, command: str) -> Pipeline:
    return Pipeline(
        workers=[worker],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=[worker.name], collapse_requests=False, steps=[Shell(command, name="run")])],
    )


async def test_builds_run_in_fresh_containers_that_are_removed_after(docker_worker_image, tmp_path) -> None:
    # Given a Docker worker with a volume, an environment and resource limits, two at a time
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "input.txt").write_text("from the host\n")
    worker = DockerWorker(
        "docker",
        image=docker_worker_image,
        network="host",
        environment={"GREETING": "hello"},
        volumes={str(shared): "/shared:ro"},
        memory="256m",
        cpus=0.5,
        max_instances=2,
        idle_timeout=0,
        start_timeout=60,
    )
    command = "test -f /.dockerenv && echo in a container; cat /shared/input.txt; echo $GREETING; sleep 1"
    master = flowbot.Master(pipeline(worker, command), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        # When three builds are asked for
        for _ in range(3):
            await master.force("unit")

        # Then while one runs, its container carries the labels, limits and settings asked for
        running = await wait_for_async(lambda: containers(master.instance_id), 60, "a container")
        config = running[0]
        assert config["Config"]["Labels"]["flowbot-master"] == master.instance_id
        assert config["Config"]["Labels"]["flowbot-worker"] == "docker"
        assert config["Config"]["Labels"]["flowbot-instance"] in ("docker-1", "docker-2")
        assert config["HostConfig"]["Memory"] == 256 * 1024**2
        assert config["HostConfig"]["NanoCpus"] == 500_000_000
        assert config["HostConfig"]["NetworkMode"] == "host"
        secret = next(e for e in config["Config"]["Env"] if e.startswith("FLOWBOT_WORKER_SECRET="))
        assert len(secret.split("=", 1)[1]) >= 40  # a credential made for this start, not the worker's secret

        # ... all three succeed in containers of their own, never more than two at once
        await master.wait_idle(timeout=120)
        builds = master.history.builds()
        assert list(builds["result"].astype(str)) == ["SUCCESS"] * 3
        assert set(builds["worker"]) <= {"docker-1", "docker-2"}
        assert master.latent.starts["docker"] == 3

        # ... and no container is left
        await master.latent.settled(timeout=60)
        assert containers(master.instance_id) == []
    finally:
        await master.stop()


async def test_the_build_log_shows_it_ran_inside_the_container(docker_worker_image, tmp_path) -> None:
    worker = DockerWorker("docker", image=docker_worker_image, network="host", environment={"GREETING": "hello"})
    command = "test -f /.dockerenv && echo in a container; echo $GREETING; cat /etc/debian_version"
    master = flowbot.Master(pipeline(worker, command), basedir=tmp_path / "m", http="127.0.0.1:0")
    await master.start()
    try:
        await master.force("unit")
        await master.wait_idle(timeout=120)
        client = Client(master.http_url)  # a blocking client: it runs off the master's loop
        (build,) = await asyncio.to_thread(finished_builds, client, 1)
        text = await asyncio.to_thread(step_log, client, build["id"], 0)
        assert "in a container" in text
        assert "hello" in text
        assert "12." in text  # bookworm, the image's, not the host's
    finally:
        await master.stop()


async def test_an_image_that_is_not_there_fails_the_start_and_says_so(docker_worker_image, tmp_path, caplog) -> None:
    worker = DockerWorker("docker", image="flowbot-worker-test:no-such-tag", network="host")
    master = flowbot.Master(pipeline(worker, "true"), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["docker"], 30, "the start to fail")
        await master.latent.settled(timeout=30)

        assert "image 'flowbot-worker-test:no-such-tag' is not on the Docker host" in caplog.text
        assert request in master.queue
        assert containers(master.instance_id) == []
    finally:
        await master.stop()


async def test_cancelling_the_request_removes_the_container_starting_for_it(docker_worker_image, tmp_path) -> None:
    # A container whose worker never connects (a network that does not reach the master, say)
    worker = DockerWorker("docker", image=docker_worker_image, command=["sh", "-c", "sleep 120"], start_timeout=120)
    master = flowbot.Master(pipeline(worker, "true"), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: containers(master.instance_id), 60, "the container to start")

        await master.cancel_request(request)

        await master.latent.settled(timeout=30)
        assert containers(master.instance_id) == []
        assert master.latent.failures["docker"] == 0
    finally:
        await master.stop()


async def test_a_container_whose_worker_never_connects_is_removed_at_start_timeout(
    docker_worker_image, tmp_path
) -> None:
    worker = DockerWorker("docker", image=docker_worker_image, command=["sh", "-c", "sleep 120"], start_timeout=3)
    master = flowbot.Master(pipeline(worker, "true"), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["docker"], 30, "the start to fail")
        await master.latent.settled(timeout=30)

        assert containers(master.instance_id) == []
        assert request in master.queue  # it waits for the next start
    finally:
        await master.stop()


async def test_a_container_dying_mid_build_is_removed_and_its_build_runs_again(docker_worker_image, tmp_path) -> None:
    worker = DockerWorker("docker", image=docker_worker_image, network="host", idle_timeout=0)
    master = flowbot.Master(pipeline(worker, "sleep 600"), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT)
    await master.start()
    try:
        await master.force("unit")
        await wait_for_async(lambda: master.running, 60, "the build to run")
        (dying,) = containers(master.instance_id)

        subprocess.run(["docker", "kill", dying["Id"]], capture_output=True, check=True)

        await wait_for_async(lambda: _gone(dying["Id"]), 30, "the dead container to be removed")
        await wait_for_async(lambda: master.running, 60, "the build to run again")
        results = list(master.history.builds()["result"].astype(str))
        assert results[0] == "RETRY"
        assert [c["Id"] for c in containers(master.instance_id)] != [dying["Id"]]
    finally:
        await master.stop()
    assert containers(master.instance_id) == []


def test_a_master_killed_mid_build_takes_its_container_up_and_removes_the_idle_one(
    docker_worker_image, master_factory
) -> None:
    # Given a master running a build in one container, with another container idle
    text = textwrap.dedent(f"""
        from flowbot import Pipeline, DockerWorker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[DockerWorker("docker", image={docker_worker_image!r}, network="host", max_builds=1,
                                  max_instances=2, idle_timeout=-1)],
            schedulers=[ForceScheduler("force", builders=["slow", "quick"])],
            builders=[
                Builder("slow", workers=["docker"], steps=[Shell("sleep 15; echo slept", name="run")]),
                Builder("quick", workers=["docker"], steps=[Shell("true", name="run")]),
            ],
        )
        """)
    master = master_factory(text, heartbeat=HEARTBEAT)
    master.client.force("slow")
    slow = running_build(master.client, "slow", 60)
    master.client.force("quick")
    (quick,) = finished_builds(master.client, 1, timeout=60)
    instance_id = _instance_id(master)
    by_instance = {c["Config"]["Labels"]["flowbot-instance"]: c["Id"] for c in containers(instance_id)}
    busy, idle = by_instance[slow["worker"]], by_instance[quick["worker"]]

    # When the master is killed, and started again
    master.kill()
    assert sorted(c["Id"] for c in containers(instance_id)) == sorted([busy, idle])  # they outlive it
    again = restart(master_factory, master, text, heartbeat=HEARTBEAT)

    # Then the idle container is removed, and the busy one's build is taken up and ends well in it
    wait_for(lambda: _gone(idle), 60, "the idle container to be removed")
    builds = {b["id"]: b for b in finished_builds(again.client, 2, timeout=90)}
    assert builds[slow["id"]]["result"] == "SUCCESS"  # the same build, not a retry
    assert [c["Id"] for c in containers(instance_id)] == [busy]
    assert "taken up" in again.log()

    # ... and a master that stops leaves no container
    again.stop()
    assert containers(instance_id) == []


def _instance_id(master) -> str:
    import hashlib
    import socket

    name = f"{socket.gethostname()}:{master.basedir.resolve()}"
    db = f"sqlite:///{master.basedir.resolve() / 'state.sqlite'}"
    return hashlib.sha256(f"{name}\n{db}".encode()).hexdigest()[:16]


def _gone(container_id: str) -> bool:
    return subprocess.run(["docker", "inspect", container_id], capture_output=True).returncode != 0
