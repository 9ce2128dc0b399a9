"""One master at scale: thousands of workers, deep queues, a flood of output, many watchers.

Every scenario starts a real master process (SQLite in its directory, loopback only) and real
workers: the worker package's own :class:`flowbot_worker.Worker`, many to a process sharing one
ZeroMQ context, over real sockets. While a scenario runs, a probe asks the master's ``/api/``
every 100 ms (its slowest answer shows the longest stall of the master's loop, whatever the
master measures of itself) and the write-ahead log's size is watched.

- ``workers``: W workers (default 2,000) connect to an idle master: time until all are connected,
  the master's idle CPU, its RSS, and ``/api/workers`` latency.
- ``queued``: N requests (default 2,000) are queued, then W workers connect; each build sleeps a
  second. Every build must start and succeed: counts of workers lost, RETRY builds, workers that
  found the master silent, and the longest stall.
- ``restart``: 25,000 requests are queued with no worker, the master is killed (SIGKILL) and started
  again with 4 workers: seconds from the restart to the first build, and builds/s over the first
  2,000 builds against 2,000 submitted to a master with nothing queued.
- ``flood``: one step prints 1 GiB while quick builds run one after another on another worker:
  MB/s from the worker through the master (all of it read and counted; the log keeps its limit,
  64 MiB), the master's peak RSS, the longest stall, the quick builds' latency (POST to
  ``build.finished``), what the store kept (text, compressed size, the log's last lines: the
  notice of what it did not keep) and how long log search's index took to take it in.
- ``watchers``: throughput (as ``throughput.py``) with 50 WebSocket clients reading every event,
  against none, alternating, the median of the rounds; the clients read the stream's bytes without
  decoding them (their own CPU is shown apart).

    python benchmarks/scale.py workers queued restart flood watchers --json scale.json
    python benchmarks/scale.py queued -w 1000 -n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from throughput import KeepAlive, cpu_seconds, free_port, peak_rss_mb, run_batch
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import websocket_connect

#: Workers run in processes of this many (the worker package's classes, one ZeroMQ context each).
PER_PROCESS = 100
SECRET = "bench-secret"

PIPELINE = """
from flowbot import AnyBranchScheduler, Builder, Pipeline, Shell, SingleBranchScheduler, Worker
names = [f"w{{i}}" for i in range({workers})]
pipeline = Pipeline(
    workers=[Worker(n, secret={secret!r}) for n in names],
    schedulers=[{schedulers}],
    builders=[{builders}],
)
"""


def pipeline(workers: int, builders: dict[str, tuple[str, str]]) -> str:
    """A pipeline of ``workers`` workers and, per builder, (its workers' expression, its command);
    a change on branch NAME builds builder NAME."""
    return PIPELINE.format(
        workers=workers,
        secret=SECRET,
        schedulers=", ".join(f"SingleBranchScheduler({b!r}, builders=[{b!r}], branch={b!r})" for b in builders),
        builders=", ".join(
            f"Builder({b!r}, workers={on}, collapse_requests=False, steps=[Shell({cmd}, name='run')])"
            for b, (on, cmd) in builders.items()
        ),
    )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def spawn(argv: list[str], log: Path) -> subprocess.Popen:
    """Start a process whose standard error goes to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return subprocess.Popen(argv, stderr=fd)
    finally:
        os.close(fd)


class Rig:
    """A master directory, its master process, and worker processes; everything stopped at exit."""

    def __init__(self, root: Path, text: str):
        self.root = root
        (root / "master").mkdir(parents=True)
        (root / "master" / "pipeline.py").write_text(text)
        self.http_port, zmq_port = free_port(), free_port()
        self.endpoint = f"tcp://127.0.0.1:{zmq_port}"
        self.base = f"127.0.0.1:{self.http_port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.http = AsyncHTTPClient()
        self.restarts = 0

    @property
    def db(self) -> Path:
        return self.root / "master" / "state.sqlite"

    async def start(self) -> float:
        """Start the master; returns when its HTTP server answers (seconds it took)."""
        start = time.perf_counter()
        log = self.root / f"master{self.restarts}.log"
        self.restarts += 1
        argv = [sys.executable, "-m", "flowbot", "start", str(self.root / "master")]
        self.master = spawn([*argv, "--http", self.base, "--zmq", self.endpoint], log)
        while True:
            with contextlib.suppress(Exception):
                await self.get("/api/")
                return time.perf_counter() - start
            if self.master.poll() is not None:
                raise RuntimeError(f"the master exited; see {log}")
            await asyncio.sleep(0.02)

    def spawn_workers(self, count: int, first: int = 0) -> None:
        for group in range(first, first + count, PER_PROCESS):
            size = min(PER_PROCESS, first + count - group)
            argv = [sys.executable, __file__, "_workers", self.endpoint, str(self.root), str(group), str(size)]
            self.workers.append(spawn(argv, self.root / f"workers{group}.log"))

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            proc.wait(timeout=60)
        self.workers = []

    def kill_master(self) -> None:
        assert self.master is not None
        self.master.send_signal(signal.SIGKILL)
        self.master.wait()

    def stop(self) -> None:
        self.stop_workers()
        if self.master is not None and self.master.poll() is None:
            self.master.terminate()
            self.master.wait(timeout=60)

    async def get(self, path: str) -> Any:
        answer = await self.http.fetch(f"http://{self.base}{path}", request_timeout=120)
        return json.loads(answer.body) if path.startswith("/api") else answer.body.decode()

    async def connected(self) -> int:
        """Workers connected now, from ``/metrics`` (``/api/workers`` lists every worker: polling it
        would load the master with thousands of them)."""
        for line in (await self.get("/metrics")).splitlines():
            if line.startswith("flowbot_workers_connected "):
                return int(float(line.split()[1]))
        raise RuntimeError("/metrics has no flowbot_workers_connected")

    async def wait_connected(self, count: int, timeout: float = 600) -> float:
        start = time.perf_counter()
        while await self.connected() < count:
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"only {await self.connected()} of {count} workers connected in {timeout:g} s")
            await asyncio.sleep(0.25)
        return time.perf_counter() - start

    async def submit(self, branch: str, revisions: list[str], connections: int = 8) -> float:
        """POST one change per revision; returns the seconds it took."""
        start = time.perf_counter()

        async def post(chunk: list[str]) -> None:
            async with KeepAlive(self.http_port) as http:
                for revision in chunk:
                    await http.post("/api/changes", {"branch": branch, "revision": revision, "author": "bench"})

        await asyncio.gather(*(post(revisions[i::connections]) for i in range(connections)))
        return time.perf_counter() - start

    async def loop_lag(self) -> dict[str, float] | None:
        """The master's own measure of its loop's lag, where ``/metrics`` has it."""
        text = await self.get("/metrics")
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("flowbot_loop_lag_seconds_max", "flowbot_loop_lag_seconds_count"))
        }
        return values or None


