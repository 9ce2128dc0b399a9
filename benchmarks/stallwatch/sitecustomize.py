"""What holds a master's event loop: put this directory on ``PYTHONPATH`` of a benchmark run.

In a process started as ``flowbot start`` (the others are left alone) it writes to
``$STALLWATCH_DIR/stallwatch-PID.txt`` (default ``/tmp``):

- ``=== turn``: a turn of the loop that took more than ``$STALLWATCH_MS`` (default 50) ms of the
  loop thread's CPU time, with the callbacks that were ready at its start, counted by name;
- ``=== stall``: one callback that held the loop that long, with the main thread's stacks (its
  flowbot frames, and the deepest frame) sampled every 4 ms by a thread meanwhile;
- ``=== gc2``: a full collection of the garbage collector that took over a fifth of that, its CPU
  time and the objects it looked at.

CPU time, not wall time, so that a shared, loaded machine, which starves the process, does not
hide what the loop itself does. Samples lean towards calls that release the GIL (system calls).

    PYTHONPATH=benchmarks/stallwatch python benchmarks/scale.py queued -n 1000
    grep "=== " /tmp/stallwatch-*.txt
"""

import asyncio.base_events
import asyncio.events
import collections
import gc
import os
import sys
import threading
import time
import traceback

THRESHOLD = float(os.environ.get("STALLWATCH_MS", "50")) / 1000
_state = [0, 0.0, None, 0.0]  # callbacks run, wall and CPU time the current one began, the callback
_run = asyncio.events.Handle._run
_run_once = asyncio.base_events.BaseEventLoop._run_once


def _master() -> bool:
    return "start" in sys.argv


def _write(text: str) -> None:
    with open(os.path.join(os.environ.get("STALLWATCH_DIR", "/tmp"), f"stallwatch-{os.getpid()}.txt"), "a") as out:
        out.write(text)


def _timed_run(self):
    _state[0] += 1
    _state[2] = self
    _state[3] = time.thread_time()
    _state[1] = time.perf_counter()
    try:
        return _run(self)
    finally:
        _state[1] = 0.0


def _name(handle) -> str:
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        return "task:" + getattr(task.get_coro(), "__qualname__", "?")
    return getattr(callback, "__qualname__", None) or type(callback).__name__


def _timed_run_once(self):
    ready = list(self._ready)  # other threads may add to it meanwhile
    cpu, wall = time.thread_time(), time.perf_counter()
    _run_once(self)
    cpu = time.thread_time() - cpu
    if cpu > THRESHOLD and _master():
        names = collections.Counter(_name(h) for h in ready).most_common(8)
        _write(f"=== turn cpu {cpu * 1000:.0f}ms wall {(time.perf_counter() - wall) * 1000:.0f}ms {dict(names)}\n")


def _stack(frame) -> tuple[str, ...]:
    frames = [f"{os.path.relpath(f.filename)}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)]
    ours = [f for f in frames if f.startswith("flowbot") and "/cli/" not in f and "__main__" not in f]
    return (*ours, "... " + frames[-1]) if frames and (not ours or ours[-1] != frames[-1]) else tuple(ours)


def _watch() -> None:
    time.sleep(0.5)
    if not _master():
        return
    main = threading.main_thread().ident
    clock = time.pthread_getcpuclockid(main)
    stall = None  # [callbacks run when it began, the callback, stacks, CPU so far]
    while True:
        time.sleep(0.004)
        count, began, handle, cpu_began = _state
        if stall is not None and (count != stall[0] or not began):
            lines = [f"=== stall cpu {stall[3] * 1000:.0f}ms+ {stall[1]!r:.200}\n"]
            for stack, samples in stall[2].most_common(5):
                lines += [f"  -- {samples} samples\n", *(f"     {f}\n" for f in stack[-12:])]
            _write("".join(lines))
            stall = None
        cpu = time.clock_gettime(clock) - cpu_began
        if began and cpu > THRESHOLD:
            if stall is None:
                stall = [count, handle, collections.Counter(), 0.0]
            stall[3] = cpu
            frame = sys._current_frames().get(main)
            if frame is not None:
                stall[2][_stack(frame)] += 1


_gc_began = [0.0]


def _collected(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_began[0] = time.thread_time()
    elif info.get("generation") == 2 and _master():
        took = time.thread_time() - _gc_began[0]
        if took > THRESHOLD / 5:  # (counting the objects takes a while too)
            _write(f"=== gc2 cpu {took * 1000:.1f}ms objects {len(gc.get_objects())}\n")


asyncio.events.Handle._run = _timed_run
asyncio.base_events.BaseEventLoop._run_once = _timed_run_once
gc.callbacks.append(_collected)
threading.Thread(target=_watch, daemon=True, name="stallwatch").start()
