"""Declaring a builder: which workers may run it and which steps it runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .fields import (
    ANYTHING,
    FLAG,
    FUNCTION,
    NAME,
    PROPERTIES,
    SECONDS,
    TEXT,
    checked,
    either,
    instance,
    list_of,
    optional,
)
from .locks import ACCESSES, LockAccess
from .matrix import Matrix
from .records import BuildRequest
from .retry import Retry
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
        locks: lock accesses a build holds from start to end (see :mod:`flowbot.locks`).
        collapse_requests: merge waiting requests for the same source into the newest one (True,
            Buildbot's rule), never (False), or ``fn(new, old) -> bool``. Merged ones end SKIPPED.
        next_worker: ``fn(builder, workers, request) -> name or None`` picks among the free workers
            (the default takes the least busy).
        next_build: ``fn(builder, requests) -> request`` picks what runs next (the default takes
            the highest priority, then the oldest).
        cancel_superseded: whether a new head cancels the work of older ones: a change that
            brings a pull request (or merge request) a new head commit withdraws the pending
            requests and stops the running builds of its older heads, which end CANCELLED,
            "superseded by <revision>". None (the default) does this for pull requests only;
            True for branches too (a push to a branch supersedes the builds of its older
            commits, per branch); False never. See :mod:`flowbot.superseding`.
        matrix: build every request once per cell of this :class:`~flowbot.matrix.Matrix`, each cell's
            values as properties, on a worker whose properties agree with the cell.
        max_time: seconds a build may run in all: then its running command is interrupted, the
            steps left are skipped but ``always_run`` ones (cleanup), and it ends as FAILURE,
            saying it timed out.
        retry: run a failed build again (a new build of the same request) when it fails in a way
            it says (see :class:`~flowbot.retry.Retry`).
        search_logs: whether its logs go into log search's index (True, the default). False
            keeps them out of it, and out of search, for a builder whose output nobody searches:
            on PostgreSQL the index weighs several times the compressed logs.
    """

    @checked(
        name=NAME,
        workers=list_of(TEXT, "a list of worker names", single=True),
        steps=list_of(ANYTHING, "a list of steps"),  # each a Step: the pipeline says which is not
        description=TEXT,
        properties=PROPERTIES,
        builddir=optional(TEXT),
        tags=list_of(TEXT, single=True),
        locks=ACCESSES,
        collapse_requests=either(FLAG, FUNCTION),
        next_worker=optional(FUNCTION),
        next_build=optional(FUNCTION),
        cancel_superseded=optional(FLAG),
        matrix=optional(instance(Matrix, "a Matrix")),
        max_time=optional(SECONDS),
        retry=optional(instance(Retry, "a Retry(...)")),
        search_logs=FLAG,
    )
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
        locks: Iterable[LockAccess] = (),
        collapse_requests: bool | Callable[[BuildRequest, BuildRequest], bool] = True,
        next_worker: Callable[[Builder, list[str], BuildRequest], str | None] | None = None,
        next_build: Callable[[Builder, list[BuildRequest]], BuildRequest] | None = None,
        cancel_superseded: bool | None = None,
        matrix: Matrix | None = None,
        max_time: float | None = None,
        retry: Retry | None = None,
        search_logs: bool = True,
    ):
        self.name = name
        self.workers = list(workers)
        self.steps = list(steps)
        self.description = description
        self.properties = dict(properties or {})
        self.builddir = builddir or _safe_dirname(name)
        self.tags = list(tags)
        self.locks = list(locks)
        self.collapse_requests = collapse_requests
        self.next_worker = next_worker
        self.next_build = next_build
        self.cancel_superseded = cancel_superseded
        self.matrix = matrix
        self.max_time = max_time
        self.retry = retry
        self.search_logs = search_logs
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


def source_key(request: BuildRequest) -> tuple[tuple[str, str, str, str], ...]:
    """What requests must share to collapse by Buildbot's rule, revisions aside: per codebase, the
    repository, the branch and the project. No branch and an empty one both mean the default branch."""
    return tuple(sorted((s.codebase, s.repository, s.branch or "", s.project) for s in request.sourcestamps))


def same_source(new: BuildRequest, old: BuildRequest) -> bool:
    """Buildbot's default collapse rule: the same :func:`source_key`, and either both requests
    come from changes or their revisions are the same too."""
    if new.parent_build_id or old.parent_build_id or new.cell != old.cell or source_key(new) != source_key(old):
        return False
    return (new.from_changes and old.from_changes) or revisions(new) == revisions(old)


def revisions(request: BuildRequest) -> list[tuple[str, str]]:
    """``(codebase, revision)`` of each of its sources, sorted (no revision: "")."""
    return sorted((s.codebase, s.revision or "") for s in request.sourcestamps)
