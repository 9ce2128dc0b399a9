"""A worker the master gives up has stopped its commands first: frozen (SIGSTOP) or killed in the
middle of a long step, that step does not complete there while its build runs again on another
worker, and a frozen worker let go afterwards reports nothing of it."""

from __future__ import annotations

import signal
import textwrap
import time

import pytest

from ..support import MasterProcess, WorkerProcess, wait_for

pytestmark = pytest.mark.timeout(120)

SECRET = "fence-secret"
HEARTBEAT = 0.3
#: Seconds the step runs: longer than the master holds a silent worker's build (6 windows of 0.9 s).
STEP = 8

PIPELINE = """
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker(name, secret={secret!r}) for name in ("w1", "w2")],
    schedulers=[ForceScheduler("force", builders=["slow"])],
    builders=[Builder("slow", workers=["w1", "w2"], steps=[Shell({step!r}, name="slow")])],
)
"""


def _notes(ledger) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


@pytest.mark.parametrize("fault", ["stop", "kill"])
def test_a_step_of_a_worker_given_up_does_not_complete_there(fault, tmp_path):
    ledger = tmp_path / "ledger"
    step = f'echo "$FLOWBOT_BUILD_NUMBER start" >> {ledger}; sleep {STEP}; echo "$FLOWBOT_BUILD_NUMBER end" >> {ledger}'
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "pipeline.py").write_text(textwrap.dedent(PIPELINE.format(secret=SECRET, step=step)))
    master = MasterProcess(basedir, heartbeat=HEARTBEAT).wait_ready()
    workers = {name: WorkerProcess(master.endpoint, name, SECRET, tmp_path / name) for name in ("w1", "w2")}
    try:
        wait_for(lambda: all(w["connected"] for w in master.client.workers()), 30, "the workers to connect")
        master.client.force("slow")
        wait_for(lambda: "1 start" in _notes(ledger), 30, "the step to start")
        first = master.client.builds(builder="slow")[0]
        frozen = workers[first["worker"]]
        began = time.monotonic()
        if fault == "stop":
            frozen.proc.send_signal(signal.SIGSTOP)
        else:
            frozen.kill()

        def again() -> bool:
            return any(b["number"] == 2 and b["result"] == "SUCCESS" for b in master.client.builds(builder="slow"))

        wait_for(again, 60, "the build to run again on the other worker")
        time.sleep(max(0.0, began + STEP + 1.0 - time.monotonic()))  # past the end the first run would have had
        assert "1 end" not in _notes(ledger), _notes(ledger)
        assert master.client.builds(builder="slow", limit=5)[-1]["result"] == "RETRY"
        if fault == "stop":
            frozen.proc.send_signal(signal.SIGCONT)
            wait_for(lambda: all(w["connected"] for w in master.client.workers()), 30, "the worker to come back")
            time.sleep(1.0)
        assert _notes(ledger) == ["1 start", "2 start", "2 end"]
        assert "Traceback" not in master.log()
    finally:
        for worker in workers.values():
            if worker.alive():
                worker.proc.send_signal(signal.SIGCONT)
            worker.stop()
        master.stop()
