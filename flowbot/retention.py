"""How long a master keeps what builds produce: ``Retention``, given to a :class:`~flowbot.Pipeline`.

Logs are most of a store's size and the first thing people stop needing, so they have their own
limit; builds (with their steps, logs and test results, and the requests they ran for) have a
longer one. The files builds stored on the master (artifacts) go with their builds, or sooner
with a limit of their own. Changes are kept: they are small and ``culprits`` needs them. The master's janitor
(:mod:`flowbot.store.janitor`) applies the limits every ``every``, a few rows at a time.

Example::

    Pipeline(..., retention=Retention(logs="30d", builds="365d", artifacts="14d", per_builder={
        "release": Retention(logs="365d"),      # release logs for a year, release builds forever
    }))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from . import timespan
from .errors import ConfigError
from .fields import ANYTHING, TEXT, checked, mapping, optional, where

Span = str | float | dt.timedelta


class Retention:
    """Limits on the age of what the store keeps; None keeps it forever.

    Args:
        logs: delete the logs of builds that started longer ago than this (``"30d"``, ``"12h"``,
            a timedelta, or seconds).
        builds: delete builds older than this, with everything they recorded and stored.
        artifacts: delete the files builds stored on the master (``FileUpload``, ``DirectoryUpload``)
            once their builds are older than this (a file a newer build stored at the same place
            stays).
        per_builder: a builder's own limits, which replace these for it entirely.
        every: how often the janitor runs.

    Raises:
        ConfigError: a limit that is not a length of time, or a nested ``per_builder``.
    """

    @checked(per_builder=optional(mapping(TEXT, ANYTHING, "a dict of builder names to Retentions")))
    def __init__(
        self,
        *,
        logs: Span | None = None,
        builds: Span | None = None,
        artifacts: Span | None = None,
        per_builder: Mapping[str, Retention] | None = None,
        every: Span = "1h",
    ):
        self.logs = logs
        self.builds = builds
        self.artifacts = artifacts
        self.per_builder = dict(per_builder or {})
        self.every = every
        for name in ("logs", "builds", "artifacts", "every"):
            value = getattr(self, name)
            try:
                if value is not None:
                    timespan.seconds(value)
            except ValueError as exc:
                raise ConfigError.at(f"Retention({name}=...): {exc}", where(self, name)) from None
        for builder, own in self.per_builder.items():
            if not isinstance(own, Retention) or own.per_builder:
                raise ConfigError.at(
                    f"Retention per_builder[{builder!r}] must be a Retention without per_builder of its own",
                    where(self, "per_builder"),
                )

    def __repr__(self) -> str:
        return (
            f"Retention(logs={self.logs!r}, builds={self.builds!r}, artifacts={self.artifacts!r}, "
            f"per_builder={self.per_builder!r})"
        )

    def limits(self, builder: str | None = None) -> tuple[float | None, float | None]:
        """``(logs, builds)`` in seconds for ``builder`` (None: builders without limits of their own)."""
        own = self.per_builder.get(builder, self) if builder is not None else self
        return _seconds(own.logs), _seconds(own.builds)

    def artifacts_limit(self, builder: str | None = None) -> float | None:
        """Seconds ``builder``'s builds keep their artifacts: their own limit, and never past their builds'."""
        own = self.per_builder.get(builder, self) if builder is not None else self
        limits = [seconds for seconds in (_seconds(own.artifacts), _seconds(own.builds)) if seconds is not None]
        return min(limits) if limits else None

    @property
    def interval(self) -> float:
        """Seconds between the janitor's runs."""
        return timespan.seconds(self.every)


def _seconds(value: Span | None) -> float | None:
    return None if value is None else timespan.seconds(value)
