"""The base class of change sources: nodes that put ``Change`` records into the graph.

A source is started by the master with a :class:`SourceContext`, through which it submits changes
(each stored, with what the schedulers make of it, before anything acts on it) and keeps what it
must remember across restarts (the last revision it saw of each branch, say). A webhook may also
withdraw the work of a pull request that was closed, and run a build again when someone asks: the
context offers these two acts, not the master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from ..fields import NAME, checked
from ..records import Change


class SourceContext(Protocol):
    """What the master offers a running change source."""

    #: The master's directory, where a source may keep caches (a poller's clone); None for a
    #: master without one (embedded in a notebook or a test), where a source uses a temporary one.
    basedir: Path | None

    async def add_change(self, change: Change, state: dict[str, Any] | None = None) -> int:
        """Submit a change; returns its id once it is stored, with ``state`` (what the source
        remembers, as :meth:`set_state` takes it) in the same transaction."""
        ...

    async def get_state(self) -> dict[str, Any]: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task the master owns: its failure is logged, and it is cancelled when
        the master stops, should the source's :meth:`ChangeSource.stop` not have ended it."""
        ...

    async def set_state(self, values: dict[str, Any]) -> None: ...

    async def cancel_pull_request(self, repository: str, number: int, reason: str) -> tuple[int, int]:
        """Cancel the pending requests and stop the running builds of pull request ``number`` of
        ``repository`` (as its changes name them); returns how many of each."""
        ...

    async def rebuild(self, build_id: int, reason: str, *, revision: str | None = None) -> list[int]:
        """Request build ``build_id`` again; returns the new request ids.

        Raises:
            NotFound: no such build. InvalidRequest: it did not build ``revision`` (when given),
                or its builder is gone.
        """
        ...


def check_codebase(codebase: str) -> str:
    """A source's ``codebase=``, checked.

    Raises:
        ValueError: not a string.
    """
    if not isinstance(codebase, str):
        raise ValueError(f"codebase must be a string (a name for the repository); got {codebase!r}")
    return codebase


class ChangeSource:
    """Base class for change sources; ``start``/``stop`` are no-ops to override.

    Args:
        name: unique among the pipeline's sources.
    """

    #: The codebase of the changes it makes ("" unless a pipeline builds several repositories).
    codebase = ""

    @checked(name=NAME)
    def __init__(self, name: str):
        self.name = name

    async def start(self, context: SourceContext) -> None:
        """Begin producing changes (start a poll loop, say); must return promptly."""

    async def stop(self) -> None:
        """Stop producing changes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
