"""What a reporter that answers people (a chat bot) may ask of the master, and nothing more.

A bot reads how the builders stand and forces builds; it is handed a :class:`Controls` when the
master starts it (:meth:`~flowbot.reporters.Reporter.serve`), never the master itself, so it can be
tested with a few lines of Python and cannot reach anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..records import Build


@dataclass(frozen=True, slots=True)
class BuilderState:
    """How one builder stands now."""

    name: str
    #: Builds running now.
    running: int
    #: Requests waiting for a worker.
    pending: int
    #: Its newest build (running or finished), if it has one.
    last: Build | None


class Controls(Protocol):
    """The master's capabilities a bot is given."""

    async def states(self) -> list[BuilderState]:
        """Every builder of the pipeline, in its order."""
        ...

    async def last_build(self, builder: str) -> Build | None:
        """The newest finished build of ``builder``.

        Raises:
            NotFound: no such builder.
        """
        ...

    async def force(self, builder: str, *, reason: str, owner: str) -> list[int]:
        """Force a build of ``builder``; returns the ids of the requests made.

        Raises:
            NotFound: no such builder, or no force scheduler lists it.
            InvalidRequest: the force scheduler needs parameters a bot cannot give.
        """
        ...
