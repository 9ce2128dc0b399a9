"""The immutable records that travel along a pipeline's edges.

A :class:`Change` goes into schedulers, which make :class:`BuildRequest` records for builders,
which make :class:`Build` records (with :class:`StepRecord` steps) that reporters consume. Each
is written to the store before anything downstream acts on it, so nothing accepted is lost in a
crash.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .results import Result

if TYPE_CHECKING:
    from .junit import TestCase
    from .pull_requests import PullRequest


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
    #: When the master received it, once stored.
    received_at: float | None = None

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
    #: ``{builder: (cell, ...)}`` for builders with a matrix: one request per cell, each cell
    #: ``{axis: value}`` (see :mod:`flowbot.matrix`); the other builders get one request.
    cells: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hold:
    """A scheduler keeps a change, under a key, until its timer fires or it runs."""

    scheduler: str
    key: str
    important: bool


@dataclass(frozen=True, slots=True)
class Release:
    """A scheduler lets go of the changes it held under a key, and builds them (with the new
    change, if any, which is linked to the buildset once it has an id)."""

    scheduler: str
    key: str
    #: The held changes it lets go of, oldest first.
    changes: tuple[Change, ...]
    #: What the scheduler made of them (None: nothing to build).
    buildset: BuildsetSpec | None


@dataclass(frozen=True, slots=True)
class HeldChange:
    """A change a scheduler holds, as the store keeps it."""

    scheduler: str
    key: str
    important: bool
    received_at: float
    change: Change


#: The source of a matrix cell's values among its build's properties.
MATRIX_SOURCE = "Matrix"


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
    #: The older requests it superseded as it was stored (they completed CANCELLED with it).
    superseded: tuple[int, ...] = ()
    #: The matrix it is a cell of, and the cell's ``{axis: value}`` (also among ``properties``).
    matrix_id: int | None = None
    cell: dict[str, Any] | None = None
    #: When a master claimed it and when it completed, with what (as the store reads it back).
    claimed_at: float | None = None
    complete_at: float | None = None
    result: Result | None = None
    summary: str | None = None

    @property
    def branch(self) -> str | None:
        return self.sourcestamps[0].branch if self.sourcestamps else None

    @property
    def revision(self) -> str | None:
        return self.sourcestamps[0].revision if self.sourcestamps else None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step of a build, as the store has it (``result`` and ``finished_at`` None while it runs)."""

    number: int
    name: str
    result: Result | None
    started_at: float | None
    finished_at: float | None
    #: What its end says besides its result ("timed out: ..." for a command killed for its time).
    summary: str = ""
    #: Whether the page leaves it out (a step that asked to be hidden).
    hidden: bool = False
    #: How many times it ran (more than once when it was retried in its build).
    attempts: int = 1
    #: The names of its logs, sorted.
    logs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnfinishedStep:
    """A step of a build recorded as running."""

    id: int
    number: int
    name: str
    #: None while it runs (or ran when its master stopped).
    result: Result | None


@dataclass(frozen=True, slots=True)
class UnfinishedBuild:
    """A build recorded as running, as a master restarted after a crash finds it."""

    id: int
    #: Its request; None if that is no longer pending.
    request: BuildRequest | None
    number: int
    worker: str
    started_at: float
    locks_wait: float
    #: ``{name: (value, source)}`` as recorded when its last step ended.
    properties: dict[str, tuple[Any, str]]
    steps: tuple[UnfinishedStep, ...]
    #: The number of the next line of each log of the step it was running.
    log_lines: dict[str, int]

    @property
    def running_step(self) -> UnfinishedStep | None:
        """The step it was running, if it was running one (and only one)."""
        running = [s for s in self.steps if s.result is None]
        return running[0] if len(running) == 1 and running[0] is self.steps[-1] else None


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a build stored on the master (``FileUpload``, ``DirectoryUpload``)."""

    #: Where it is in the master's artifacts directory, with ``/`` between the parts.
    path: str
    size: int
    sha256: str
    #: Where people download it, when the master serves a page.
    url: str | None = None


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """A file a build stored on the master, as the store lists it for people."""

    #: Where it is in the master's artifacts directory, with ``/`` between the parts.
    path: str
    size: int
    sha256: str
    #: The file's modification time as stored (nanoseconds): whether the file there is still it.
    mtime_ns: int
    stored_at: float
    #: The number and name of the step that stored it.
    step: int
    step_name: str
    #: Whether a later build's file is at the same place (it replaced this one).
    replaced: bool


@dataclass(frozen=True, slots=True)
class ReportedTest:
    """A test case a build's step reported, as the store reads it back for people."""

    case: TestCase
    #: The number and name of the step that reported it.
    step: int
    step_name: str


