"""Instances as Kubernetes pods (``KubernetesWorker``).

The client is kubernetes_asyncio: the official client's generated API and models on asyncio, with
its kubeconfig and in-cluster loading, on the same HTTP stack (aiohttp) as the Docker launcher's
client. It is the ``flowbot[kubernetes]`` extra, loaded on the first start.

Each pod is named deterministically after its instance and labelled with the master, the worker and
the instance, so a create that is retried finds its pod (409) instead of making a second one, and a
stop or a sweep needs no bookkeeping. A start creates the pod and watches it until it runs; a pod
that cannot pull its image fails the start at once, one that stays pending is removed at the
worker's ``start_timeout``.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
from collections.abc import Hashable
from typing import Any

from ..errors import LaunchError
from .base import MASTER_LABEL, Dial, Instance, Launcher
from .docker import DEFAULT_COMMAND

#: Container states in which a pod will not run without someone's help: its start fails at once.
_HOPELESS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff"}

#: Seconds between checks that a deleted pod is gone.
_GONE_POLL = 0.25


class KubernetesLauncher(Launcher):
    """Starts worker pods in a namespace (see :class:`flowbot.KubernetesWorker` for the settings)."""

    kind = "kubernetes pod"

    def __init__(
        self,
        *,
        namespace: str = "default",
        image: str | None = None,
        pod_template: dict | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        environment: dict[str, str] | None = None,
        basedir: str = "/build",
        command: list[str] | None = None,
    ):
        self.namespace = namespace
        self.image = image
        self.pod_template = pod_template or {}
        self.kubeconfig = kubeconfig
        self.context = context
        self.environment = dict(environment or {})
        self.basedir = basedir
        self.command = list(command) if command is not None else DEFAULT_COMMAND
        self._api: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def scope(self) -> Hashable:
        return ("kubernetes", self.kubeconfig, self.context, self.namespace)

    def problems(self) -> list[str]:
        found = []
        if not isinstance(self.namespace, str) or not self.namespace:
            found.append(f"namespace must be a namespace's name; got {self.namespace!r}")
        if not isinstance(self.pod_template, dict):
            found.append(f"pod_template must be a pod manifest (a dict); got {self.pod_template!r}")
        elif self.image is None and not self._template_container().get("image"):
            found.append("give an image, or a pod_template whose first container has one")
        if importlib.util.find_spec("kubernetes_asyncio") is None:
            found.append("KubernetesWorker needs the kubernetes_asyncio package: pip install 'flowbot[kubernetes]'")
        return found

    def _template_container(self) -> dict:
        containers = self.pod_template.get("spec", {}).get("containers") or [{}]
        return containers[0]

    async def _core(self) -> Any:
        """The CoreV1 API, configured on first use in the running loop: in-cluster when the master
        runs in a pod and no kubeconfig is given, else from the kubeconfig."""
        loop = asyncio.get_running_loop()
        if self._api is None or self._loop is not loop:
            from kubernetes_asyncio import client, config

            configuration = client.Configuration()
            if self.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
                config.load_incluster_config(client_configuration=configuration)
            else:
                await config.load_kube_config(
                    config_file=self.kubeconfig, context=self.context, client_configuration=configuration
                )
            self._api = client.CoreV1Api(client.ApiClient(configuration))
            self._loop = loop
        return self._api

    def manifest(self, instance: Instance, dial: Dial) -> dict[str, Any]:
        """The pod to create: the template with the instance's name and labels, and its first
        container running the worker with its credential."""
        pod = copy.deepcopy(self.pod_template)
        pod.update(apiVersion="v1", kind="Pod")
        metadata = pod.setdefault("metadata", {})
        metadata.pop("generateName", None)
        metadata["name"] = instance.resource_name
        metadata["namespace"] = self.namespace
        metadata.setdefault("labels", {}).update(instance.labels)
        spec = pod.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Never")
        containers = spec.setdefault("containers", [{}]) or [{}]
        spec["containers"] = containers
        worker = containers[0]
        worker.setdefault("name", "worker")
        if self.image is not None:
            worker["image"] = self.image
        worker["command"] = dial.argv(self.command, self.basedir)
        worker.pop("args", None)
        ours = {**self.environment, **dial.env()}
        worker["env"] = [e for e in worker.get("env", []) if e.get("name") not in ours] + [
            {"name": name, "value": value} for name, value in ours.items()
        ]
        return pod

    async def start(self, instance: Instance, dial: Dial) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        core = await self._core()
        body = self.manifest(instance, dial)
        try:
            await core.create_namespaced_pod(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise LaunchError(f"Kubernetes refused the pod: {_reason(exc)}") from None
            await self.stop(instance)  # a pod of that name left by an earlier start
            await core.create_namespaced_pod(self.namespace, body)
        await self._running(core, instance)

    async def _running(self, core: Any, instance: Instance) -> None:
        """Watch the pod until it runs; raise as soon as it cannot."""
        from kubernetes_asyncio import watch

        selector = ",".join(f"{k}={v}" for k, v in instance.labels.items())
        while True:
            async with watch.Watch() as pods:
                async for event in pods.stream(
                    core.list_namespaced_pod, self.namespace, label_selector=selector, timeout_seconds=60
                ):
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        raise LaunchError("the pod was deleted before it ran")
                    phase = pod.status.phase if pod.status else None
                    if phase == "Running":
                        return
                    if phase in ("Succeeded", "Failed"):
                        raise LaunchError(f"the pod ended ({phase}) before its worker connected")
                    for status in (pod.status.container_statuses or []) if pod.status else []:
                        waiting = status.state.waiting if status.state else None
                        if waiting is not None and waiting.reason in _HOPELESS:
                            raise LaunchError(f"the pod cannot run: {waiting.reason}: {waiting.message or ''}".strip())

    async def alive(self, instance: Instance) -> bool:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            pod = await (await self._core()).read_namespaced_pod(instance.resource_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return pod.metadata.deletion_timestamp is None and pod.status.phase in ("Pending", "Running")

    async def stop(self, instance: Instance) -> None:
        """Delete the pod, and wait until it is gone (its name is free again then)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        core = await self._core()
        try:
            await core.delete_namespaced_pod(instance.resource_name, self.namespace, grace_period_seconds=1)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        while True:
            try:
                await core.read_namespaced_pod(instance.resource_name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            await asyncio.sleep(_GONE_POLL)

    async def instances(self, master: str) -> list[Instance]:
        pods = await (await self._core()).list_namespaced_pod(self.namespace, label_selector=f"{MASTER_LABEL}={master}")
        found = (Instance.from_labels(pod.metadata.labels or {}) for pod in pods.items)
        return [i for i in found if i is not None]

    async def logs(self, instance: Instance) -> str:
        core = await self._core()
        return await core.read_namespaced_pod_log(instance.resource_name, self.namespace, tail_lines=20)

    async def close(self) -> None:
        api, self._api = self._api, None
        if api is not None and self._loop is asyncio.get_running_loop():
            await api.api_client.close()


def _reason(exc: Any) -> str:
    """What the API server said, in a line."""
    import json

    try:
        return json.loads(exc.body)["message"]
    except (ValueError, KeyError, TypeError):
        return f"{exc.status} {exc.reason}"
