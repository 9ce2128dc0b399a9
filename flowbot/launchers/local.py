"""Instances as processes on the master's host (``LocalWorker``): for notebooks, tests and small setups.

Each instance is a ``flowbot-worker`` process in a directory of its own, removed with it. A process
cannot carry labels, so the launcher writes them beside it (``<resource name>.json`` with its pid);
the processes also exit with the master that started them (``--exit-with-parent``), so a killed
master leaves at worst their directories, which the next start removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Hashable
from pathlib import Path

from flowbot_worker.launch import program

from ..defaults import STOP_GRACE
from ..errors import LaunchError
from .base import Dial, Instance, Launcher


class LocalLauncher(Launcher):
    """Starts worker processes on this host.

    Args:
        python: the interpreter that runs ``flowbot_worker``.
        environment: more variables for the workers' environment.
        directory: where instances' directories and records go (default: a directory per master
            under the system's temporary directory).
    """

    kind = "local process"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        environment: dict[str, str] | None = None,
        directory: str | Path | None = None,
    ):
        self.python = python
        self.environment = dict(environment or {})
        self.directory = Path(directory) if directory is not None else None
        self._processes: dict[str, subprocess.Popen] = {}

    @property
    def scope(self) -> Hashable:
        return ("local", self.directory)

    def _root(self, master: str) -> Path:
        return self.directory or Path(tempfile.gettempdir()) / f"flowbot-instances-{master}"

    async def start(self, instance: Instance, dial: Dial) -> None:
        root = self._root(instance.master)
        await self.stop(instance)  # whatever an earlier instance of that name left
        basedir = root / instance.resource_name
        basedir.mkdir(parents=True)
        try:
            with open(root / f"{instance.resource_name}.log", "wb") as output:
                process = subprocess.Popen(
                    [*dial.argv(program(self.python), str(basedir)), "--exit-with-parent"],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **self.environment, **dial.env()},
                )
        except OSError as exc:
            raise LaunchError(f"cannot run {self.python}: {exc}") from None
        self._processes[instance.name] = process
        record = {"pid": process.pid, "labels": instance.labels}
        (root / f"{instance.resource_name}.json").write_text(json.dumps(record))

    async def alive(self, instance: Instance) -> bool:
        process = self._processes.get(instance.name)
        if process is not None:
            return process.poll() is None
        return _pid(self._record(instance)) is not None

    async def stop(self, instance: Instance) -> None:
        process = self._processes.pop(instance.name, None)
        if process is not None:
            await _end(process.pid, process.poll)
        else:
            pid = _pid(self._record(instance))
            if pid is not None:
                await _end(pid, lambda: None if _running(pid) else 0)
        root = self._root(instance.master)
        shutil.rmtree(root / instance.resource_name, ignore_errors=True)
        for suffix in (".json", ".log"):
            (root / f"{instance.resource_name}{suffix}").unlink(missing_ok=True)
        if self.directory is None:
            with contextlib.suppress(OSError):
                root.rmdir()  # the last instance of this master here: leave no empty directory

    async def instances(self, master: str) -> list[Instance]:
        root = self._root(master)
        found = []
        for path in sorted(root.glob("*.json")) if root.is_dir() else ():
            try:
                instance = Instance.from_labels(json.loads(path.read_text())["labels"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if instance is not None and instance.master == master:
                found.append(instance)
        return found

    async def logs(self, instance: Instance) -> str:
        path = self._root(instance.master) / f"{instance.resource_name}.log"
        try:
            return path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _record(self, instance: Instance) -> dict:
        try:
            return json.loads((self._root(instance.master) / f"{instance.resource_name}.json").read_text())
        except (OSError, ValueError):
            return {}


def _pid(record: dict) -> int | None:
    """The recorded process, if it still runs this instance (a pid may have been reused since)."""
    pid = record.get("pid")
    name = record.get("labels", {}).get("flowbot-instance")
    if not isinstance(pid, int) or not _running(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if name is not None and name.encode() in cmdline else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _end(pid: int, poll) -> None:
    """SIGTERM, then SIGKILL after the grace period; wait until the process is gone."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        if poll() is not None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(int(wait / 0.05)):
            if poll() is not None:
                return
            await asyncio.sleep(0.05)
    raise LaunchError(f"process {pid} did not exit after SIGKILL")
