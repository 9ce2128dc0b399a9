"""What the HTTP face uses of the master, and nothing more: what it reads, what it asks for, what it hears.

The handlers are handed one :class:`WebServices`, built once by whoever serves the face (the public
:class:`flowbot.Master` from its core master's parts; a test from small fakes), so they can be built,
served and tested without a master. Each collaborator is named by the few methods the face calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from ..analysis import History
    from ..master.events import EventBus
    from ..master.latent import InstanceView
    from ..master.loop_lag import LoopLag
    from ..master.status import BuilderStatus, WorkerState
    from ..pipeline import Pipeline
    from ..properties import Properties
    from ..records import BuildRequest, Change
    from ..reporters import Reporter
    from ..sources import ChangeSource
    from ..steps.approval import Decision
    from ..store import Store


class LiveLog(Protocol):
    def flush(self) -> Awaitable[None] | None:
        """Hand the lines gathered so far to the store; that write, or None when there was none."""


class LiveBuild(Protocol):
    """A build running now, as the API reads it between the store's writes."""

    properties: Properties
    current_step: int | None

    def open_log(self, name: str) -> LiveLog | None: ...


class StatusReads(Protocol):
    """How the master stands now (:class:`flowbot.master.status.Status`)."""

    def running_build(self, build_id: int) -> LiveBuild | None: ...

    async def workers(self) -> list[WorkerState]: ...

    def why_waiting(self, request: BuildRequest) -> str | None: ...

    def load(self) -> dict[str, tuple[int, int]]: ...

    async def builders(
        self, names: Iterable[str] | None = None, *, shown: int = 0, recent: int = 0
    ) -> list[BuilderStatus]: ...


class Instances(Protocol):
    """The instances of workers started on demand, and their counts since the master started."""

    starts: Mapping[str, int]
    failures: Mapping[str, int]
    connect_seconds: Histogram

    def views(self) -> list[InstanceView]: ...


@dataclass(frozen=True)
class Reads:
    """What the face shows: the pipeline in force (read per request, so a reconfigure's counts at
    once), the store's reads, the status facade, the instances, the files builds stored."""

    pipeline: Callable[[], Pipeline]
    store: Store
    status: StatusReads
    instances: Instances
    #: What labels the instances this master starts.
    instance_id: str
    artifacts_dir: Callable[[], Path]
    #: The build history (made on first use, importing pandas: call it off the event loop).
    history: Callable[[], History]


class BuildControl(Protocol):
    """What people ask the master to do with builds, changes and its pipeline."""

    async def force(
        self,
        builder: str,
        *,
        reason: str = "",
        branch: str | None = None,
        revision: str | None = None,
        owner: str = "",
        properties: dict[str, Any] | None = None,
    ) -> list[int]: ...

    async def rebuild(self, build_id: int, *, reason: str = "", owner: str = "") -> list[int]: ...

    async def stop_build(self, build_id: int, reason: str = "") -> None: ...

    async def cancel_request(self, request_id: int) -> None: ...

    async def add_change(self, change: Change) -> tuple[int, list[int]]: ...

    async def reload(self) -> None: ...


class WorkerControls(Protocol):
    """Pausing and shutting down workers (:class:`flowbot.master.worker_control.WorkerControl`)."""

    paused: Mapping[str, str]

    async def pause(self, name: str, reason: str = "") -> None: ...

    async def unpause(self, name: str) -> None: ...

    def shutdown(self, name: str, graceful: bool = True) -> None: ...

    def state(self, name: str) -> dict[str, Any]: ...


class ApprovalDesk(Protocol):
    """Builds waiting for a person's decision (:class:`flowbot.master.approvals.Approvals`)."""

    def waiting(self, build_id: int) -> dict[str, Any] | None: ...

    def all(self) -> list[dict[str, Any]]: ...

    def decide(
        self, build_id: int, approved: bool, *, by: str = "", comment: str = "", values: dict[str, Any] | None = None
    ) -> Decision: ...


@dataclass(frozen=True)
class Control:
    """What the face acts through: builds, workers, approvals, and the running webhook sources by name."""

    builds: BuildControl
    workers: WorkerControls
    approvals: ApprovalDesk
    hook: Callable[[str], ChangeSource | None]


class ReportCounts(Protocol):
    """The reporters running, and their reports by outcome since the master started."""

    reporters: list[Reporter]
    delivered: Mapping[str, int]
    failed: Mapping[str, int]
    dropped: Mapping[str, int]


@dataclass(frozen=True)
class Gauges:
    """What ``/metrics`` reads besides the status when scraped: all in memory, none of it in the store."""

    #: The workers connected now, by name.
    connections: Mapping[str, object]
    #: Messages from workers dropped, by reason.
    dropped: Mapping[str, int]
    loop_lag: LoopLag
    reporting: ReportCounts


@dataclass(frozen=True)
class WebServices:
    """Everything the HTTP face uses of the master."""

    reads: Reads
    control: Control
    events: EventBus
    gauges: Gauges
