"""Throughput and latency of trivial builds: flowbot's side of Buildbot's anchor workload.

Starts a real master and W real workers (separate processes, loopback only), one builder whose
single step runs ``true``, then:

1. idle latency: K changes one after another, each timed from the POST to the build's
   ``build.finished`` event on the WebSocket stream (p50 / p95);
2. throughput: N changes submitted at once over a few keep-alive HTTP connections, timed until
   the N-th build has finished; R such batches run one after another and the median one is
   reported (a shared machine's speed wanders from second to second). The master's CPU time
   (user + system, from /proc) over the batch is divided by N, and its peak RSS (VmHWM) is read
   at the end.

With ``--probe OUT`` the master runs under ``probe.py``, which counts its work over the batches
(SQL statements, commits, dispatch passes, loop callbacks and ``call_soon`` per build: figures that,
unlike the times, do not depend on what else the machine runs) and, with ``--profile``, profiles
its loop's thread during the batches into ``OUT.prof``. The counting itself costs CPU: take the
times from a run without it.

    python benchmarks/throughput.py -n 200 -w 1
    python benchmarks/throughput.py -n 200 -w 4 --json out.json
    python benchmarks/throughput.py -n 1000 -w 1 -r 1 --probe /tmp/master --profile
    python benchmarks/throughput.py -n 200 -w 1 -r 1 -k 5 --callgrind /tmp/master

With ``--callgrind OUT`` the master runs under Valgrind's callgrind, collecting only during the
batches: the instructions it executes per build (its loop and its threads), a count that, unlike
its CPU time, stays the same on a busy machine (``callgrind_annotate OUT.*`` says where they go).
The master runs some fifty times slower under it, so its times mean nothing then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowbot_worker.launch import SECRET_VARIABLE
from flowbot_worker.launch import command as worker_command
from tornado.websocket import websocket_connect

PIPELINE = """
from flowbot import AnyBranchScheduler, Builder, Pipeline, Shell, Worker
W = {workers}
pipeline = Pipeline(
    workers=[Worker(f"w{{i}}", secret=f"secret-{{i}}") for i in range(W)],
    schedulers=[AnyBranchScheduler("all", builders=["b"])],
    builders=[Builder("b", workers=[f"w{{i}}" for i in range(W)], collapse_requests=False,
                      steps=[Shell(["true"], name="true")])],
)
"""
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each of the process's threads, by thread name (summed)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class KeepAlive:
    """A minimal HTTP/1.1 client on one kept-alive connection (POST JSON, read the answer)."""

    def __init__(self, port: int):
        self.port = port

    async def __aenter__(self) -> KeepAlive:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def post(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        answer = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 201"):
            raise RuntimeError(f"{path}: {head.splitlines()[0].decode()} {answer.decode()}")
        return json.loads(answer)


async def drive(
    http_port: int,
    master_pid: int,
    worker_pids: list[int],
    n: int,
    workers: int,
    k: int,
    connections: int,
    repeat: int,
    probe: str | None = None,
    profile: bool = False,
    callgrind: bool = False,
) -> dict:
    base = f"127.0.0.1:{http_port}"
    finished: dict[str, float] = {}
    results: dict[str, str] = {}
    waiters: dict[str, asyncio.Future] = {}
    stream = await websocket_connect(f"ws://{base}/api/events?types=build.finished")

    async def listen() -> None:
        while (message := await stream.read_message()) is not None:
            event = json.loads(message)
            if event["type"] == "build.finished":
                revision = event["build"]["revision"]
                finished[revision] = time.perf_counter()
                results[revision] = event["build"]["result"]
                if revision in waiters:
                    waiters.pop(revision).set_result(None)

    listener = asyncio.create_task(listen())
    async with KeepAlive(http_port) as http:
        deadline = time.monotonic() + 60
        while True:  # wait until every worker is connected
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            writer.write(f"GET /api/workers HTTP/1.1\r\nHost: {base}\r\nConnection: close\r\n\r\n".encode())
            body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
            writer.close()
            if sum(w["connected"] for w in json.loads(body)["workers"]) == workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)

        latencies = []
        for i in range(k):
            revision = f"idle-{i}"
            waiters[revision] = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            await http.post("/api/changes", {"branch": "main", "revision": revision, "author": "bench"})
            await asyncio.wait_for(waiters[revision], 30)
            latencies.append((finished[revision] - start) * 1000)
            await asyncio.sleep(0.05)

    batches = []
    counted: dict[str, float] = {}
    for batch in range(repeat):
        await asyncio.sleep(0.5)
        if probe:
            before = await snapshot(master_pid, probe, signal.SIGUSR2 if profile else None)
        if callgrind:
            subprocess.run(["callgrind_control", "--instr=on", str(master_pid)], check=True, capture_output=True)
        batches.append(await run_batch(http_port, master_pid, worker_pids, n, connections, finished, results, batch))
        if callgrind:
            await asyncio.sleep(0.5)  # the last build's records and events
            subprocess.run(["callgrind_control", "--instr=off", str(master_pid)], check=True, capture_output=True)
        if probe:
            await asyncio.sleep(0.2)  # the last build's records and events
            after = await snapshot(master_pid, probe, signal.SIGUSR2 if profile else None)
            for key in after.keys() - {"at"}:
                counted[key] = counted.get(key, 0) + after[key] - before.get(key, 0)
    listener.cancel()
    stream.close()
    middle = sorted(batches, key=lambda b: b["builds_per_s"])[len(batches) // 2]  # the median batch
    return {
        "builds": n,
        "workers": workers,
        **middle,
        "batches": [round(b["builds_per_s"], 1) for b in batches],
        "idle_n": k,
        "idle_p50_latency_ms": statistics.median(latencies),
        "idle_p95_latency_ms": sorted(latencies)[int(0.95 * (len(latencies) - 1))],
        "idle_latencies_ms": [round(x, 2) for x in latencies],
        "master_rss_mb": peak_rss_mb(master_pid),
        "per_build": {key: round(value / (n * repeat), 2) for key, value in sorted(counted.items())},
    }


async def snapshot(master_pid: int, probe: str, profile: signal.Signals | None) -> dict[str, float]:
    """The probe's counters now (and the profiler started or stopped)."""
    path = Path(probe + ".counts")
    lines = path.read_text().count("\n") if path.exists() else 0
    if profile is not None:
        os.kill(master_pid, profile)
    os.kill(master_pid, signal.SIGUSR1)
    for _ in range(500):
        if path.exists() and path.read_text().count("\n") > lines:
            return json.loads(path.read_text().splitlines()[-1])
        await asyncio.sleep(0.01)
    raise RuntimeError("the probe did not answer")


