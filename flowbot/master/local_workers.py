"""Worker processes a master starts on its own host: for notebooks, demos and tests.

They are real ``flowbot-worker`` processes that dial the master like any other; they stop with
the master, and (``--exit-with-parent``) on their own when the process that started them is gone,
so a killed notebook kernel leaves none behind. Each runs in a session of its own: Jupyter
interrupts a cell by signalling the kernel's whole process group, which must not stop them.
On an encrypted link each gets a CURVE key pair the master makes for it (kept beside its log),
which the registry admits as that worker's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flowbot_worker.curve import create_key, load_key_pair
from flowbot_worker.errors import KeyFileError
from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command

from ..errors import FlowbotError

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from .registry import WorkerRegistry

log = logging.getLogger(__name__)


class LocalWorkers:
    """The master's own worker processes, by worker name.

    Args:
        pipeline: the pipeline running now (the workers it declares).
        workdir: the master's directory, where each worker gets one of its own.
        endpoint: where a worker on this host dials the master.
        registry: the connected workers, and the master's CURVE keys.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        workdir: Callable[[], Path],
        endpoint: Callable[[], str],
        registry: WorkerRegistry,
    ):
        self._pipeline = pipeline
        self._workdir = workdir
        self._endpoint = endpoint
        self._registry = registry
        self.processes: dict[str, subprocess.Popen] = {}
        # Killed when the interpreter exits, or when the master is dropped unstopped; the finalizer
        # holds the processes, not the master, so a notebook's old masters can be collected.
        weakref.finalize(self, _kill_all, self.processes)

    async def start(self, names: list[str] | None = None, *, timeout: float = 30.0) -> list[str]:
        """Start a process for each named worker (by default every declared one that no launcher
        starts) and wait until they are connected.

        Raises:
            FlowbotError: a name the pipeline does not declare, or a worker that did not connect.
        """
        declared = {w.name: w for w in self._pipeline().workers}
        names = [n for n, w in declared.items() if w.launcher is None] if names is None else names
        unknown = [n for n in names if n not in declared]
        if unknown:
            raise FlowbotError(f"the pipeline declares no worker named {unknown}")
        root = self._workdir() / "workers"
        for name in names:
            if name in self.processes and self.processes[name].poll() is None:
                continue
            basedir = root / name
            basedir.mkdir(parents=True, exist_ok=True)
            with open(root / f"{name}.log", "ab") as output:
                options = ("--exit-with-parent", *self._curve_options(name, root))
                self.processes[name] = subprocess.Popen(
                    worker_command(self._endpoint(), name, basedir, *options),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, SECRET_VARIABLE: declared[name].secret},
                )
        deadline = time.monotonic() + timeout
        while not all(n in self._registry.connections for n in names):
            dead = [n for n in names if self.processes[n].poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"exited ({', '.join(dead)})" if dead else f"did not connect within {timeout:g} s"
                raise FlowbotError(f"local workers {why}; their logs are in {root}")
            await asyncio.sleep(0.05)
        return names

    def _curve_options(self, name: str, root: Path) -> list[str]:
        """The worker's key options on an encrypted link (none on a plain one)."""
        master = self._registry.curve
        if master is None:
            return []
        secret = root / f"{name}.key_secret"
        try:
            if not secret.exists():
                create_key(root, name)
            own = load_key_pair(secret)
        except KeyFileError as exc:
            raise FlowbotError(f"cannot make a CURVE key for local worker {name}: {exc}") from None
        self._registry.local_keys[name] = own.public
        return ["--master-key", master.public, "--key-file", str(secret)]

    async def stop(self, grace: float = 10.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                log.warning("local worker %s did not stop within %g s; killing it", name, grace)
                process.kill()
                await asyncio.to_thread(process.wait)
        self.processes.clear()


def _kill_all(processes: dict[str, subprocess.Popen]) -> None:
    """Take down whatever still runs of ``processes``."""
    for process in processes.values():
        if process.poll() is None:
            process.kill()