class Events:
    """A WebSocket reader of the master's events, counting what it hears."""

    def __init__(self, rig: Rig, types: str):
        self.rig, self.types = rig, types
        self.finished: dict[str, float] = {}  # revision -> when its last build finished (perf_counter)
        self.results: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.retries = 0
        self.builds: dict[int, dict] = {}
        self.waiters: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> Events:
        self.stream = await websocket_connect(f"ws://{self.rig.base}/api/events?types={self.types}")
        self.task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        self.stream.close()

    async def _listen(self) -> None:
        while (message := await self.stream.read_message()) is not None:
            event = json.loads(message)
            kind = event["type"]
            self.counts[kind] = self.counts.get(kind, 0) + 1
            build = event.get("build")
            if kind == "build.started":
                self.started.setdefault(build["revision"], time.perf_counter())
            elif kind == "build.finished":
                self.builds[build["id"]] = build
                self.retries += build["result"] == "RETRY"
                self.finished[build["revision"]] = time.perf_counter()
                self.results[build["revision"]] = build["result"]
                if build["revision"] in self.waiters:
                    self.waiters.pop(build["revision"]).set_result(build)

    def waiter(self, revision: str) -> asyncio.Future:
        self.waiters[revision] = asyncio.get_running_loop().create_future()
        return self.waiters[revision]

    async def until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"not done in {timeout:g} s: {self.counts}")
            await asyncio.sleep(0.05)


