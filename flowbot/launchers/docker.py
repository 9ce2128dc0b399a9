"""Instances as Docker containers (``DockerWorker``), through the Docker Engine API.

The client is aiodocker: it speaks the Engine API on the master's own event loop (aiohttp over the
daemon's socket), so a slow daemon never holds a thread, every call can be cancelled and bounded by
the master's timeouts, and there is no executor to size. It is the ``flowbot[docker]`` extra, loaded
on the first start: a master without Docker workers never imports it.

Each container is named deterministically after its instance (see :attr:`Instance.resource_name`):
a start replaces a leftover of the same name, and a stop needs nothing but the name, so a start
cancelled half way (the container created, not yet started) is removed all the same.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Hashable
from typing import Any

from flowbot_worker.launch import program

from ..errors import LaunchError
from .base import INSTANCE_LABEL, MASTER_LABEL, Dial, Instance, Launcher

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

#: What runs the worker when the worker definition gives no command.
DEFAULT_COMMAND = program("python3")


def memory_bytes(value: int | str) -> int:
    """``value`` in bytes: an int, or a text like ``"512m"`` or ``"2g"``.

    Raises:
        ValueError: neither.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _MEMORY.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"memory must be a number of bytes or a size like '512m' or '2g'; got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class DockerLauncher(Launcher):
    """Starts worker containers on a Docker daemon (see :class:`flowbot.DockerWorker` for the settings)."""

    kind = "docker container"

    def __init__(
        self,
        *,
        image: str,
        command: list[str] | None = None,
        environment: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
        network: str | None = None,
        cpus: float | None = None,
        memory: int | str | None = None,
        pull: bool = False,
        docker_host: str | None = None,
        basedir: str = "/build",
    ):
        self.image = image
        self.command = list(command) if command is not None else DEFAULT_COMMAND
        self.environment = dict(environment or {})
        self.volumes = dict(volumes or {})
        self.network = network
        self.cpus = cpus
        self.memory = memory
        self.pull = pull
        self.docker_host = docker_host
        self.basedir = basedir
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def scope(self) -> Hashable:
        return ("docker", self.docker_host)

    def problems(self) -> list[str]:
        found = []
        if not isinstance(self.image, str) or not self.image:
            found.append(f"image must be the name of an image; got {self.image!r}")
        if not all(isinstance(a, str) for a in self.command) or not self.command:
            found.append(f"command must be a list of strings; got {self.command!r}")
        if self.memory is not None:
            try:
                memory_bytes(self.memory)
            except ValueError as exc:
                found.append(str(exc))
        if self.cpus is not None and (isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float)):
            found.append(f"cpus must be a number; got {self.cpus!r}")
        if importlib.util.find_spec("aiodocker") is None:
            found.append("DockerWorker needs the aiodocker package: pip install 'flowbot[docker]'")
        return found

    def _docker(self) -> Any:
        """The client, made on first use in the running loop (a pipeline may outlive a master's loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import aiodocker

            self._client = aiodocker.Docker(url=self.docker_host)
            self._loop = loop
        return self._client

    def config(self, instance: Instance, dial: Dial) -> dict[str, Any]:
        """The container's configuration, as the Engine API's ``create`` takes it."""
        host: dict[str, Any] = {"Binds": [f"{source}:{target}" for source, target in self.volumes.items()]}
        if self.network is not None:
            host["NetworkMode"] = self.network
        if self.cpus is not None:
            host["NanoCpus"] = int(self.cpus * 1e9)
        if self.memory is not None:
            host["Memory"] = memory_bytes(self.memory)
        env = {**self.environment, **dial.env()}
        return {
            "Image": self.image,
            "Cmd": dial.argv(self.command, self.basedir),
            "Env": [f"{name}={value}" for name, value in env.items()],
            "Labels": instance.labels,
            "HostConfig": host,
        }

    async def start(self, instance: Instance, dial: Dial) -> None:
        import aiodocker

        docker = self._docker()
        try:
            if self.pull:
                await docker.images.pull(self.image)
            await self.stop(instance)  # a leftover of the same name (a stop that failed, say)
            container = await docker.containers.create(self.config(instance, dial), name=instance.resource_name)
            await container.start()
        except aiodocker.DockerError as exc:
            if exc.status == 404 and not self.pull:
                raise LaunchError(
                    f"image {self.image!r} is not on the Docker host: build or pull it there, or give pull=True"
                ) from None
            raise LaunchError(f"Docker refused to start the container: {exc.message}") from None

    async def alive(self, instance: Instance) -> bool:
        import aiodocker

        try:
            container = await self._docker().containers.get(instance.resource_name)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return bool(container["State"]["Running"])

    async def stop(self, instance: Instance) -> None:
        import aiodocker

        # The worker has been told to go, and its builds are over: nothing in it needs a grace period.
        try:
            await self._docker().containers.container(instance.resource_name).delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise

    async def instances(self, master: str) -> list[Instance]:
        containers = await self._docker().containers.list(
            all=True, filters={"label": [f"{MASTER_LABEL}={master}", INSTANCE_LABEL]}
        )
        found = (Instance.from_labels(c._container.get("Labels") or {}) for c in containers)
        return [i for i in found if i is not None]

    async def logs(self, instance: Instance) -> str:
        lines = await self._docker().containers.container(instance.resource_name).log(stdout=True, stderr=True, tail=20)
        return "".join(lines)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()
