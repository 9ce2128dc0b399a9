"""A worker whose connection breaks comes back within the liveness window and its build carries on."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from ..support import finished_builds, running_build, step_log


class CuttableProxy:
    """A TCP proxy on loopback whose connections can all be cut at once, like a network blip."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self.connections += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        with self._lock:
            for s in self.connections:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.connections.clear()

    def close(self) -> None:
        self.server.close()
        self.cut()


@pytest.fixture
def proxy_to():
    proxies = []

    def make(port: int) -> CuttableProxy:
        proxies.append(CuttableProxy(port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def test_a_build_survives_a_broken_connection_and_its_output_arrives_exactly_once(
    master_factory, worker_factory, proxy_to
):
    # Given a worker that reaches the master through a link that is about to break
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["chatty"])],
            builders=[Builder("chatty", workers=["w1"], steps=[
                Shell("for i in $(seq 1 8); do echo line$i; sleep 0.15; done", name="talk"),
            ])],
        )
    """)
    proxy = proxy_to(master.zmq_port)
    master.endpoint = f"tcp://127.0.0.1:{proxy.port}"
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
