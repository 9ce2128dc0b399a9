"""The launcher interface: how a master starts, checks, stops and finds the workers it runs on demand.

A :class:`Launcher` knows one kind of place to run a worker (a local process, a Docker container, a
Kubernetes pod). The master decides when an instance starts and stops (see
:mod:`flowbot.master.latent`); the launcher only does it, asynchronously, and says what is there.
Every instance it starts carries labels naming the master and the worker, so a master that starts
again, even after SIGKILL, finds the instances it left behind and removes them.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field

from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command

#: Labels every instance carries: the master that started it, its worker definition, its own name.
MASTER_LABEL = "flowbot-master"
WORKER_LABEL = "flowbot-worker"
INSTANCE_LABEL = "flowbot-instance"
#: And the start's nonce: with the master's key, it gives the instance's credential again after a restart.
START_LABEL = "flowbot-start"

#: What a worker definition with a launcher may be called: its instances' names go into labels,
#: container and pod names, which allow little else.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,38}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Instance:
    """One started (or wanted) worker instance.

    Attributes:
        name: the name the worker connects with, ``<worker>-<slot>`` (``docker1-2``).
        worker: the worker definition it is an instance of.
        master: the id of the master that owns it (see :attr:`flowbot.master.Master.instance_id`).
        start: a nonce of the start that made it (not a secret).
    """

    name: str
    worker: str
    master: str
    start: str = ""

    @property
    def labels(self) -> dict[str, str]:
        labels = {MASTER_LABEL: self.master, WORKER_LABEL: self.worker, INSTANCE_LABEL: self.name}
        return {**labels, START_LABEL: self.start} if self.start else labels

    @property
    def resource_name(self) -> str:
        """A deterministic name for the container or pod: DNS-safe, unique per master and instance,
        so a create that is retried cannot make a second one and a stop needs no lookup."""
        return f"flowbot-{self.name.lower().replace('_', '-').replace('.', '-')}-{self.master[:8]}"

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Instance | None:
        """The instance that ``labels`` describe, or None when they are not a flowbot instance's."""
        try:
            return cls(labels[INSTANCE_LABEL], labels[WORKER_LABEL], labels[MASTER_LABEL], labels.get(START_LABEL, ""))
        except KeyError:
            return None


@dataclass(frozen=True)
class Dial:
    """What a started worker needs to reach the master: where, as whom, and its credential.

    Attributes:
        endpoint: the master's ZeroMQ endpoint as the instance sees it.
        name: the instance's name.
        secret: the credential the worker signs its messages with.
        environment: more variables for the worker's environment (CURVE keys, say).
    """

    endpoint: str
    name: str
    secret: str = field(repr=False)
    environment: dict[str, str] = field(default_factory=dict, repr=False)

    def argv(self, command: list[str], basedir: str) -> list[str]:
        """``command`` (what runs the worker) with the worker's options; the secret is not among
        them (see :meth:`env`), so it shows in no process list."""
        return worker_command(self.endpoint, self.name, basedir, program=command)

    def env(self) -> dict[str, str]:
        """The environment the worker reads its credential from."""
        return {SECRET_VARIABLE: self.secret, **self.environment}


class Launcher:
    """Starts worker instances somewhere; subclass it and implement the four methods.

    Every method is a coroutine run in the master's event loop, so none may block it (run a
    blocking client in the master's executor). The master bounds each call with a timeout and
    cancels it when the instance is no longer wanted: :meth:`stop` must then still remove whatever
    :meth:`start` had made, which the instance's deterministic :attr:`Instance.resource_name`
    allows without knowing what came back from the start.
    """

    #: What the instances are, for people: ``"docker container"``, ``"kubernetes pod"``.
    kind = "instance"

    async def start(self, instance: Instance, dial: Dial) -> None:
        """Start ``instance`` running the worker ``dial`` describes, labelled with ``instance.labels``;
        return once it runs (the master then waits for the worker to connect).

        Raises:
            Exception: the instance could not be started; the message says why.
        """
        raise NotImplementedError

    async def alive(self, instance: Instance) -> bool:
        """Whether ``instance`` still runs (False once it has exited or is gone)."""
        raise NotImplementedError

    async def stop(self, instance: Instance) -> None:
        """Stop and remove ``instance``; nothing left of it afterwards. Removing one that is
        already gone is no error."""
        raise NotImplementedError

    async def instances(self, master: str) -> list[Instance]:
        """Every instance labelled as started by ``master`` that is still there, running or not."""
        raise NotImplementedError

    @property
    def scope(self) -> Hashable:
        """Launchers of equal scope list the same instances (one Docker daemon, one namespace of a
        cluster); the sweep asks one of them."""
        return id(self)

    async def logs(self, instance: Instance) -> str:
        """The last lines ``instance`` printed, to say why a start failed ("" when not known)."""
        return ""

    async def close(self) -> None:
        """Release the launcher's clients (at the master's stop)."""

    def problems(self) -> list[str]:
        """What is wrong with the launcher's settings, for checkconfig (nothing by default)."""
        return []
