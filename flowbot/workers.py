"""Declaring the workers a pipeline may use: ones that run by themselves, and ones started on demand.

A worker with a ``launcher`` is started when a build needs it and removed when its work is done:
``LocalWorker`` (a process on the master's host), ``DockerWorker`` (a container), ``KubernetesWorker``
(a pod), or ``Worker(..., launcher=...)`` with a launcher of your own (see :mod:`flowbot.launchers`).
Builders name them like any worker; each of their instances connects as ``<name>-<n>``.
"""

from __future__ import annotations

import sys
from typing import Any

from .defaults import INSTANCE_IDLE_TIMEOUT, INSTANCE_START_TIMEOUT
from .fields import FLAG, NAME, PROPERTIES, TEXT, checked, optional, refuse, whole
from .launchers.base import NAME_PATTERN, Launcher
from .location import caller


class Worker:
    """A worker the master accepts: its name and the secret it signs messages with.

    Args:
        name: the name the worker process connects with (``flowbot-worker --name``).
        secret: the shared secret; every message on the link is signed with it (a worker started
            by a launcher gets a credential of its own for each start instead). Required otherwise:
            without one, anyone who reaches the worker port could connect as this worker and be sent
            its builds, with the secrets they use.
        max_builds: how many builds the worker runs at once (None: one per builder, no other limit).
        properties: properties every build on this worker gets.
        public_key: the worker's CURVE public key (``flowbot-worker create-key`` prints it), for a
            pipeline with a ``curve_key``: only a worker holding its secret half connects as this one.
        launcher: starts instances of this worker when builds wait for it (None: the worker runs by
            itself and dials in).
        max_instances: how many instances run at once, each taking builds of its own.
        start_timeout: seconds an instance has to start and connect; then the start fails, the
            instance is removed, and the request waits for another (or goes to another worker).
        idle_timeout: seconds a connected instance may go without a build before it is removed;
            0: each instance runs one build and goes; negative: it stays until the master stops.
        master_endpoint: where instances dial the master (default: the master's worker endpoint,
            a wildcard address read as 127.0.0.1).
        insecure: accept this worker with no secret, on an unauthenticated link (a throwaway local
            setup); checkconfig and the master say so each time they load the pipeline.

    Raises:
        ConfigError: an argument of the wrong kind, or no secret (without a launcher or ``insecure=True``).
    """

    @checked(
        name=NAME,
        secret=TEXT,
        max_builds=optional(whole(minimum=1)),
        properties=PROPERTIES,
        public_key=optional(TEXT),
        insecure=FLAG,
    )
    def __init__(
        self,
        name: str,
        secret: str = "",
        *,
        max_builds: int | None = None,
        properties: dict | None = None,
        public_key: str | None = None,
        launcher: Launcher | None = None,
        max_instances: int = 1,
        start_timeout: float = INSTANCE_START_TIMEOUT,
        idle_timeout: float = INSTANCE_IDLE_TIMEOUT,
        master_endpoint: str | None = None,
        insecure: bool = False,
    ):
        self.name = name
        self.secret = secret
        self.public_key = public_key
        self.max_builds = max_builds
        self.properties = dict(properties or {})
        self.launcher = launcher
        self.max_instances = max_instances
        self.start_timeout = start_timeout
        self.idle_timeout = idle_timeout
        self.master_endpoint = master_endpoint
        self.insecure = insecure
        if not secret and not insecure and launcher is None:
            raise refuse(
                self,
                "secret",
                "has no secret, so anyone who reaches the worker port could connect as it; give it "
                "secret=... (or insecure=True to accept it on an unauthenticated link)",
            )
        if secret and insecure:
            raise refuse(self, "insecure", "has a secret and insecure=True; drop insecure=True to use the secret")

    @property
    def warning(self) -> str | None:
        """What is unsafe about this worker, if anything."""
        if self.insecure:
            return (
                f"worker {self.name!r} has no secret (insecure=True): anyone who reaches the worker port "
                "may connect as it"
            )
        return None

    def instance_name(self, slot: int) -> str:
        """The name instance number ``slot`` (from 1) connects with."""
        return f"{self.name}-{slot}"

    def problems(self) -> list[str]:
        """What is wrong with the launcher settings, each a sentence (none for a worker without one)."""
        if self.launcher is None:
            return []
        found = []
        if not isinstance(self.launcher, Launcher):
            return [f"launcher must be a flowbot.Launcher; got {self.launcher!r}"]
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            found.append(
                "a worker with a launcher needs a name of letters, digits, '-', '_' and '.', at most 40, "
                "starting and ending with a letter or digit (it goes into container and pod names)"
            )
        if type(self.max_instances) is not int or self.max_instances < 1:
            found.append(f"max_instances must be a whole number of at least 1; got {self.max_instances!r}")
        for option in ("start_timeout", "idle_timeout"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int | float):
                found.append(f"{option} must be a number of seconds; got {value!r}")
        if isinstance(self.start_timeout, int | float) and self.start_timeout <= 0:
            found.append(f"start_timeout must be above 0; got {self.start_timeout!r}")
        if self.master_endpoint is not None and not (
            isinstance(self.master_endpoint, str) and self.master_endpoint.startswith(("tcp://", "ipc://"))
        ):
            found.append(
                f"master_endpoint must be a ZeroMQ endpoint like tcp://host:9989; got {self.master_endpoint!r}"
            )
        return found + self.launcher.problems()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class LocalWorker(Worker):
    """A worker started on demand as a process on the master's host, in a fresh directory.

    Args:
        python: the interpreter that runs ``flowbot_worker`` (default: the master's).
        environment: more variables for the worker's environment.
        **options: as for :class:`Worker` (``max_instances``, ``idle_timeout``, ...).
    """

    def __init__(
        self, name: str, *, python: str = sys.executable, environment: dict[str, str] | None = None, **options: Any
    ):
        from .launchers.local import LocalLauncher

        super().__init__(name, launcher=LocalLauncher(python=python, environment=environment), **options)
        self.defined_at = caller()


