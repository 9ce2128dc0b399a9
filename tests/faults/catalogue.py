"""The faults tried on a running master, each injected at a random moment while builds run."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from ..support import wait_for
from .rig import Rig
from .trial import Fault, Resources


def _mid_build(rig: Rig, rng: random.Random) -> str:
    """Wait until a ``work`` build runs, then a random while longer (up to a step's length); returns
    the worker of a build running then."""
    worker = wait_for(rig.running_worker, 60, "a build to run")
    time.sleep(rng.uniform(0.0, 1.0))
    return rig.running_worker() or worker


class WorkerKill(Fault):
    """A worker killed (SIGKILL) mid-build, and started again at once, as a supervisor does."""

    name = "worker SIGKILL"

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> float:
        worker = _mid_build(rig, rng)
        rig.kill_worker(worker)
        killed = time.monotonic()
        rig.start_worker(worker)
        return killed


class WorkerStop(Fault):
    """A worker frozen (SIGSTOP) mid-build for longer than the liveness window, then let go (SIGCONT)."""

    name = "worker SIGSTOP past the window"

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> None:
        worker = _mid_build(rig, rng)
        rig.signal_worker(worker, signal.SIGSTOP)
        time.sleep(rig.window + 1.0)
        rig.signal_worker(worker, signal.SIGCONT)


class Blip(Fault):
    """The network between the workers and the master drops every packet for a while (the loopback proxy
    holds every byte), shorter or longer than the liveness window."""

    proxied = True

    def __init__(self, windows: float):
        self.windows = windows
        self.name = f"network blip, {windows:g} x the window"

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> None:
        _mid_build(rig, rng)
        rig.proxy.pause()
        time.sleep(self.windows * rig.window)
        rig.proxy.resume()


class MasterKill(Fault):
    """The master killed (SIGKILL) at a random moment under load, and started again on the same
    directory, ports and database; its heartbeat leaves workers time to come back within the resume
    window, so the builds they were running are taken up."""

    name = "master SIGKILL"
    databases = ("sqlite", "postgresql")
    heartbeat = 2.0

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> float:
        _mid_build(rig, rng)
        rig.kill_master()
        killed = time.monotonic()
        rig.restart_master()
        return killed


class PostgresOutage(Fault):
    """The PostgreSQL server stopped mid-build, and started again after ``seconds``."""

    databases = ("postgresql",)

    def __init__(self, name: str, seconds: float):
        self.name = name
        self.seconds = seconds

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> None:
        _mid_build(rig, rng)
        resources.postgres.stop()
        time.sleep(self.seconds)
        resources.postgres.start()


class FullDisk(Fault):
    """The filesystem of the master's SQLite database (a small tmpfs) full for a few seconds mid-build."""

    name = "SQLite on a full filesystem"
    #: The filesystem's size, and how long it stays full.
    size = 24 * 1024 * 1024
    seconds = 3.0

    def database(self, kind: str, root: Path, resources: Resources) -> str | None:
        self._disk = resources.mount(self.size)
        return f"sqlite:///{self._disk.path / 'state.sqlite'}"

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> None:
        _mid_build(rig, rng)
        self._disk.fill()
        time.sleep(self.seconds)
        self._disk.free()


#: Every fault, by the name the benchmark takes.
FAULTS: dict[str, Fault] = {
    "worker-kill": WorkerKill(),
    "worker-stop": WorkerStop(),
    "blip-short": Blip(0.5),
    "blip-long": Blip(1.5),
    "master-kill": MasterKill(),
    "postgres-restart": PostgresOutage("PostgreSQL restart", 0.0),
    "postgres-stop": PostgresOutage("PostgreSQL stopped for 5 s", 5.0),
    "full-disk": FullDisk(),
}
