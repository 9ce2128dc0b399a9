"""A small fake of the Kubernetes pods API, for tests: no cluster can run here.

It serves what a worker launcher uses (create, get, list by label, watch, delete, log) on a loopback
port, checks the bearer token it is sent, keeps every manifest it was sent, and has a "kubelet" that
runs each pod's first container as a real local process from its command and environment (``python3``
is this interpreter). Images starting with ``pending/`` never run (the pod stays Pending), and images
starting with ``missing/`` fail to pull (ErrImagePull), as on a cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

TOKEN = "fake-cluster-token"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(pod: dict, selector: str | None) -> bool:
    if not selector:
        return True
    labels = pod["metadata"].get("labels", {})
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


class FakeCluster:
    """The pods of a fake cluster, its kubelet's processes, and what it was asked."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pods: dict[tuple[str, str], dict] = {}
        self.processes: dict[tuple[str, str], subprocess.Popen] = {}
        self.created: list[dict] = []  # every manifest sent, as sent
        self.deleted: list[str] = []
        self.refused_tokens = 0
        self.version = 0
        self._watchers: list[asyncio.Queue] = []
        self._tasks: set[asyncio.Task] = set()
        self.url = ""
        self._server: tornado.httpserver.HTTPServer | None = None

    # -- serving --------------------------------------------------------------------------------

    def start(self) -> str:
        app = tornado.web.Application(
            [
                (r"/api/v1/namespaces/([^/]+)/pods", PodsHandler, {"cluster": self}),
                (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", PodHandler, {"cluster": self}),
                (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", LogHandler, {"cluster": self}),
            ]
        )
        self._server = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self._server.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.url

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "ci", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    async def stop(self) -> None:
        for queue in self._watchers:
            queue.put_nowait(None)
        for key in list(self.processes):
            self._kill(key)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()

    # -- the API's side -------------------------------------------------------------------------

    def _changed(self, kind: str, pod: dict) -> None:
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        for queue in self._watchers:
            queue.put_nowait({"type": kind, "object": json.loads(json.dumps(pod))})

    def create(self, namespace: str, pod: dict) -> tuple[int, dict]:
        self.created.append(json.loads(json.dumps(pod)))
        name = pod["metadata"].get("name")
        if not name:
            return 422, {"kind": "Status", "message": "a pod needs a name", "code": 422}
        if (namespace, name) in self.pods:
            return 409, {"kind": "Status", "message": f'pods "{name}" already exists', "code": 409}
        pod["metadata"].update(namespace=namespace, uid=f"uid-{self.version}", creationTimestamp=_now())
        pod["status"] = {"phase": "Pending"}
        self.pods[namespace, name] = pod
        self._changed("ADDED", pod)
        self._spawn(self._kubelet(namespace, name))
        return 201, pod

    def delete(self, namespace: str, name: str) -> tuple[int, dict]:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return 404, {"kind": "Status", "message": f'pods "{name}" not found', "code": 404}
        self.deleted.append(name)
        if pod["metadata"].get("deletionTimestamp") is None:
            pod["metadata"]["deletionTimestamp"] = _now()
            self._changed("MODIFIED", pod)
            self._spawn(self._terminate(namespace, name))
        return 200, pod

    def watch(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._watchers.append(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue) -> None:
        self._watchers.remove(queue)

    # -- the kubelet's side -----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kubelet(self, namespace: str, name: str) -> None:
        await asyncio.sleep(0.05)  # scheduling
        pod = self.pods.get((namespace, name))
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        container = pod["spec"]["containers"][0]
        image = container.get("image", "")
        if image.startswith("pending/"):
            return
        if image.startswith("missing/"):
            pod["status"]["containerStatuses"] = [
                {
                    "name": container["name"],
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": f'pull access denied for "{image}"'}},
                }
            ]
            self._changed("MODIFIED", pod)
            return
        argv = list(container["command"]) + list(container.get("args", []))
        if argv[0] == "python3":
            argv[0] = sys.executable
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        argv = [str(workdir / "build") if a == "/build" else a for a in argv]  # the pod's file system
        with open(workdir / "log", "wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        self.processes[namespace, name] = process
        pod["status"] = {"phase": "Running", "podIP": "127.0.0.1", "startTime": _now(), "logPath": str(workdir / "log")}
        self._changed("MODIFIED", pod)
        while process.poll() is None:
            await asyncio.sleep(0.1)
        if (namespace, name) in self.pods and not pod["metadata"].get("deletionTimestamp"):
            pod["status"]["phase"] = "Succeeded" if process.returncode == 0 else "Failed"
            self._changed("MODIFIED", pod)

    def _kill(self, key: tuple[str, str]) -> None:
        process = self.processes.pop(key, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def _terminate(self, namespace: str, name: str) -> None:
        await asyncio.sleep(0.1)  # the grace period, shortened
        self._kill((namespace, name))
        pod = self.pods.pop((namespace, name), None)
        if pod is not None:
            self._changed("DELETED", pod)

    def log(self, namespace: str, name: str) -> str:
        pod = self.pods.get((namespace, name))
        path = pod and pod["status"].get("logPath")
        return Path(path).read_text(errors="replace") if path else ""


class _Handler(tornado.web.RequestHandler):
    def initialize(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.cluster.refused_tokens += 1
            self.answer(401, {"kind": "Status", "message": "Unauthorized", "code": 401})

    def answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class PodsHandler(_Handler):
    def post(self, namespace: str) -> None:
        self.answer(*self.cluster.create(namespace, json.loads(self.request.body)))

    async def get(self, namespace: str) -> None:
        selector = self.get_argument("labelSelector", None)
        chosen = [p for (ns, _), p in self.cluster.pods.items() if ns == namespace and _selected(p, selector)]
        if self.get_argument("watch", "").lower() not in ("true", "1"):
            listed = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.cluster.version)}}
            self.answer(200, {**listed, "items": chosen})
            return
        queue = self.cluster.watch()
        timeout = float(self.get_argument("timeoutSeconds", "60"))
        try:
            self.set_header("Content-Type", "application/json")
            for pod in chosen:
                self.write(json.dumps({"type": "ADDED", "object": pod}) + "\n")
            await self.flush()
            async with asyncio.timeout(timeout):
                while (event := await queue.get()) is not None:
                    if event["object"]["metadata"].get("namespace") == namespace and _selected(
                        event["object"], selector
                    ):
                        self.write(json.dumps(event) + "\n")
                        await self.flush()
        except (TimeoutError, tornado.iostream.StreamClosedError):
            pass
        finally:
            self.cluster.unwatch(queue)
        if not self._finished:
            self.finish()


class PodHandler(_Handler):
    def get(self, namespace: str, name: str) -> None:
        pod = self.cluster.pods.get((namespace, name))
        if pod is None:
            self.answer(404, {"kind": "Status", "message": f'pods "{name}" not found', "code": 404})
        else:
            self.answer(200, pod)

    def delete(self, namespace: str, name: str) -> None:
        self.answer(*self.cluster.delete(namespace, name))


class LogHandler(_Handler):
    def get(self, namespace: str, name: str) -> None:
        lines = self.cluster.log(namespace, name).splitlines(keepends=True)
        tail = int(self.get_argument("tailLines", "0") or 0)
        self.set_header("Content-Type", "text/plain")
        self.finish("".join(lines[-tail:] if tail else lines))
