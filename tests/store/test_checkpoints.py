"""SQLite's write-ahead log stays small while the master writes and others read."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

from flowbot.store import Store, engine


async def test_the_write_ahead_log_is_emptied_past_its_limit_once_a_reader_lets_go(tmp_path, monkeypatch) -> None:
    # Given a store whose log may grow to 1 MB, and a reader (a notebook, say) holding a snapshot
    monkeypatch.setattr(engine, "WAL_TRUNCATE_BYTES", 1 << 20)
    path = tmp_path / "state.sqlite"
    wal = tmp_path / "state.sqlite-wal"
    store = await Store.open(f"sqlite:///{path}")
    try:
        await store.submit(lambda conn: conn.exec_driver_sql("CREATE TABLE filler (data BLOB)"))
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM filler").fetchall()

        # When the master writes 4 MB meanwhile
        for _ in range(40):
            await store.submit(lambda conn: conn.exec_driver_sql("INSERT INTO filler VALUES (randomblob(100000))"))

        # Then the writes go on (no checkpoint waits for the reader), and the log is long while it reads
        await asyncio.sleep(2.5)
        assert wal.stat().st_size > 4_000_000

        # And once the reader lets go, a checkpoint empties the log, with no further write to prompt it
        reader.rollback()
        reader.close()
        deadline = time.monotonic() + 20
        while wal.stat().st_size > 0:
            assert time.monotonic() < deadline, f"the log still holds {wal.stat().st_size} bytes"
            await asyncio.sleep(0.1)
        with contextlib.closing(sqlite3.connect(path)) as check:
            assert check.execute("SELECT count(*) FROM filler").fetchone() == (40,)
    finally:
        await store.close()
