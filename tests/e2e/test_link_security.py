"""The worker link turns away what it must: a retired secret, frames too large, a flood of refusals."""

from __future__ import annotations

import logging
from pathlib import Path

from flowbot_worker import protocol

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

from ..support import WorkerProcess
from .fake_worker import FakeWorker, until


def _pipeline(**secrets: str) -> Pipeline:
    return Pipeline(
        workers=[Worker(name, secret=secret) for name, secret in secrets.items()],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("echo built")])],
    )


async def _answer(master: flowbot.Master, name: str, secret: str) -> str:
    """What the master answers a hello from ``name`` signed with ``secret``."""
    worker = FakeWorker(master.worker_endpoint, name, secret)
    try:
        answer = await worker.hello()
        if answer.type == protocol.WELCOME:
            await worker.send(protocol.DISCONNECT, {"reason": "it only came to say hello"})
        return answer.type
    finally:
        worker.close()


def _worker_process(master: flowbot.Master, secret: str, where: Path) -> WorkerProcess:
    where.mkdir()
    return WorkerProcess(master.worker_endpoint, "w1", secret, where / "w1")


async def test_a_changed_worker_secret_takes_effect_at_reconfigure(tmp_path):
    # Given w1 connected with its secret, and w2 known by its own
    master = flowbot.Master(_pipeline(w1="old", w2="two"), db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    workers = [_worker_process(master, "old", tmp_path / "old")]
    try:
        await until(lambda: "w1" in master.registry.connections, what="w1 to connect")
        assert await _answer(master, "w2", "two") == protocol.WELCOME

        # When the pipeline gives w1 a new secret and drops w2
        await master.reconfigure(_pipeline(w1="new"))

        # Then the worker still signing with the old secret is disconnected, and refused when it comes back
        assert "w1" not in master.registry.connections
        await until(lambda: "bad signature" in workers[0].log(), what="the old worker to hear why")
        assert await _answer(master, "w1", "old") == protocol.DISCONNECT
        # ... while a worker with the new secret is welcomed and builds
        workers.append(_worker_process(master, "new", tmp_path / "new"))
        await until(lambda: "w1" in master.registry.connections, what="the new w1 to connect")
        await master.force("b")
        await master.wait_idle(timeout=30)
        (build,) = await master.store.builds(builder="b")
        assert build["result"] == "SUCCESS"

        # And w2 is refused until a pipeline declares it again, then only with the secret declared then
        assert await _answer(master, "w2", "two") == protocol.DISCONNECT
        await master.reconfigure(_pipeline(w1="new", w2="three"))
        assert await _answer(master, "w2", "two") == protocol.DISCONNECT
        assert await _answer(master, "w2", "three") == protocol.WELCOME
    finally:
        for worker in workers:
            worker.stop()
        await master.stop()


async def test_refused_hellos_are_all_counted_but_logged_once_in_a_while(tmp_path, caplog):
    master = flowbot.Master(_pipeline(w1="s"), db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    intruder = FakeWorker(master.worker_endpoint, "intruder", "guess")
    try:
        # When an undeclared worker says hello fifty times in a row
        with caplog.at_level(logging.WARNING, logger="flowbot.master.registry"):
            answers = [await intruder.hello() for _ in range(50)]

        # Then each is refused and counted, and the log says so once
        assert {answer.type for answer in answers} == {protocol.DISCONNECT}
        assert master.registry.dropped["refused"] == 50
        said = [r.getMessage() for r in caplog.records if "refused worker 'intruder'" in r.getMessage()]
        assert len(said) == 1 and "unknown worker" in said[0]
    finally:
        intruder.close()
        await master.stop()