class Probe:
    """Every 100 ms: how long ``/api/`` takes to answer, and how large the write-ahead log is."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.latencies: list[float] = []
        self.wal_max = 0

    async def __aenter__(self) -> Probe:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        wal = Path(f"{self.rig.db}-wal")
        while True:
            start = time.perf_counter()
            with contextlib.suppress(Exception):
                await self.rig.get("/api/")
                self.latencies.append(time.perf_counter() - start)
            with contextlib.suppress(OSError):
                self.wal_max = max(self.wal_max, wal.stat().st_size)
            await asyncio.sleep(0.1)

    def figures(self) -> dict[str, float]:
        return {
            "probe_max_ms": max(self.latencies, default=0) * 1000,
            "probe_p50_ms": statistics.median(self.latencies or [0]) * 1000,
            "wal_max_mb": self.wal_max / 1e6,
        }


async def lag_figures(rig: Rig, probe: Probe) -> dict[str, Any]:
    figures: dict[str, Any] = probe.figures()
    with contextlib.suppress(Exception):
        figures["loop_lag"] = await rig.loop_lag()
    return figures


def worker_silences(rig: Rig) -> int:
    """How many times a worker found the master silent for its liveness window and reconnected."""
    return sum(log.read_text().count("connection lost") for log in rig.root.glob("workers*.log"))


# -- scenarios ----------------------------------------------------------------------------------


async def scenario_workers(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    rig = Rig(root, pipeline(args.w, {"b": ("names", "['true']")}))
    try:
        await rig.start()
        master = rig.master.pid
        async with Probe(rig) as probe:
            start = time.perf_counter()
            rig.spawn_workers(args.w)
            await rig.wait_connected(args.w)
            connect_s = time.perf_counter() - start
            await asyncio.sleep(5)
            cpu, wall = cpu_seconds(master), time.perf_counter()
            await asyncio.sleep(args.idle)
            idle_cpu = (cpu_seconds(master) - cpu) / (time.perf_counter() - wall)
            latencies = []
            for _ in range(20):
                t = time.perf_counter()
                await rig.get("/api/workers")
                latencies.append((time.perf_counter() - t) * 1000)
            return {
                "workers": args.w,
                "connect_all_s": connect_s,
                "idle_master_cpu_percent": idle_cpu * 100,
                "master_rss_mb": rss_mb(master),
                "api_workers_p50_ms": statistics.median(latencies),
                "api_workers_max_ms": max(latencies),
                "still_connected": await rig.connected(),
                "worker_silences": worker_silences(rig),
                **await lag_figures(rig, probe),
            }
    finally:
        rig.stop()


async def scenario_queued(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    rig = Rig(root, pipeline(args.w, {"b": ("names", "['sleep', '1']")}))
    try:
        await rig.start()
        revisions = [f"q{i}" for i in range(args.n)]
        async with Events(rig, "build.started,build.finished,worker.lost") as events:
            submit_s = await rig.submit("b", revisions)
            async with Probe(rig) as probe:
                start = time.perf_counter()
                rig.spawn_workers(args.w)
                await events.until(
                    lambda: sum(events.results.get(r) == "SUCCESS" for r in revisions) == len(revisions), 900
                )
                wall = time.perf_counter() - start
                results: dict[str, int] = {}
                for build in events.builds.values():
                    results[build["result"]] = results.get(build["result"], 0) + 1
                return {
                    "requests": args.n,
                    "workers": args.w,
                    "submit_s": submit_s,
                    "all_finished_s": wall,
                    "builds_by_result": results,
                    "retry_builds": events.retries,
                    "workers_lost": events.counts.get("worker.lost", 0),
                    "worker_silences": worker_silences(rig),
                    "master_peak_rss_mb": peak_rss_mb(rig.master.pid),
                    **await lag_figures(rig, probe),
                }
    finally:
        rig.stop()


def dispatch_rate(db: Path, count: int, after: float = 0.0) -> float:
    """Builds/s over the first ``count`` builds started after ``after``: from the first one's start
    to the last one's end, as the store recorded them."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT started_at, finished_at FROM builds WHERE started_at > ? ORDER BY started_at LIMIT ?",
            (after, count),
        ).fetchall()
    if len(rows) < count or any(f is None for _, f in rows):
        raise RuntimeError(f"only {len(rows)} builds recorded")
    return count / (max(f for _, f in rows) - rows[0][0])


