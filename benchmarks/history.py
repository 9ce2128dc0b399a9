"""History at scale: a synthetic year of CI on 50 builders, and how fast ``flowbot.History`` reads it.

Fills a fresh store (migrated by flowbot, so it has the real schema and indexes) with bulk inserts,
not through a master: at full scale 1,000,000 builds, 5,000,000 steps, 20,000,000 test results,
200,000 changes, and the logs of the last 30 days' compile and test steps (what a
``Retention(logs="30d")`` store holds). Then it times ``builds()``, ``failure_rate()``,
``flaky_tests()`` and ``search_logs()`` (median of three runs, after one warm-up).

The history is shaped like a real one: each change starts a buildset on a group of five builders;
90 % of changes are on main; queue times are exponential with a long tail; each builder has two
flaky tests (4 % of runs fail) and breaks now and then for a few builds (one test fails until it is
fixed); 0.1 % of failing logs show a segmentation fault.

    nice -n 10 python benchmarks/history.py --db sqlite:////tmp/history.sqlite --scale 1
    nice -n 10 python benchmarks/history.py --db postgresql+psycopg://postgres@127.0.0.1:5432/fbhistory
    python benchmarks/history.py --db ... --reuse        # time an existing one again

The PostgreSQL database is created (and must not exist yet); it is left in place for --reuse.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from flowbot.analysis import History
from flowbot.store.engine import create_engine, migrate
from flowbot.store.log_search import QUEUE_TABLE, index_queued

DAY = 86400.0
BUILDERS = 50
GROUP = 5  # builders per buildset
WORKERS = 20
STEPS = ("checkout", "compile", "test", "lint", "upload")
TESTS = 20  # per test step
FLAKY = (3, 11)  # test numbers that fail 4 % of the time on every builder
LOG_DAYS = 30
CHUNK = 50_000  # builds generated and written at a time


# -- generating -------------------------------------------------------------------------------------


def builder_name(index: np.ndarray) -> np.ndarray:
    return np.char.add("builder-", np.char.zfill(index.astype(str), 2))


def history_chunk(lo: int, hi: int, total: int, end: float, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Rows of every table for builds ``lo`` to ``hi`` (0-based) of ``total`` ending at ``end``."""
    n = hi - lo
    index = np.arange(lo, hi)
    build_id = index + 1
    buildset = index // GROUP
    builder = (buildset % (BUILDERS // GROUP)) * GROUP + index % GROUP
    number = buildset // (BUILDERS // GROUP) + 1
    sets = np.arange(lo // GROUP, hi // GROUP)  # chunks hold whole buildsets
    set_time = end - 365 * DAY + sets * (365 * DAY * GROUP / total)
    submitted = np.repeat(set_time, GROUP)
    queue = rng.exponential(45.0, n) + np.where(rng.random(n) < 0.02, rng.exponential(1800.0, n), 0.0)
    start = submitted + queue
    took = rng.lognormal(np.log(300 + 20 * builder), 0.4)
    finished = start + took

    # Tests: two flaky ones, and a breakage of one test every 97 builds for 3 builds.
    outcome = np.full((n, TESTS), "passed", dtype=object)
    outcome[:, TESTS - 1] = "skipped"
    for flaky in FLAKY:
        outcome[rng.random(n) < 0.04, flaky] = "failed"
    broken = (number % 97) < 3
    outcome[broken, (number[broken] // 97) % (TESTS - 1)] = "failed"
    failed = (outcome == "failed").any(axis=1)
    result = np.where(failed, 2, np.where(rng.random(n) < 0.03, 1, 0))
    odd = rng.random(n)
    result = np.where(odd < 0.005, 4, np.where(odd < 0.01, 6, np.where(odd < 0.015, 5, result)))

    main = rng.random(len(sets)) < 0.9
    branch_of_set = np.where(main, "main", np.char.add("feature-", (sets % 20).astype(str)))
    revision_of_set = np.array([f"{s * 2654435761:040x}" for s in sets.tolist()])
    position = buildset - sets[0]
    names = builder_name(builder)
    frames: dict[str, pd.DataFrame] = {}
    sets = sets
    frames["changes"] = pd.DataFrame(
        {
            "id": sets + 1,
            "repository": "https://example.org/app.git",
            "branch": branch_of_set,
            "revision": revision_of_set,
            "project": "app",
            "codebase": "",
            "author": np.char.add("dev", (sets % 40).astype(str)),
            "committer": "",
            "comments": "change " + pd.Series(sets).astype(str),
            "revlink": "",
            "when_at": set_time - 120,
            "received_at": set_time,
            "properties": "{}",
        }
    )
    frames["buildsets"] = pd.DataFrame(
        {
            "id": sets + 1,
            "scheduler": "on-change",
            "reason": "",
            "properties": "{}",
            "submitted_at": set_time,
            "complete_at": set_time + 3600,
            "result": 0,
        }
    )
    frames["sourcestamps"] = pd.DataFrame(
        {
            "id": sets + 1,
            "buildset_id": sets + 1,
            "codebase": "",
            "repository": "https://example.org/app.git",
            "branch": branch_of_set,
            "revision": revision_of_set,
            "project": "app",
        }
    )
    frames["buildset_changes"] = pd.DataFrame({"buildset_id": sets + 1, "change_id": sets + 1})
    frames["buildrequests"] = pd.DataFrame(
        {
            "id": build_id,
            "buildset_id": buildset + 1,
            "builder": names,
            "priority": 0,
            "submitted_at": submitted,
            "claimed_at": start,
            "claimed_by": "master",
            "complete_at": finished,
            "result": result,
        }
    )
    frames["builds"] = pd.DataFrame(
        {
            "id": build_id,
            "request_id": build_id,
            "builder": names,
            "number": number,
            "worker": np.char.add("worker-", ((builder * 7 + index) % WORKERS).astype(str)),
            "branch": branch_of_set[position],
            "revision": revision_of_set[position],
            "submitted_at": submitted,
            "started_at": start,
            "finished_at": finished,
            "result": result,
            "summary": "",
        }
    )
    share = np.array([0.05, 0.35, 0.45, 0.1, 0.05])
    step_start = start[:, None] + np.cumsum(np.r_[0, share[:-1]])[None, :] * took[:, None]
    step_result = np.zeros((n, len(STEPS)), dtype=np.int64)
    step_result[:, 2] = np.where(failed, 2, 0)
    frames["steps"] = pd.DataFrame(
        {
            "id": ((build_id - 1)[:, None] * len(STEPS) + np.arange(1, len(STEPS) + 1)).ravel(),
            "build_id": np.repeat(build_id, len(STEPS)),
            "number": np.tile(np.arange(len(STEPS)), n),
            "name": np.tile(np.array(STEPS), n),
            "started_at": step_start.ravel(),
            "finished_at": (step_start + share[None, :] * took[:, None]).ravel(),
            "result": step_result.ravel(),
            "hidden": False,
            "summary": "",
        }
    )
    test_step = (build_id - 1) * len(STEPS) + 3
    flat = outcome.ravel()
    tests = np.tile(np.arange(TESTS), n)
    frames["test_results"] = pd.DataFrame(
        {
            "id": ((build_id - 1)[:, None] * TESTS + np.arange(1, TESTS + 1)).ravel(),
            "build_id": np.repeat(build_id, TESTS),
            "step_id": np.repeat(test_step, TESTS),
            "suite": np.repeat(names, TESTS),
            "classname": np.char.add("tests.test_mod", (tests % 4).astype(str)),
            "name": np.char.add("test_case_", tests.astype(str)),
            "outcome": flat,
            "duration": rng.exponential(0.5, n * TESTS),
            "message": np.where(flat == "failed", "AssertionError: expected 200, got 503", ""),
        }
    )
    recent = start >= end - LOG_DAYS * DAY
    frames["log_chunks"] = log_chunks(build_id[recent], failed[recent], rng)
    return frames


def log_chunks(build_id: np.ndarray, failed: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One stdio chunk for the compile step and one for the test step of each build."""
    rows = []
    crash = rng.random(len(build_id)) < 0.001
    for build, bad, segv in zip(build_id.tolist(), failed.tolist(), crash.tolist(), strict=True):
        compile_lines = ["make -j4", *(f"cc -O2 -c src/module_{i}.c -o build/module_{i}.o" for i in range(8)), "ok"]
        test_lines = ["pytest -q --junitxml=report.xml", *(f"tests/test_mod{i}.py ....." for i in range(4))]
        if bad:
            test_lines += ["E   AssertionError: expected 200, got 503", "error: 1 test failed"]
        if segv:
            test_lines += ["Fatal Python error: Segmentation fault (core dumped)"]
        test_lines += [f"{TESTS} tests ran in 10.2s"]
        for step, lines in ((2, compile_lines), (3, test_lines)):
            step_id = (build - 1) * len(STEPS) + step
            rows.append((step_id, "stdio", 0, len(lines) - 1, "\n".join(lines), "o" * len(lines)))
    return pd.DataFrame(rows, columns=["step_id", "log", "first_line", "last_line", "content", "streams"])


# -- loading ----------------------------------------------------------------------------------------

ORDER = (
    "changes",
    "buildsets",
    "sourcestamps",
    "buildset_changes",
    "buildrequests",
    "builds",
    "steps",
    "test_results",
    "log_chunks",
)


def loader(engine: sa.Engine) -> Callable[[dict[str, pd.DataFrame]], None]:
    """A function that writes one chunk's frames in bulk: executemany on SQLite, COPY on PostgreSQL."""
    if engine.dialect.name == "sqlite":

        def load_sqlite(frames: dict[str, pd.DataFrame]) -> None:
            raw = engine.raw_connection()
            try:
                raw.execute("PRAGMA synchronous=OFF")
                for table in ORDER:
                    frame = frames[table]
                    marks = ",".join("?" * len(frame.columns))
                    sql = f"INSERT INTO {table} ({','.join(frame.columns)}) VALUES ({marks})"
                    raw.executemany(sql, zip(*(frame[c].tolist() for c in frame.columns), strict=True))
                raw.commit()
            finally:
                raw.close()

        return load_sqlite

    def load_postgres(frames: dict[str, pd.DataFrame]) -> None:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for table in ORDER:
                frame = frames[table]
                text = frame.to_csv(index=False, header=False, na_rep="\\N")
                columns = ",".join(frame.columns)
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
                    copy.write(text)
            raw.commit()
        finally:
            raw.close()

    return load_postgres


def generate(url: str, scale: float, seed: int = 5) -> dict[str, float]:
    """Create the database, migrate it, fill it; returns counts and seconds taken."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
        admin.dispose()
    elif Path(parsed.database).exists():
        raise SystemExit(f"{parsed.database} exists; remove it or pass --reuse")
    engine = create_engine(url)
    migrate(engine)
    total = int(1_000_000 * scale) // GROUP * GROUP
    rng = np.random.default_rng(seed)
    end = time.time()
    write = loader(engine)
    began = time.perf_counter()
    for lo in range(0, total, CHUNK):
        write(history_chunk(lo, min(lo + CHUNK, total), total, end, rng))
        print(f"  {min(lo + CHUNK, total):,} builds written, {time.perf_counter() - began:.0f} s", flush=True)
    if sa.inspect(engine).has_table(QUEUE_TABLE):  # index the logs for search, as a running master does
        with engine.begin() as conn:
            while index_queued(conn, 10_000):
                pass
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in ORDER:
                if table != "buildset_changes":  # later inserts must not reuse the ids written here
                    sequence = f"pg_get_serial_sequence('{table}', 'id')"
                    conn.exec_driver_sql(f"SELECT setval({sequence}, max(id)) FROM {table}")
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - began
    with engine.connect() as conn:
        counts = {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() for table in ORDER}
    engine.dispose()
    return {"generate_seconds": round(seconds, 1), **counts}


# -- timing -----------------------------------------------------------------------------------------


def timed(fn: Callable[[], pd.DataFrame], runs: int = 3) -> tuple[float, int]:
    """Median seconds of ``runs`` calls after a warm-up, and the rows the answer had."""
    rows = len(fn())
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), rows


def measure(url: str) -> Iterator[tuple[str, float, int]]:
    with History(url) as history:
        yield ("builds()", *timed(history.builds))
        yield ("builds(builder=...)", *timed(lambda: history.builds(builder="builder-07")))
        yield ('failure_rate(freq="D")', *timed(history.failure_rate))
        yield ('failure_rate(by=None, freq="W")', *timed(lambda: history.failure_rate(by=None, freq="W")))
        yield ('flaky_tests(window="7d")', *timed(history.flaky_tests))
        yield ('flaky_tests(window="30d")', *timed(lambda: history.flaky_tests(window="30d")))
        yield ('search_logs("segmentation fault")', *timed(lambda: history.search_logs("segmentation fault")))
        yield ('search_logs("error")', *timed(lambda: history.search_logs("error")))
        yield ('search_logs("error", builder=...)', *timed(lambda: history.search_logs("error", builder="builder-07")))
        yield ("queue_times()", *timed(history.queue_times))
        yield ("culprits(builder)", *timed(lambda: history.culprits("builder-07")))
        yield ('test_results(since="1d")', *timed(lambda: history.test_results(since="1d")))


def size_of(url: str) -> str:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"{os.path.getsize(parsed.database) / 2**30:.1f} GiB"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return f"{size / 2**30:.1f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of a database to create")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 builds (default)")
    parser.add_argument("--reuse", action="store_true", help="time an existing database, do not generate")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report: dict[str, object] = {"db": sa.make_url(args.db).get_backend_name(), "scale": args.scale}
    if not args.reuse:
        print(f"generating {args.scale:g} x 1M builds into {args.db}", flush=True)
        report.update(generate(args.db, args.scale))
        print(json.dumps(report), flush=True)
    report["size"] = size_of(args.db)
    print(f"{'call':40} {'median s':>9} {'rows':>10}")
    for name, seconds, rows in measure(args.db):
        print(f"{name:40} {seconds:9.2f} {rows:10,}", flush=True)
        report[name] = {"seconds": round(seconds, 3), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
