"""Schedulers that build on a clock: every so often, or at cron times."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any

from croniter import croniter

from ..fields import FLAG, FUNCTION, SECONDS, TEXT, checked, optional, refuse
from ..records import BuildsetSpec, Change, SourceStamp
from .base import Classification, Scheduler, changes_properties, changes_sourcestamps
from .basic import CHANGE_FILTER
from .filter import ChangeFilter


class TimedScheduler(Scheduler):
    """A scheduler that runs at times it computes; its last run is kept in the store.

    Args:
        branch: the branch a run builds when no change says otherwise.
    """

    timed = True

    @checked(branch=optional(TEXT))
    def __init__(self, name: str, builders: Iterable[str], *, branch: str | None = None, **options: Any):
        super().__init__(name, builders, **options)
        self.branch = branch

    def timed_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        stamps = changes_sourcestamps(changes) if changes else [SourceStamp(branch=self.branch)]
        return self.buildset(
            stamps,
            f"the {type(self).__name__} scheduler {self.name!r} ran",
            properties=changes_properties(changes),
            change_ids=[c.id for c in changes if c.id is not None],
        )


class Periodic(TimedScheduler):
    """Build every ``period`` seconds."""

    @checked(period=SECONDS)
    def __init__(self, name: str, builders: Iterable[str], *, period: float, **options: Any):
        super().__init__(name, builders, **options)
        self.period = float(period)

    def next_run(self, after: float) -> float | None:
        return after + self.period


class Nightly(TimedScheduler):
    """Build at the times of a cron expression (``"0 3 * * *"``: 03:00 every day).

    Args:
        cron: five-field cron expression, read by croniter.
        timezone: the IANA time zone the cron times are in (``"Europe/Paris"``): 03:00 there,
            summer and winter alike. UTC by default, so a master moved to another host keeps its
            schedule.
        only_if_changed: skip a run when no change came since the last one.
        change_filter: which changes count (for ``only_if_changed`` and for what a run builds).
        file_is_important: changes it calls unimportant do not make ``only_if_changed`` run;
            they ride along with the next run, as they do with the branch schedulers.
    """

    @checked(
        cron=TEXT,
        timezone=TEXT,
        only_if_changed=FLAG,
        change_filter=CHANGE_FILTER,
        file_is_important=optional(FUNCTION),
    )
    def __init__(
        self,
        name: str,
        builders: Iterable[str],
        *,
        cron: str,
        timezone: str = "UTC",
        only_if_changed: bool = False,
        change_filter: ChangeFilter | Callable[[Change], bool] | None = None,
        file_is_important: Callable[[Change], bool] | None = None,
        **options: Any,
    ):
        super().__init__(name, builders, **options)
        if not croniter.is_valid(cron):
            raise refuse(self, "cron", f"{cron!r} is not a cron expression (such as '0 3 * * *')")
        try:
            self.timezone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise refuse(self, "timezone", f"{timezone!r} is not a time zone (such as 'Europe/Paris')") from None
        self.cron = cron
        self.only_if_changed = only_if_changed
        self.change_filter = change_filter
        self.file_is_important = file_is_important

    def classify(self, change: Change) -> Classification | None:
        return self.filtered(change)

    def next_run(self, after: float) -> float | None:
        start = dt.datetime.fromtimestamp(after, self.timezone)
        return croniter(self.cron, start).get_next(float)

    def timed_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        if self.only_if_changed and not any(self.important(c) for c in changes):
            return None  # unimportant changes wait for a run that builds an important one
        return super().timed_buildset(changes)
