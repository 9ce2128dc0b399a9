"""The system a fault is tried on: a real master, real workers, and a ledger of what their steps ran.

Builder ``work`` (workers w1 and w2) has two steps: ``print`` prints numbered lines for a couple of
seconds and ``end`` does nothing else; each notes in the ledger (files beside the master, outside
any filesystem a fault fills) when it starts and when it completes, with the build's revision and
number, so a step that ran twice is seen whatever the master recorded. Builder ``probe`` (worker
``probe``) has one quick step: a build forced there when a fault ends times the recovery.

Every worker dials the master through a :class:`~tests.proxy.LoopbackProxy` when the rig has one.
"""

from __future__ import annotations

import contextlib
import signal
import textwrap
from collections import Counter
from pathlib import Path

from flowbot.client import Client

from ..proxy import LoopbackProxy
from ..support import MasterProcess, WorkerProcess, pid_alive, wait_for

SECRET = "fault-secret"
#: The workers of the load, and the one that runs the probes.
LOAD_WORKERS = ("w1", "w2")
PROBE_WORKER = "probe"

PIPELINE = """
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker(name, secret={secret!r}) for name in ("w1", "w2", "probe")],
    schedulers=[ForceScheduler("force", builders=["work", "probe"])],
    builders=[
        Builder("work", workers=["w1", "w2"], collapse_requests=False, steps=[
            Shell({print_step!r}, name="print"),
            Shell({end_step!r}, name="end"),
        ]),
        Builder("probe", workers=["probe"], collapse_requests=False, steps=[Shell("true", name="probe")]),
    ],
)
"""

#: What a step notes in the ledger: the build's revision and number, and whether it starts or completes.
_NOTE = 'echo "$FLOWBOT_REVISION $FLOWBOT_BUILD_NUMBER {what}" >> {ledger}/{step}'


def _step(ledger: Path, name: str, body: str) -> str:
    start, end = (_NOTE.format(what=what, ledger=ledger, step=name) for what in ("start", "end"))
    return f"{start}; {body}{end}"


class Rig:
    """A master on ``db`` with workers w1, w2 and probe (started by :meth:`start`).

    Args:
        root: an empty directory for the master, the workers and the ledger.
        db: the master's database URL (None: SQLite in the master's directory).
        heartbeat: the master's heartbeat; a silent worker is lost after three.
        proxied: whether the workers dial through a loopback proxy (:attr:`proxy`).
        lines: how many lines step ``print`` prints, one every ``pause`` seconds.
    """

    def __init__(
        self,
        root: Path,
        db: str | None,
        *,
        heartbeat: float,
        proxied: bool = False,
        lines: int = 20,
        pause: float = 0.05,
    ):
        self.root = root
        self.db = db
        self.heartbeat = heartbeat
        self.lines = lines
        self.ledger = root / "ledger"
        self.ledger.mkdir(parents=True)
        printing = f"for i in $(seq 1 {lines}); do echo line $i; sleep {pause}; done; "
        self.pipeline = PIPELINE.format(
            secret=SECRET,
            print_step=_step(self.ledger, "print", printing),
            end_step=_step(self.ledger, "end", ""),
        )
        self.master: MasterProcess | None = None
        self.workers: dict[str, WorkerProcess] = {}
        self.proxied = proxied
        self.proxy: LoopbackProxy | None = None
        self._masters: list[MasterProcess] = []
        self._stopped: list[WorkerProcess] = []

    @property
    def window(self) -> float:
        """Seconds of silence after which the master loses a worker (and a worker its master)."""
        return 3 * self.heartbeat

    @property
    def client(self) -> Client:
        return self.master.client

    def start(self) -> Rig:
        basedir = self.root / "master"
        basedir.mkdir()
        (basedir / "pipeline.py").write_text(textwrap.dedent(self.pipeline))
        self._start_master(MasterProcess(basedir, db=self.db, heartbeat=self.heartbeat))
        if self.proxied:
            self.proxy = LoopbackProxy(self.master.zmq_port)
        for name in (*LOAD_WORKERS, PROBE_WORKER):
            self.start_worker(name)
        wait_for(self._all_connected, 30, "every worker to connect")
        return self

    def _start_master(self, master: MasterProcess) -> None:
        self.master = master
        self._masters.append(master)
        master.wait_ready()

    def _all_connected(self) -> bool:
        return {w["name"] for w in self.client.workers() if w["connected"]} >= {*LOAD_WORKERS, PROBE_WORKER}

    @property
    def worker_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.proxy.port}" if self.proxy else self.master.endpoint

    def start_worker(self, name: str) -> WorkerProcess:
        """Start worker ``name`` (again, after a crash: on the same directory)."""
        self.workers[name] = WorkerProcess(self.worker_endpoint, name, SECRET, self.root / name)
        return self.workers[name]

    def kill_worker(self, name: str) -> None:
        worker = self.workers[name]
        worker.kill()
        self._stopped.append(worker)

    def signal_worker(self, name: str, sig: signal.Signals) -> None:
        self.workers[name].proc.send_signal(sig)

    def kill_master(self) -> None:
        self.master.kill()

    def restart_master(self) -> None:
        """Start the master again on the same directory, ports and database, and wait until it serves."""
        old = self.master
        again = MasterProcess(
            old.basedir, db=self.db, heartbeat=self.heartbeat, http_port=old.http_port, zmq_port=old.zmq_port
        )
        self._start_master(again)

    def running_worker(self) -> str | None:
        """The worker of a ``work`` build running now, if any."""
        running = [b for b in self.client.builds(builder="work", limit=10) if b["result"] is None and b["worker"]]
        return running[0]["worker"] if running else None

    def ledger_notes(self, step: str) -> Counter[tuple[str, str, str]]:
        """How many times each (revision, build number, start|end) was noted by ``step``."""
        path = self.ledger / step
        if not path.exists():
            return Counter()
        return Counter(tuple(line.split()) for line in path.read_text().splitlines() if len(line.split()) == 3)

    def master_logs(self) -> str:
        return "".join(master.log() for master in self._masters)

    def master_alive(self) -> bool:
        return self.master is not None and pid_alive(self.master.pid)

    def close(self) -> None:
        """Stop every process the rig started (a stopped worker is woken first, so it can exit)."""
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGCONT)
        for worker in [*self.workers.values(), *self._stopped]:
            worker.stop()
        for master in self._masters:
            master.stop()
        if self.proxy is not None:
            self.proxy.close()
