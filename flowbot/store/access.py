"""What a store component needs of the store: reads and writes on its thread, and ids of rows
written earlier in the queue.

Components (changes, requests, builds, steps, logs, workers, state, pull requests) own their
queries and run them through :class:`Access`; :class:`~flowbot.store.store.Store` is the one implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

import sqlalchemy as sa

from ..errors import StoreError

T = TypeVar("T")


class Access(Protocol):
    """The store's database, as its components use it."""

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` with a connection on the store's thread."""
        ...

    def submit(self, op: Callable[[sa.Connection], T], *, wait: float = 0.0) -> asyncio.Future[T]:
        """Queue a write; ``wait``: seconds it may wait for a database that cannot take it."""
        ...

    def keep(self, op: Callable[[sa.Connection], T]) -> asyncio.Future[T]:
        """Queue a write of what has happened already: it waits for the database as long as it takes."""
        ...


class Ref:
    """An id the store assigns when a queued write runs; writes queued after it may use it."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: int | None = None

    def get(self) -> int:
        if self.id is None:
            raise StoreError("an earlier write that this one depends on failed")
        return self.id
