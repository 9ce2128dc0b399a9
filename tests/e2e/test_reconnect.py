"""A worker whose connection breaks comes back within the liveness window and its build carries on:
output resumes where the master has it, a stop sent meanwhile still arrives, a transfer is retried."""

from __future__ import annotations

import time

from ..support import finished_builds, running_build, step_log


def _pipeline(builder: str, steps: str) -> str:
    """A pipeline with one builder running ``steps`` (source text) on w1, whose secret is "s"."""
    return f"""
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, FileUpload
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=[{builder!r}])],
    builders=[Builder({builder!r}, workers=["w1"], steps=[{steps}])],
)
"""


def test_a_build_survives_a_broken_connection_and_its_output_arrives_exactly_once(
    master_factory, worker_factory, proxy_to
):
    # Given a worker that reaches the master through a link that is about to break
    master = master_factory(
        _pipeline("chatty", 'Shell("for i in $(seq 1 8); do echo line$i; sleep 0.15; done", name="talk")')
    )
    proxy = proxy_to(master)
    worker_factory(master, "w1", "s")
    master.client.force("chatty")
    build = running_build(master.client, "chatty")

    # When the connection breaks mid-build, a few lines in
    time.sleep(0.4)
    assert master.client.request("GET", f"/api/builds/{build['id']}")["result"] is None
    proxy.cut()

    # Then the worker comes back within the liveness window, resumes, and the build succeeds
    (done,) = finished_builds(master.client, 1, timeout=20)
    assert done["id"] == build["id"] and done["result"] == "SUCCESS"
    assert "resuming" in master.log()
    assert proxy.accepted >= 2
    lines = step_log(master.client, build["id"], 0).splitlines()
    assert [line for line in lines if line.startswith("line")] == [f"line{i}" for i in range(1, 9)]


def test_a_command_paused_by_unacknowledged_output_carries_on_after_a_reconnect(
    master_factory, worker_factory, proxy_to
):
    # Given a step printing far more than the worker may have unacknowledged (4 MiB)
    master = master_factory(
        _pipeline("loud", 'Shell("yes 0123456789abcdefghijklmnopqrstuvwxyz0 | head -n 300000; echo the-end")')
    )
    proxy = proxy_to(master)
    worker_factory(master, "w1", "s")

    # When, a megabyte in, the master's acknowledgements stop reaching the worker (so it stops
    # reading its process with a full window) until it gives up on the link and reconnects
    proxy.deafen_worker(after=1024 * 1024)
    master.client.force("loud")

    # Then the resumed command carries on and its whole output arrives
    (build,) = finished_builds(master.client, 1, timeout=60)
    assert build["result"] == "SUCCESS"
    assert "resuming" in master.log() and proxy.accepted >= 2
    lines = step_log(master.client, build["id"], 0).splitlines()
    assert lines.count("0123456789abcdefghijklmnopqrstuvwxyz0") == 300000 and "the-end" in lines


def test_an_upload_cut_off_by_a_reconnect_retries_the_build_instead_of_hanging(
    master_factory, worker_factory, proxy_to
):
    # Given a build that uploads 32 MiB
    master = master_factory(
        _pipeline(
            "artifact", 'Shell("head -c 33554432 /dev/urandom > big.bin"), FileUpload("big.bin", "up/big.bin")'
        ).replace("pipeline = Pipeline(", 'pipeline = Pipeline(artifacts="up",')
    )
    proxy = proxy_to(master)
    worker = worker_factory(master, "w1", "s")

    # When, 4 MiB into the upload, the master's credit stops reaching the worker until it reconnects
    proxy.deafen_worker(after=4 * 1024 * 1024)
    master.client.force("artifact")

    # Then the build that lost its transfer is retried, says why, and the retry delivers the file
    retried, rerun = finished_builds(master.client, 2, timeout=60)
    assert (retried["result"], rerun["result"]) == ("RETRY", "SUCCESS")
    assert "the connection to the worker broke during the transfer" in step_log(master.client, retried["id"], 1)
    uploaded = master.basedir / "up" / "big.bin"
    original = worker.basedir / "artifact" / "build" / "big.bin"
    assert uploaded.read_bytes() == original.read_bytes()


def test_a_build_stopped_while_its_worker_cannot_hear_the_master_stops_once_it_reconnects(
    master_factory, worker_factory, proxy_to
):
    # Given a long build, on a master whose worker notices silence only after 3 s
    master = master_factory(_pipeline("long", 'Shell("sleep 120")'), heartbeat=1.0)
    proxy = proxy_to(master)
    worker_factory(master, "w1", "s")
    master.client.force("long")
    build = running_build(master.client, "long")

    # When the worker stops hearing the master, and the build is stopped meanwhile
    proxy.deafen_worker()
    master.client.stop(build["id"], "not needed")

    # Then the interrupt reaches the worker once it has reconnected, and the build ends
    (done,) = finished_builds(master.client, 1, timeout=30)
    assert done["result"] == "CANCELLED"
    assert "resuming" in master.log() and proxy.accepted >= 2
