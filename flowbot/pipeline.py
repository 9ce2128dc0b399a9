"""A pipeline: the graph of workers, schedulers and builders that a master runs.

A pipeline checks itself when it is made, so a mistake (a scheduler naming a builder nobody
defines, a builder on a worker nobody declares, a duplicate name) is reported at once, with the
file and line of the object at fault, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .builder import Builder
from .errors import ConfigError, ConfigErrors
from .location import Location, caller
from .retention import Retention
from .schedulers.base import Scheduler
from .schedulers.force import ForceScheduler
from .steps.base import Step
from .workers import Worker


class Pipeline:
    """Everything a master runs.

    Args:
        workers: the workers the master accepts.
        schedulers: what turns changes and requests into builds.
        builders: what runs, and where.
        properties: global properties every build gets.
        retention: how long the store keeps logs and builds (None: forever).

    Raises:
        ConfigErrors: every problem found, each with the file and line it comes from.
    """

    def __init__(
        self,
        *,
        workers: Iterable[Worker] = (),
        schedulers: Iterable[Scheduler] = (),
        builders: Iterable[Builder] = (),
        properties: dict[str, Any] | None = None,
        retention: Retention | None = None,
    ):
        self.workers = list(workers)
        self.schedulers = list(schedulers)
        self.builders = list(builders)
        self.properties = dict(properties or {})
        self.retention = retention
        self.defined_at = caller()
        self.validate()

    # -- lookups ------------------------------------------------------------------------------

    def builder(self, name: str) -> Builder | None:
        return next((b for b in self.builders if b.name == name), None)

    def worker(self, name: str) -> Worker | None:
        return next((w for w in self.workers if w.name == name), None)

    def force_scheduler_for(self, builder: str) -> ForceScheduler | None:
        """The first force scheduler that lists ``builder``."""
        return next((s for s in self.schedulers if isinstance(s, ForceScheduler) and builder in s.builders), None)

    # -- checking -----------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ConfigErrors` listing every problem; return quietly if there is none."""
        errors: list[ConfigError] = []

        def problem(text: str, obj: Any) -> None:
            where: Location | None = getattr(obj, "defined_at", None) or self.defined_at
            errors.append(ConfigError(text, where and where.filename, where and where.lineno))

        kinds = (
            ("worker", self.workers, Worker),
            ("scheduler", self.schedulers, Scheduler),
            ("builder", self.builders, Builder),
        )
        for kind, items, cls in kinds:
            seen: set[str] = set()
            for item in items:
                if not isinstance(item, cls):
                    problem(f"{kind}s must be {cls.__name__} objects; got {item!r}", self)
                    continue
                if not isinstance(item.name, str) or not item.name or "/" in item.name:
                    problem(f"{kind} name {item.name!r} must be a non-empty string without '/'", item)
                elif item.name in seen:
                    problem(f"duplicate {kind} name {item.name!r}", item)
                else:
                    seen.add(item.name)

        worker_names = {w.name for w in self.workers if isinstance(w, Worker) and isinstance(w.name, str)}
        builder_names = {b.name for b in self.builders if isinstance(b, Builder) and isinstance(b.name, str)}
        for scheduler in self.schedulers:
            if not isinstance(scheduler, Scheduler):
                continue
            if not scheduler.builders:
                problem(f"scheduler {scheduler.name!r} lists no builders", scheduler)
            for name in scheduler.builders:
                if not isinstance(name, str) or name not in builder_names:
                    problem(f"scheduler {scheduler.name!r} names builder {name!r}, which no builder defines", scheduler)
        for builder in self.builders:
            if not isinstance(builder, Builder):
                continue
            if not builder.workers:
                problem(f"builder {builder.name!r} lists no workers", builder)
            for name in builder.workers:
                if not isinstance(name, str) or name not in worker_names:
                    problem(f"builder {builder.name!r} names worker {name!r}, which no worker declares", builder)
            if not builder.steps:
                problem(f"builder {builder.name!r} has no steps", builder)
            for step in builder.steps:
                if not isinstance(step, Step):
                    problem(f"builder {builder.name!r} has {step!r} among its steps, which is not a Step", builder)
        if self.retention is not None:
            if not isinstance(self.retention, Retention):
                problem(f"retention must be a Retention; got {self.retention!r}", self)
            else:
                for name in self.retention.per_builder:
                    if name not in builder_names:
                        problem(f"retention names builder {name!r}, which no builder defines", self.retention)
        if errors:
            raise ConfigErrors(errors)

    # -- showing ------------------------------------------------------------------------------

    def describe(self) -> str:
        """The graph as text: schedulers feeding builders, builders with their workers and steps."""
        lines = ["Pipeline"]
        lines.append("  workers: " + (", ".join(w.name for w in self.workers) or "(none)"))
        lines.append("  schedulers:")
        for s in self.schedulers:
            lines.append(f"    {s.name} ({type(s).__name__}) -> {', '.join(s.builders)}")
        lines.append("  builders:")
        for b in self.builders:
            lines.append(f"    {b.name} on {', '.join(b.workers)}: {' -> '.join(b.step_names)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return (
            f"Pipeline(workers={len(self.workers)}, schedulers={len(self.schedulers)}, builders={len(self.builders)})"
        )
