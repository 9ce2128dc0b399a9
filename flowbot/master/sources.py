"""Running the pipeline's change sources: each gets a context to submit changes and keep state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..records import Change
from ..sources.base import ChangeSource

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)


class _Context:
    """What one source sees of the master (see :class:`flowbot.sources.base.SourceContext`)."""

    def __init__(self, master: Master, source: ChangeSource):
        self.master = master
        self.owner = f"source:{source.name}"
        self.basedir = master.basedir

    async def add_change(self, change: Change, state: dict[str, Any] | None = None) -> int:
        change_id, _ = await self.master.add_change(change, owner=self.owner, state=state)
        return change_id

    async def get_state(self) -> dict[str, Any]:
        return await self.master.store.get_state(self.owner)

    async def set_state(self, values: dict[str, Any]) -> None:
        await self.master.store.set_state(self.owner, values)


class Sources:
    """Starts and stops the pipeline's change sources."""

    def __init__(self, master: Master):
        self.master = master
        self.running: list[ChangeSource] = []

    def by_name(self, name: str) -> ChangeSource | None:
        return next((s for s in self.running if s.name == name), None)

    async def start(self) -> None:
        for source in self.master.pipeline.sources:
            try:
                await source.start(_Context(self.master, source))
            except Exception:
                log.exception("change source %s failed to start; the others run", source.name)
                continue
            self.running.append(source)

    async def stop(self) -> None:
        for source in self.running:
            try:
                await source.stop()
            except Exception:
                log.exception("change source %s failed to stop", source.name)
        self.running = []