async def scenario_restart(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    rig = Rig(root, pipeline(4, {"b": ("names", "['true']")}))
    try:
        # An empty queue first: 2,000 builds submitted to a master that has nothing queued.
        await rig.start()
        rig.spawn_workers(4)
        await rig.wait_connected(4)
        async with Events(rig, "build.finished") as events:
            revisions = [f"e{i}" for i in range(args.rate_builds)]
            await rig.submit("b", revisions, connections=4)
            await events.until(lambda: all(r in events.finished for r in revisions), 600)
        empty_rate = dispatch_rate(rig.db, args.rate_builds)
        rig.stop_workers()
        # Then a deep queue, a kill, and a restart.
        submit_s = await rig.submit("b", [f"d{i}" for i in range(args.deep)])
        wal_before_kill = Path(f"{rig.db}-wal").stat().st_size
        rig.kill_master()
        restarted = time.time()
        cpu_start = time.perf_counter()
        up_s = await rig.start()
        rig.spawn_workers(4)
        async with Probe(rig) as probe:
            deadline = time.monotonic() + 900
            while True:
                with contextlib.closing(sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True)) as conn:
                    done = conn.execute("SELECT count(*) FROM builds WHERE started_at > ?", (restarted,)).fetchone()[0]
                if done >= args.rate_builds + 4:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{done} builds after the restart in 900 s")
                await asyncio.sleep(0.5)
            with contextlib.closing(sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True)) as conn:
                first = conn.execute("SELECT min(started_at) FROM builds WHERE started_at > ?", (restarted,)).fetchone()
            return {
                "deep_queue": args.deep,
                "submit_s": submit_s,
                "wal_mb_before_kill": wal_before_kill / 1e6,
                "restart_http_up_s": up_s,
                "restart_to_first_dispatch_s": first[0] - restarted,
                "deep_queue_builds_per_s": dispatch_rate(rig.db, args.rate_builds, restarted),
                "empty_queue_builds_per_s": empty_rate,
                "wall_s": time.perf_counter() - cpu_start,
                **await lag_figures(rig, probe),
            }
    finally:
        rig.stop()


FLOOD = "yes 'flowbot flood: a line of build output, as a noisy test suite prints it' | head -c {size}"


