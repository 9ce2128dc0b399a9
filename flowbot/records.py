"""The immutable records that travel along a pipeline's edges.

A :class:`Change` goes into schedulers, which make :class:`BuildRequest` records for builders,
which make :class:`Build` records. Each is written to the store before anything downstream acts on
it, so nothing accepted is lost in a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .results import Result


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a repository: a commit, a push, or a change sent by hand."""

    branch: str | None = None
    revision: str | None = None
    repository: str = ""
    project: str = ""
    codebase: str = ""
    author: str = ""
    committer: str = ""
    comments: str = ""
    files: tuple[str, ...] = ()
    category: str | None = None
    revlink: str = ""
    #: When the change was made (epoch seconds); defaults to when it was received.
    when: float = field(default_factory=time.time)
    properties: dict[str, Any] = field(default_factory=dict)
    #: The store's id, once stored.
    id: int | None = None

    def sourcestamp(self) -> SourceStamp:
        """The source a build of this change checks out."""
        return SourceStamp(
            codebase=self.codebase,
            repository=self.repository,
            branch=self.branch,
            revision=self.revision,
            project=self.project,
        )


@dataclass(frozen=True, slots=True)
class SourceStamp:
    """Which source a build uses, per codebase."""

    codebase: str = ""
    repository: str = ""
    branch: str | None = None
    revision: str | None = None
    project: str = ""


@dataclass(frozen=True, slots=True)
class BuildsetSpec:
    """What a scheduler asks for: one build request per builder, all on the same sources."""

    scheduler: str
    builders: tuple[str, ...]
    sourcestamps: tuple[SourceStamp, ...]
    reason: str = ""
    #: ``{name: (value, source)}``: properties of every build in the set.
    properties: dict[str, tuple[Any, str]] = field(default_factory=dict)
    priority: int = 0
    #: The changes that caused it (empty for forced, periodic and triggered builds).
    change_ids: tuple[int, ...] = ()
    #: The build whose Trigger step asked for it.
    parent_build_id: int | None = None


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """A request for one builder to build some source; one buildset holds one per builder."""

    id: int
    buildset_id: int
    builder: str
    sourcestamps: tuple[SourceStamp, ...]
    reason: str = ""
    #: ``{name: (value, source)}``, as the buildset carries them.
    properties: dict[str, tuple[Any, str]] = field(default_factory=dict)
    priority: int = 0
    submitted_at: float = 0.0
    #: Whether changes caused it (collapsing only merges requests made from changes).
    from_changes: bool = False
    parent_build_id: int | None = None

    @property
    def branch(self) -> str | None:
        return self.sourcestamps[0].branch if self.sourcestamps else None

    @property
    def revision(self) -> str | None:
        return self.sourcestamps[0].revision if self.sourcestamps else None


@dataclass(frozen=True, slots=True)
class Build:
    """One run of a builder's steps on one worker, for one request."""

    id: int
    request_id: int
    builder: str
    number: int
    worker: str
    started_at: float
    finished_at: float | None = None
    result: Result | None = None
    branch: str | None = None
    revision: str | None = None