async def run_batch(
    http_port: int,
    master_pid: int,
    worker_pids: list[int],
    n: int,
    connections: int,
    finished: dict[str, float],
    results: dict[str, str],
    batch: int,
) -> dict:
    """Submit ``n`` changes at once and time them until the last build has finished."""
    cpu_before = cpu_seconds(master_pid)
    threads_before = thread_cpu_seconds(master_pid)
    workers_cpu_before = sum(cpu_seconds(pid) for pid in worker_pids)
    start = time.perf_counter()
    revisions = [f"batch{batch}-{i}" for i in range(n)]

    async def submit(chunk: list[str]) -> None:
        async with KeepAlive(http_port) as http:
            for revision in chunk:
                await http.post("/api/changes", {"branch": "main", "revision": revision, "author": "bench"})

    await asyncio.gather(*(submit(revisions[i::connections]) for i in range(connections)))
    submitted = time.perf_counter() - start
    deadline = time.monotonic() + 600
    while not all(r in finished for r in revisions):
        if time.monotonic() > deadline:
            raise RuntimeError("the batch did not finish in 600 s")
        await asyncio.sleep(0.002)
    wall = max(finished[r] for r in revisions) - start
    cpu = cpu_seconds(master_pid) - cpu_before
    threads = thread_cpu_seconds(master_pid)
    workers_cpu = sum(cpu_seconds(pid) for pid in worker_pids) - workers_cpu_before
    return {
        "wall_s": wall,
        "builds_per_s": n / wall,
        "submit_s": submitted,
        "batch_p50_latency_ms": statistics.median(sorted((finished[r] - start) * 1000 for r in revisions)),
        "master_cpu_s": cpu,
        "master_cpu_ms_per_build": cpu / n * 1000,
        # The loop's thread is the process's first (named as the process); the rest are ZeroMQ's
        # I/O thread and the store's.
        "master_threads_cpu_ms_per_build": {
            name: round((seconds - threads_before.get(name, 0.0)) / n * 1000, 3) for name, seconds in threads.items()
        },
        "workers_cpu_ms_per_build": workers_cpu / n * 1000,
        "failed": sum(results[r] != "SUCCESS" for r in revisions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="builds in the batch")
    parser.add_argument("-w", type=int, default=1, help="workers")
    parser.add_argument("-k", type=int, default=20, help="builds one at a time for the idle latency")
    parser.add_argument("-c", type=int, default=4, help="HTTP connections submitting the batch")
    parser.add_argument("-r", type=int, default=5, help="batches; the median one is reported")
    parser.add_argument("--db", help="database URL (default: SQLite in the master directory)")
    parser.add_argument("--json", help="also write the result there")
    parser.add_argument("--probe", metavar="OUT", help="count the master's work per build (see probe.py) into OUT.*")
    parser.add_argument("--profile", action="store_true", help="with --probe: profile the batches into OUT.prof")
    parser.add_argument(
        "--callgrind", metavar="OUT", help="count the master's instructions per build (Valgrind) into OUT.*"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="flowbot-bench-"))
    (root / "master").mkdir()
    (root / "master" / "pipeline.py").write_text(PIPELINE.format(workers=args.w))
    http_port, zmq_port = free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    with contextlib.ExitStack() as stack:
        processes: list[subprocess.Popen] = []

        def spawn(argv: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
            output = stack.enter_context(open(root / log, "wb"))
            proc = subprocess.Popen(argv, stderr=output, env={**os.environ, **(env or {})})
            processes.append(proc)
            return proc

        master_cmd = [sys.executable, "-m", "flowbot", "start", str(root / "master")]
        if args.probe:
            master_cmd[1:3] = [str(Path(__file__).with_name("probe.py")), args.probe, "--"]
        if args.callgrind:
            master_cmd[:0] = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",  # nothing counted until the first batch
                f"--callgrind-out-file={args.callgrind}.%p",
            ]
        master_cmd += ["--http", f"127.0.0.1:{http_port}", "--zmq", endpoint]
        if args.db:
            master_cmd += ["--db", args.db]
        try:
            master = spawn(master_cmd, "master.log")
            workers = [
                spawn(worker_command(endpoint, f"w{i}", root / f"w{i}"), f"w{i}.log", {SECRET_VARIABLE: f"secret-{i}"})
                for i in range(args.w)
            ]
            # A loaded machine starts a master slowly, and Valgrind slower still.
            deadline = time.monotonic() + (600 if args.callgrind else 60)
            while time.monotonic() < deadline and master.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", http_port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            result = asyncio.run(
                drive(
                    http_port,
                    master.pid,
                    [w.pid for w in workers],
                    args.n,
                    args.w,
                    args.k,
                    args.c,
                    args.r,
                    args.probe,
                    args.profile,
                    bool(args.callgrind),
                )
            )
        finally:
            for proc in processes:
                proc.terminate()
            for proc in processes:
                proc.wait(timeout=20)
    print(
        f"flowbot builds={result['builds']} workers={result['workers']} wall_s={result['wall_s']:.3f} "
        f"builds_per_s={result['builds_per_s']:.1f} idle_p50_latency_ms={result['idle_p50_latency_ms']:.2f} "
        f"idle_p95_latency_ms={result['idle_p95_latency_ms']:.2f} "
        f"master_cpu_ms_per_build={result['master_cpu_ms_per_build']:.3f} "
        f"master_rss_mb={result['master_rss_mb']:.1f} "
        f"master_threads_cpu_ms_per_build={result['master_threads_cpu_ms_per_build']} "
        f"workers_cpu_ms_per_build={result['workers_cpu_ms_per_build']:.3f} failed={result['failed']} "
        f"batches_builds_per_s={result['batches']}"
    )
    if args.callgrind:
        (dump,) = Path(args.callgrind).parent.glob(f"{Path(args.callgrind).name}.{master.pid}")
        totals = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
        print(f"master instructions per build: {int(totals.split()[1]) / (args.n * args.r):,.0f} ({dump})")
    if result["per_build"]:
        counted = result["per_build"].items()
        print(
            "per build: "
            + " ".join(f"{key}={value}" for key, value in counted if not key.startswith(("sql ", "soon ")))
        )
        soon = "\n".join(
            f"  {v:6.2f} {k[5:]}"
            for k, v in sorted(counted, key=lambda kv: -kv[1])
            if k.startswith("soon ") and v >= 0.05
        )
        if soon:
            print("call_soon per build, by caller:\n" + soon)
        print(
            "statements per build:\n"
            + "\n".join(f"  {v:6.2f} {k[4:]}" for k, v in counted if k.startswith("sql ") and v)
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