async def scenario_flood(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    builders = {"flood": ("['w0']", repr(FLOOD.format(size=args.flood))), "quick": ("['w1']", "['true']")}
    rig = Rig(root, pipeline(2, builders))
    try:
        await rig.start()
        rig.spawn_workers(2)
        await rig.wait_connected(2)
        async with Events(rig, "build.started,build.finished") as events:

            async def quick(name: str) -> float:
                done = events.waiter(name)
                start = time.perf_counter()
                await rig.submit("quick", [name], connections=1)
                await asyncio.wait_for(done, 120)
                return (time.perf_counter() - start) * 1000

            idle = [await quick(f"idle{i}") for i in range(10)]
            async with Probe(rig) as probe:
                flood = events.waiter("flood")
                await rig.submit("flood", ["flood"], connections=1)
                during = []
                while not flood.done():
                    during.append(await quick(f"during{len(during)}"))
                    await asyncio.sleep(0.2)
                build = flood.result()
                if build["result"] != "SUCCESS":
                    raise RuntimeError(f"the flood's build ended {build['result']}")
                seconds = build["finished_at"] - build["started_at"]
                after = [await quick(f"after{i}") for i in range(10)]
                figures = await lag_figures(rig, probe)
            indexed_s = await index_caught_up(rig.db)
        kept = stored_log(rig.db, "flood")
        files = {p.name: p.stat().st_size / 1e6 for p in rig.db.parent.glob("state.sqlite*")}
        return {
            "printed_mb": args.flood / 1e6,
            "flood_result": build["result"],
            "flood_seconds": seconds,
            "mb_per_s_through_master": args.flood / 1e6 / seconds,
            "master_peak_rss_mb": peak_rss_mb(rig.master.pid),
            "quick_idle_p50_ms": statistics.median(idle),
            "quick_during_p50_ms": statistics.median(during),
            "quick_during_max_ms": max(during),
            "quick_during_n": len(during),
            "quick_after_p50_ms": statistics.median(after),
            "index_caught_up_s_after_flood": indexed_s,
            **kept,
            "database_files_mb": files,
            **figures,
        }
    finally:
        rig.stop()


async def index_caught_up(db: Path) -> float:
    """Seconds until log search's index has taken in every chunk stored."""
    began = time.perf_counter()
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            if not conn.execute("SELECT count(*) FROM log_search_pending").fetchone()[0]:
                return time.perf_counter() - began
        await asyncio.sleep(0.2)


def stored_log(db: Path, builder: str) -> dict[str, Any]:
    """What the store kept of ``builder``'s log: its text, compressed, its index, and its last lines."""
    from flowbot.store.log_codec import unpack

    chunks = "FROM log_chunks c JOIN steps s ON s.id = c.step_id JOIN builds b ON b.id = s.build_id WHERE b.builder = ?"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        texts = [
            unpack(content, compressed)
            for content, compressed in conn.execute(f"SELECT c.content, c.compressed {chunks}", (builder,))
        ]
        compressed = conn.execute(f"SELECT sum(length(c.compressed)) {chunks}", (builder,)).fetchone()[0]
        index = conn.execute("SELECT sum(length(block)) FROM log_search_data").fetchone()[0]
        last = conn.execute(
            f"SELECT c.content, c.compressed {chunks} ORDER BY c.id DESC LIMIT 1", (builder,)
        ).fetchone()
    return {
        "log_text_mb": sum(len(text.encode()) for text in texts) / 1e6,
        "log_lines": sum(text.count("\n") + 1 for text in texts),
        "log_compressed_mb": (compressed or 0) / 1e6,
        "search_index_mb": (index or 0) / 1e6,
        "log_ends_with": unpack(*last).split("\n")[-3:],
    }


async def scenario_watchers(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    rig = Rig(root, pipeline(4, {"main": ("names", "['true']")}))  # throughput.py's batches are on main
    try:
        await rig.start()
        rig.spawn_workers(4)
        await rig.wait_connected(4)
        master = rig.master.pid
        rounds: dict[int, list[dict]] = {0: [], args.clients: []}
        async with Events(rig, "build.finished") as events, Probe(rig) as probe:
            await asyncio.sleep(1)
            for batch in range(args.rounds * 2):
                clients = args.clients if batch % 2 else 0
                watchers = None
                if clients:
                    argv = [sys.executable, __file__, "_watchers", rig.base, str(clients)]
                    watchers = subprocess.Popen(argv, stdout=subprocess.PIPE)
                    await asyncio.get_running_loop().run_in_executor(None, watchers.stdout.readline)  # all connected
                await asyncio.sleep(0.5)
                figures = await run_batch(
                    rig.http_port, master, [], args.n, 4, events.finished, events.results, f"{batch}-{clients}"
                )
                if watchers is not None:
                    figures["watchers_cpu_ms_per_build"] = cpu_seconds(watchers.pid) / args.n * 1000
                    watchers.terminate()
                    watchers.wait()
                rounds[clients].append(figures)
                print(f"  watchers={clients} builds/s={figures['builds_per_s']:.0f}", file=sys.stderr)
            lag = await lag_figures(rig, probe)

        failed = sum(f["failed"] for v in rounds.values() for f in v)
        if failed:
            raise RuntimeError(f"{failed} builds failed")

        def median(clients: int, key: str) -> float:
            return statistics.median(f[key] for f in rounds[clients])

        return {
            "builds": args.n,
            "clients": args.clients,
            "none_builds_per_s": median(0, "builds_per_s"),
            "watched_builds_per_s": median(args.clients, "builds_per_s"),
            "watched_over_none": median(args.clients, "builds_per_s") / median(0, "builds_per_s"),
            "none_cpu_ms_per_build": median(0, "master_cpu_ms_per_build"),
            "watched_cpu_ms_per_build": median(args.clients, "master_cpu_ms_per_build"),
            # The clients' own process, which shares the machine's cores with the master.
            "clients_cpu_ms_per_build": median(args.clients, "watchers_cpu_ms_per_build"),
            "rounds": {k: [round(f["builds_per_s"], 1) for f in v] for k, v in rounds.items()},
            "failed": failed,
            **lag,
        }
    finally:
        rig.stop()


#: The targets, per scenario and figure: (comparison, value). Missing one is reported, not a failure:
#: timing figures are only meaningful on a quiet machine.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "workers": {"worker_silences": ("<=", 0)},
    "queued": {"workers_lost": ("<=", 0), "retry_builds": ("<=", 0), "loop_lag_max_s": ("<", 0.1)},
    "restart": {"wal_max_mb": ("<", 64)},
    "flood": {
        "mb_per_s_through_master": (">=", 100),
        "master_peak_rss_mb": ("<", 200),
        "loop_lag_max_s": ("<", 0.1),
        "quick_during_p50_ms": ("<", 50),
        "wal_max_mb": ("<", 64),
    },
    "watchers": {"watched_over_none": (">=", 0.8)},
}


def report(name: str, figures: dict[str, Any], targets: dict[str, tuple[str, float]]) -> None:
    """Print one line per figure, with its target and whether it was met."""
    flat = dict(figures)
    lag = flat.pop("loop_lag", None) or {}
    if "flowbot_loop_lag_seconds_max" in lag:
        flat["loop_lag_max_s"] = lag["flowbot_loop_lag_seconds_max"]
    for key, value in flat.items():
        line = f"{name:9} {key:32} {_shown(value)}"
        if key in targets:
            op, bound = targets[key]
            met = {"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op]
            line = f"{line:70} target {op} {bound:g}: {'met' if met else 'MISSED'}"
        print(line, flush=True)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


SCENARIOS = {
    "workers": scenario_workers,
    "queued": scenario_queued,
    "restart": scenario_restart,
    "flood": scenario_flood,
    "watchers": scenario_watchers,
}


# -- the processes a scenario starts ------------------------------------------------------------


async def run_workers(endpoint: str, root: str, first: int, count: int) -> None:
    """``count`` workers in this process, sharing one ZeroMQ context, until SIGTERM."""
    import zmq.asyncio
    from flowbot_worker import Worker

    context = zmq.asyncio.Context()
    workers = [
        Worker(endpoint, f"w{i}", SECRET, Path(root) / f"w{i}", context=context, keep_trying=True)
        for i in range(first, first + count)
    ]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: [w.stop() for w in workers])
    await asyncio.gather(*(w.run() for w in workers))
    context.term()


async def run_watchers(base: str, count: int) -> None:
    """``count`` WebSocket clients taking every event (and throwing it away) until SIGTERM.

    Each reads the stream's bytes without decoding its frames: real clients run elsewhere, and 50
    Python clients decoding every frame would take more of this machine's two cores than the master
    does, so the figure would measure them rather than what they cost the master."""
    host, port = base.rsplit(":", 1)

    async def client() -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /api/events HTTP/1.1\r\nHost: {base}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 101 " not in status:
            raise RuntimeError(f"/api/events answered {status!r}")
        await reader.readuntil(b"\r\n\r\n")
        return reader

    readers = [await client() for _ in range(count)]
    print("connected", flush=True)

    async def read(reader: asyncio.StreamReader) -> None:
        while await reader.read(1 << 16):
            pass

    await asyncio.gather(*(read(r) for r in readers))


def main() -> None:
    if sys.argv[1:2] == ["_workers"]:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        endpoint, root, first, count = sys.argv[2:6]
        asyncio.run(run_workers(endpoint, root, int(first), int(count)))
        return
    if sys.argv[1:2] == ["_watchers"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_watchers(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("-w", type=int, default=2000, help="workers (workers, queued)")
    parser.add_argument("-n", type=int, default=2000, help="requests queued (queued); builds a batch (watchers)")
    parser.add_argument("--idle", type=float, default=30, help="seconds the idle CPU is measured over (workers)")
    parser.add_argument("--deep", type=int, default=25_000, help="requests queued before the kill (restart)")
    parser.add_argument("--rate-builds", type=int, default=2000, help="builds the dispatch rate is taken over")
    parser.add_argument("--flood", type=int, default=1 << 30, help="bytes the step prints (flood)")
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients (watchers)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (watchers)")
    parser.add_argument("--keep", action="store_true", help="keep the directories (logs, databases)")
    parser.add_argument("--json", help="also write the figures there")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    failed = []
    for name in args.scenarios:
        root = Path(tempfile.mkdtemp(prefix=f"flowbot-scale-{name}-"))
        print(f"{name}: running ({root}); load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            figures[name] = asyncio.run(SCENARIOS[name](root, args))
        except Exception as exc:  # the scenario could not finish: a real failure, unlike a missed target
            print(f"{name:9} FAILED: {exc} (see {root})", flush=True)
            failed.append(name)
            continue
        figures[name]["scenario_s"] = time.perf_counter() - began
        figures[name]["load_average"] = os.getloadavg()[0]
        report(name, figures[name], TARGETS.get(name, {}))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
