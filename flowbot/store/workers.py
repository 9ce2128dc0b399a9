"""Workers as the store remembers them: when each connected, was last heard from, was paused."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..records import RememberedWorker
from . import schema as t
from .access import Access
from .state import upsert


class Workers:
    """The ``workers`` table."""

    def __init__(self, db: Access):
        self._db = db

    async def connected(self, name: str, info: dict[str, Any], now: float) -> None:
        values = {"info": info, "connected_at": now, "disconnected_at": None, "last_seen": now}
        await self._db.keep(lambda conn: _upsert_worker(conn, name, values))

    async def paused(self, name: str, reason: str | None, now: float) -> None:
        """Record that ``name`` is paused (``reason`` a string, perhaps empty) or not (None)."""
        values = {"paused_at": None if reason is None else now, "paused_reason": reason}
        await self._db.submit(lambda conn: _upsert_worker(conn, name, values))

    async def disconnected(self, name: str, now: float, last_seen: float) -> None:
        await self._db.keep(
            lambda conn: conn.execute(
                t.workers.update().where(t.workers.c.name == name).values(disconnected_at=now, last_seen=last_seen)
            )
        )

    async def seen(self, seen: dict[str, float]) -> None:
        """Record when connected workers were last heard from (batched, every few seconds)."""
        if not seen:
            return
        # One statement for all of them (thousands of workers): compiled once, run as executemany.
        update = t.workers.update().where(t.workers.c.name == sa.bindparam("seen_name"))
        rows = [{"seen_name": name, "last_seen": when} for name, when in seen.items()]
        await self._db.keep(lambda conn: conn.execute(update, rows))

    async def all(self) -> dict[str, RememberedWorker]:
        """What the store remembers of each worker, by name."""

        def fn(conn: sa.Connection) -> dict[str, RememberedWorker]:
            return {
                row.name: RememberedWorker(
                    info=row.info,
                    connected_at=row.connected_at,
                    disconnected_at=row.disconnected_at,
                    last_seen=row.last_seen,
                    paused_at=row.paused_at,
                    paused_reason=row.paused_reason,
                )
                for row in conn.execute(sa.select(t.workers))
            }

        return await self._db.read(fn)


def _upsert_worker(conn: sa.Connection, name: str, values: dict[str, Any]) -> None:
    """Update the worker's row, making it if the worker was never seen (paused before it connected)."""
    upsert(conn, t.workers, {"name": name}, values, info={})