@dataclass(frozen=True, slots=True)
class BuildLink:
    """A build a change caused (through its buildset's requests), as the change's page lists it."""

    id: int
    builder: str
    number: int
    #: None while it runs.
    result: Result | None


@dataclass(frozen=True, slots=True)
class StoredPullRequest:
    """A pull request (or merge request) that builds were for, as the store keeps it."""

    id: int
    pull_request: PullRequest
    #: When its newest change was received, and when it was closed (None while it is open).
    updated_at: float
    closed_at: float | None
    #: The newest build of each builder that built it, by builder (None: not read with it).
    builds: tuple[Build, ...] | None = None

    @property
    def state(self) -> str:
        return "open" if self.closed_at is None else "closed"


@dataclass(frozen=True, slots=True)
class RememberedWorker:
    """What the store remembers of a worker, connected or not."""

    #: What it last reported of itself (hostname, platform...); empty if it never connected.
    info: dict[str, Any] = field(default_factory=dict)
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_seen: float | None = None
    #: When someone paused it (None while it takes builds), and why.
    paused_at: float | None = None
    paused_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RunningRef:
    """A running build, as a worker's state names it."""

    id: int
    builder: str
    number: int


@dataclass(frozen=True, slots=True)
class WorkerState:
    """A worker the pipeline declares: whether it is connected, what it runs, how it is held."""

    name: str
    #: The kind of launcher that starts it on demand (``docker``...), or None.
    launcher: str | None
    connected: bool
    #: When it last connected, and was last heard from (remembered by the store while away).
    connected_at: float | None
    last_seen: float | None
    #: What it reported of itself (hostname, platform...).
    info: Mapping[str, Any]
    running: tuple[RunningRef, ...]
    paused: bool
    paused_reason: str | None
    shutting_down: bool
    #: Why dispatching holds it aside (a problem of its configuration), or None.
    held: str | None

    @property
    def standing(self) -> str:
        """How it stands, in words: ``connected, shutting down, paused (disk full)``."""
        states = ["connected" if self.connected else "offline"]
        if self.shutting_down:
            states.append("shutting down")
        if self.paused:
            states.append(f"paused ({self.paused_reason})" if self.paused_reason else "paused")
        return ", ".join(states)


@dataclass(frozen=True, slots=True)
class Build:
    """A build as it flows to reporters: started (``result`` None) or finished."""

    id: int
    builder: str
    number: int
    worker: str
    started_at: float
    finished_at: float | None = None
    result: Result | None = None
    branch: str | None = None
    revision: str | None = None
    reason: str = ""
    sourcestamps: tuple[SourceStamp, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    #: The result of the builder's previous finished build (RETRY aside), when the mode needs it.
    previous_result: Result | None = None
    #: The steps of a finished build (for reporters that ask for details).
    steps: tuple[StepRecord, ...] = ()
    #: The name of the step whose log ends the report (the first that failed, else the last).
    log_step: str | None = None
    #: The last lines of that step's log.
    log_tail: str = ""
    #: The tests that failed or erred (for reporters that ask for them), in the order reported.
    failed_tests: tuple[TestCase, ...] = ()
    #: The build's page, when the master serves one.
    url: str | None = None
    #: The files it stored on the master (for reporters that ask for details).
    artifacts: tuple[Artifact, ...] = ()
    #: The matrix cell it builds, ``{axis: value}`` (None: it is no cell).
    cell: dict[str, Any] | None = None
    #: The request it builds, and when that was submitted.
    request_id: int | None = None
    submitted_at: float | None = None
    #: What its end says besides its result.
    summary: str = ""
    #: Which attempt at its request it is (a RETRY's request runs again as the next).
    attempt: int = 1

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def cell_label(self) -> str:
        """`` (python=3.12, os=mac)`` for a matrix cell's build, "" for any other: what tells a
        cell's commit status or check from its matrix's other cells'."""
        return f" ({', '.join(f'{axis}={value}' for axis, value in self.cell.items())})" if self.cell else ""