class DockerWorker(Worker):
    """A worker started on demand in a Docker container, through the Docker Engine API.

    The image must hold Python 3.11+ with the ``flowbot-worker`` package (``worker/Dockerfile``
    makes one); the container runs ``python3 -m flowbot_worker`` unless ``command`` says otherwise.

    Args:
        image: the image to run.
        command: what runs the worker (default: ``["python3", "-m", "flowbot_worker"]``); the
            worker's options (``--master``, ``--name``, ``--basedir``) are added after it.
        environment: more variables for the container.
        volumes: ``{"host path or volume": "container path[:ro]"}``.
        network: the network mode (``"host"`` keeps the worker on the master's loopback), or a network name.
        cpus: CPUs the container may use (1.5: one and a half).
        memory: bytes of memory the container may use (or ``"2g"``, ``"512m"``).
        pull: pull the image before each start (else it must be on the Docker host already).
        docker_host: the Docker daemon's URL (default: ``DOCKER_HOST``, else the local socket).
        basedir: where builds run inside the container.
        **options: as for :class:`Worker` (``max_instances``, ``idle_timeout``, ...).
    """

    def __init__(
        self,
        name: str,
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
        **options: Any,
    ):
        from .launchers.docker import DockerLauncher

        launcher = DockerLauncher(
            image=image,
            command=command,
            environment=environment,
            volumes=volumes,
            network=network,
            cpus=cpus,
            memory=memory,
            pull=pull,
            docker_host=docker_host,
            basedir=basedir,
        )
        super().__init__(name, launcher=launcher, **options)
        self.defined_at = caller()


class KubernetesWorker(Worker):
    """A worker started on demand in a Kubernetes pod.

    Args:
        namespace: where the pods go.
        image: the image of the worker's container (as for :class:`DockerWorker`).
        pod_template: a pod manifest (a dict, as in YAML) to start from: its first container runs
            the worker; labels, names and the worker's command and environment are filled in.
        kubeconfig: the kubeconfig file (default: in-cluster configuration when the master runs in
            a pod, else ``KUBECONFIG`` or ``~/.kube/config``).
        context: the kubeconfig context to use (default: its current one).
        environment: more variables for the worker's container.
        basedir: where builds run inside the container.
        command: what runs the worker (default: ``["python3", "-m", "flowbot_worker"]``); the
            worker's options follow it.
        **options: as for :class:`Worker` (``max_instances``, ``idle_timeout``, ...).
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: str = "default",
        image: str | None = None,
        pod_template: dict | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        environment: dict[str, str] | None = None,
        basedir: str = "/build",
        command: list[str] | None = None,
        **options: Any,
    ):
        from .launchers.kubernetes import KubernetesLauncher

        launcher = KubernetesLauncher(
            namespace=namespace,
            image=image,
            pod_template=pod_template,
            kubeconfig=kubeconfig,
            context=context,
            environment=environment,
            basedir=basedir,
            command=command,
        )
        super().__init__(name, launcher=launcher, **options)
        self.defined_at = caller()
