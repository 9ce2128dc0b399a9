"""What change sources and schedulers remember between runs (``state``: owner, key, value)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from ..defaults import LOG_CHUNK_BYTES
from . import schema as t
from .access import Access


class State:
    """Values remembered per owner (a change source or scheduler)."""

    def __init__(self, db: Access):
        self._db = db

    async def get(self, owner: str) -> dict[str, Any]:
        """What ``owner`` (a change source or scheduler) remembered."""
        query = sa.select(t.state.c.key, t.state.c.value).where(t.state.c.owner == owner)
        return await self._db.read(lambda conn: dict(conn.execute(query).all()))

    async def set(self, owner: str, values: dict[str, Any]) -> None:
        await self._db.submit(lambda conn: remember(conn, owner, values))


def remember(conn: sa.Connection, owner: str, values: dict[str, Any]) -> None:
    """Remember ``values`` for ``owner`` (in the caller's transaction)."""
    for key, value in values.items():
        upsert(conn, t.state, {"owner": owner, "key": key}, {"value": value})


def upsert(conn: sa.Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any], **new: Any) -> None:
    """Update the row of ``table`` with ``key`` to ``values``; insert it (with ``new``) if there is none."""
    where = [table.c[column] == value for column, value in key.items()]
    if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(table.insert(), {**key, **new, **values})


def probe(conn: sa.Connection) -> None:
    """Write what a log chunk weighs and take it back: whether the database takes writes again
    (a nearly full disk may take a small one, and a read proves nothing)."""
    key = {"owner": "flowbot.store", "key": "probe"}
    conn.execute(t.state.insert(), {**key, "value": os.urandom(LOG_CHUNK_BYTES // 2).hex()})
    conn.execute(t.state.delete().where(t.state.c.owner == key["owner"], t.state.c.key == key["key"]))
