"""Schedulers that start builds from changes."""

from __future__ import annotations

from ..records import BuildsetSpec, Change
from .base import Scheduler


class AnyBranchScheduler(Scheduler):
    """Start a buildset for every change, on whatever branch it is."""

    def on_change(self, change: Change) -> BuildsetSpec | None:
        who = f" by {change.author}" if change.author else ""
        return self.buildset(
            [change.sourcestamp()],
            f"{self.name}: change {change.revision or '(no revision)'}{who} on {change.branch or 'default'}",
        )
