"""A master with its work counted: what ``throughput.py --probe`` starts instead of ``flowbot``.

    python benchmarks/probe.py OUT -- start DIR --http ... --zmq ...

Runs ``flowbot`` with these arguments in this process, counting as it goes: callbacks the event
loop runs and ``call_soon`` calls; SQL statements as SQLite's driver is handed them (so the hot
path's statements on the driver's cursor count too; an ``executemany`` counts once, its rows apart;
``BEGIN`` and ``COMMIT`` apart; each kind by its first words, as ``sql ...``); group commits;
dispatch passes; and cycle collections by generation, with the loop's CPU time in them. Counts of
other threads than the loop's are prefixed ``thread_``.

Each SIGUSR1 appends a snapshot of the counters to ``OUT.counts`` (one JSON object a line), so the
difference of two snapshots is what happened between them. With ``PROBE_CALLERS=1`` in its
environment it also counts who asked for each ``call_soon`` (``soon FILE:FUNCTION -> CALLBACK``;
slower). SIGUSR2 starts, and then stops and writes to ``OUT.prof``, a profile of the loop's thread
on that thread's CPU clock (``pstats`` reads it).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import signal
import sys
import threading
import time
from collections import Counter

counts: Counter[str] = Counter()


def _caller(callback: object) -> str:
    """Who asked for ``callback``: the first frame outside asyncio, and what is called."""
    frame = sys._getframe(2)
    while frame is not None and "/asyncio/" in frame.f_code.co_filename:
        frame = frame.f_back
    where = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}" if frame else "?"
    what = getattr(callback, "__qualname__", None) or type(callback).__name__
    return f"{where} -> {what}"


def _count_loop(by_caller: bool) -> None:
    handle_run = asyncio.events.Handle._run
    call_soon = asyncio.BaseEventLoop.call_soon

    def counted_run(self: asyncio.Handle) -> None:
        counts["callbacks"] += 1
        handle_run(self)

    def counted_call_soon(self: asyncio.AbstractEventLoop, *args: object, **kwargs: object) -> asyncio.Handle:
        counts["call_soon"] += 1
        if by_caller:
            counts[f"soon {_caller(args[0])}"] += 1
        return call_soon(self, *args, **kwargs)

    asyncio.events.Handle._run = counted_run
    asyncio.BaseEventLoop.call_soon = counted_call_soon


def _count_statements() -> None:
    """Statements as the driver is handed them (an ``executemany`` is one, its rows counted
    apart); ``BEGIN`` and ``COMMIT`` from SQLite's trace, which also repeats statements that fire triggers."""
    import sqlite3.dbapi2

    main = threading.main_thread()

    def where() -> str:
        return "" if threading.current_thread() is main else "thread_"

    def count(sql: str, rows: int) -> None:
        prefix = where()
        counts[prefix + "statements"] += 1
        counts[prefix + "rows"] += rows
        counts[f"sql {prefix}{' '.join(sql.split()[:3])[:60]}"] += 1

    class Cursor(sqlite3.dbapi2.Cursor):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            count(sql, 1)
            return super().execute(sql, *args)

        def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
            rows = list(rows)
            count(sql, len(rows))
            return super().executemany(sql, rows)

    class Connection(sqlite3.dbapi2.Connection):
        def cursor(self, factory: type = Cursor) -> sqlite3.Cursor:
            return super().cursor(factory)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            return self.cursor().execute(sql, *args)

    def trace(statement: str) -> None:
        word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if word in ("BEGIN", "COMMIT", "ROLLBACK"):
            counts[where() + word.lower()] += 1

    connect = sqlite3.dbapi2.connect

    def counted_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        connection = connect(*args, **{**kwargs, "factory": Connection})
        connection.set_trace_callback(trace)
        return connection

    sqlite3.dbapi2.connect = counted_connect


def _count_master() -> None:
    from flowbot.master.dispatch import Dispatcher
    from flowbot.store.writer import GroupWriter

    for cls, name, key in ((Dispatcher, "_assign", "dispatch_passes"), (GroupWriter, "_flush", "group_commits")):
        original = getattr(cls, name)

        def counted(self: object, *args: object, _original=original, _key=key) -> object:
            counts[_key] += 1
            return _original(self, *args)

        setattr(cls, name, counted)


def _count_collections() -> None:
    """Cycle collections by generation, and the loop thread's CPU time in them (``gc_ms``)."""
    import gc

    started: list[float] = []

    def collected(phase: str, info: dict) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if phase == "start":
            started.append(time.thread_time())
        elif started:
            counts["gc_ms"] += (time.thread_time() - started.pop()) * 1000
            counts[f"gc_gen{info['generation']}"] += 1

    gc.callbacks.append(collected)


def main() -> None:
    out, separator, *argv = sys.argv[1:]
    if separator != "--":
        raise SystemExit(__doc__)
    _count_loop(bool(os.environ.get("PROBE_CALLERS")))
    _count_statements()
    _count_master()
    _count_collections()
    profile: list[cProfile.Profile] = []

    def snapshot(*_: object) -> None:
        with open(out + ".counts", "a") as f:
            f.write(json.dumps({"at": time.time(), **counts}) + "\n")

    def toggle_profile(*_: object) -> None:
        if profile:
            profiler = profile.pop()
            profiler.disable()
            profiler.dump_stats(out + ".prof")
        else:
            profiler = cProfile.Profile(time.thread_time)
            profile.append(profiler)
            profiler.enable()

    signal.signal(signal.SIGUSR1, snapshot)
    signal.signal(signal.SIGUSR2, toggle_profile)
    from flowbot.cli import main as flowbot

    sys.argv = ["flowbot", *argv]
    flowbot()


if __name__ == "__main__":
    main()
