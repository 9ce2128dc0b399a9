"""Workers on demand in Docker containers: how long a build waits for its container, and whether
anything leaks when a master is killed in the middle.

A real master (``flowbot start``) with one ``DockerWorker`` on the host's network, running the worker
image the tests build (``tests/docker_image.py``: debootstrap, no registry), and

- **request to running**: K builds one after another, each on a new container, timed from the
  request's submission to its build's start (both as the master records them): a container is
  created, started, its worker connects, and the build is given to it;
- **50 builds**: N builds asked for at once through a worker with ``max_instances=4`` and
  ``idle_timeout=0`` (a container per build): all must succeed, and no container is left after;
- **SIGKILL in the middle**: the same N builds again, each ``sleep 5``, the master killed with SIGKILL
  in the middle of a build once a third of them have finished, then started again: the builds
  running in containers are taken up when their workers come back, every request must end in a
  successful build, and no container must be left at the end.

    python benchmarks/instances.py            # -k 20 -n 50 -i 4
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowbot.client import Client, MasterUnreachable  # noqa: E402
from tests.docker_image import docker_problem, worker_image  # noqa: E402
from tests.support import free_port  # noqa: E402

PIPELINE = """\
from flowbot import Builder, DockerWorker, ForceScheduler, Pipeline, Shell

pipeline = Pipeline(
    workers=[DockerWorker("docker", image={image!r}, network="host", max_instances={instances}, idle_timeout=0)],
    schedulers=[ForceScheduler("force", builders=["unit"])],
    builders=[Builder("unit", workers=["docker"], collapse_requests=False, steps=[Shell("{command}")])],
)
"""


class Master:
    """``flowbot start`` on a directory, on free loopback ports."""

    def __init__(self, basedir: Path, http: int, zmq: int):
        self.basedir = basedir
        self.log = open(basedir.parent / "master.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowbot",
                "start",
                str(basedir),
                "--http",
                f"127.0.0.1:{http}",
                "--zmq",
                f"tcp://127.0.0.1:{zmq}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = Client(f"http://127.0.0.1:{http}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.id = self.client.request("GET", "/api/instances")["master"]
                break
            except MasterUnreachable:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the master did not start; see {self.log.name}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()


def containers(master_id: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=flowbot-master={master_id}"], capture_output=True, text=True
    )
    return done.stdout.split()


def wait(what: str, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def finished(client: Client) -> list[dict]:
    return [b for b in client.builds(limit=1000) if b["result"] is not None]


def pending(client: Client) -> int:
    return len(client.buildrequests(pending=True))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def master_dir(scratch: Path, name: str, image: str, instances: int, command: str = "true") -> Path:
    basedir = scratch / name
    basedir.mkdir()
    text = PIPELINE.format(image=image, instances=instances, command=command)
    (basedir / "pipeline.py").write_text(textwrap.dedent(text))
    return basedir


def latency(scratch: Path, image: str, count: int) -> list[float]:
    """Seconds from each request to its build running, one request at a time."""
    master = Master(master_dir(scratch, "latency", image, 1), free_port(), free_port())
    try:
        for n in range(1, count + 1):
            master.client.force("unit")
            wait("the build to finish", lambda n=n: len(finished(master.client)) == n, 120)
            wait("the container to go", lambda: not containers(master.id), 60)
        builds = finished(master.client)
        assert all(b["result"] == "SUCCESS" for b in builds), builds
        return [b["started_at"] - b["submitted_at"] for b in builds]
    finally:
        master.stop()


def burst(scratch: Path, image: str, count: int, instances: int) -> tuple[float, int, int]:
    """Seconds for ``count`` builds asked for at once; how many succeeded; containers left after."""
    master = Master(master_dir(scratch, "burst", image, instances), free_port(), free_port())
    try:
        started = time.monotonic()
        for _ in range(count):
            master.client.force("unit")
        wait("every build", lambda: len(finished(master.client)) == count, 60 + 10 * count)
        elapsed = time.monotonic() - started
        ok = sum(b["result"] == "SUCCESS" for b in finished(master.client))
        wait("the containers to go", lambda: not master.client.instances(), 120)
        return elapsed, ok, len(containers(master.id))
    finally:
        master.stop()


def killed(scratch: Path, image: str, count: int, instances: int) -> dict[str, int]:
    """The burst with the master SIGKILLed once a third of the builds are done, then started again."""
    basedir = master_dir(scratch, "killed", image, instances, "sleep 5")
    http, zmq = free_port(), free_port()
    master = Master(basedir, http, zmq)
    for _ in range(count):
        master.client.force("unit")
    wait("a third of the builds", lambda: len(finished(master.client)) >= count // 3, 60 + 10 * count)
    time.sleep(2.5)  # builds start about together: this is the middle of the next ones
    master.kill()
    killed_at = time.time()
    left = containers(master.id)
    again = Master(basedir, http, zmq)
    try:
        wait("every request", lambda: pending(again.client) == 0 and not again.client.instances(), 60 + 10 * count)
        requests = again.client.buildrequests(pending=False)
        builds = finished(again.client)
        leaked = [c for c in left if subprocess.run(["docker", "inspect", c], capture_output=True).returncode == 0]
        return {
            "requests": len(requests),
            "requests succeeded": sum(r["result"] in (0, "SUCCESS") for r in requests),
            "builds": len(builds),
            "retried (RETRY)": sum(b["result"] == "RETRY" for b in builds),
            "taken up and finished in their containers": sum(
                b["result"] == "SUCCESS" and b["started_at"] < killed_at < b["finished_at"] for b in builds
            ),
            "containers at the kill": len(left),
            "of those still there at the end": len(leaked),
            "containers left at the end": len(containers(again.id)),
        }
    finally:
        again.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=20, help="builds one at a time, for the latency")
    parser.add_argument("-n", type=int, default=50, help="builds at once")
    parser.add_argument("-i", type=int, default=4, help="max_instances")
    args = parser.parse_args()
    if problem := docker_problem():
        raise SystemExit(problem)
    image = worker_image()
    print(f"image {image}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="flowbot-bench-") as scratch:
        times = latency(Path(scratch), image, args.k)
        print(
            f"request to running on a new container (K={args.k}): p50 {statistics.median(times) * 1000:.0f} ms, "
            f"p95 {percentile(times, 0.95) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
        )
        elapsed, ok, left = burst(Path(scratch), image, args.n, args.i)
        print(
            f"{args.n} builds, max_instances={args.i}, idle_timeout=0: {ok} succeeded in {elapsed:.1f} s "
            f"({args.n / elapsed:.2f} builds/s); containers left: {left}"
        )
        for name, value in killed(Path(scratch), image, args.n, args.i).items():
            print(f"SIGKILL in the middle: {name}: {value}")


if __name__ == "__main__":
    main()
