"""Declaring a builder: which workers may run it and which steps it runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .location import caller
from .steps.base import Step


class Builder:
    """A named sequence of steps that runs on one of the listed workers.

    Args:
        name: shown everywhere and used in URLs (``/api/builders/{name}``).
        workers: names of the workers that may run it; the master picks a free connected one.
        steps: the steps, in order.
        description: one line for people.
        properties: properties every build of this builder gets.
        builddir: the directory on the worker (under its basedir); defaults to the builder's name.
        tags: labels for grouping in views.
    """

    def __init__(
        self,
        name: str,
        *,
        workers: Iterable[str],
        steps: Iterable[Step],
        description: str = "",
        properties: dict[str, Any] | None = None,
        builddir: str | None = None,
        tags: Iterable[str] = (),
    ):
        self.name = name
        self.workers = [workers] if isinstance(workers, str) else list(workers)
        self.steps = list(steps)
        self.description = description
        self.properties = dict(properties or {})
        self.builddir = builddir or _safe_dirname(name)
        self.tags = list(tags)
        self.defined_at = caller()
        self.step_names = _unique_names([getattr(step, "name", "step") for step in self.steps])

    def __repr__(self) -> str:
        return f"Builder({self.name!r}, workers={self.workers!r}, steps={len(self.steps)})"


def _safe_dirname(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "builder"


def _unique_names(names: list[str]) -> list[str]:
    """Buildbot's rule: a repeated step name gets ``_2``, ``_3``... so every step is addressable."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        unique.append(candidate)
    return unique
