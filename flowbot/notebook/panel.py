"""``master.panel()``: a live view of a running master, with buttons to act on it, in any notebook.

The panel is an anywidget (one ES module, ``panel.js``, no build step and nothing fetched from
the network), so the same widget runs in JupyterLab, Notebook 7, VS Code, Colab and marimo: over
the ipywidgets comm in Jupyter, natively in marimo. Python keeps the state; the module draws it
the way the master's web page does and sends back what the user asks (force, stop, pick a build).

The panel follows the master's in-process events: any event marks it stale, and at most a few
times a second it reads what changed and sends it, on the kernel's own event loop, so nothing
polls and nothing blocks the kernel. It shows the newest build, following new ones until the user
picks a build; that build's log is tailed from the ``log`` events as lines arrive, with its ANSI
colours. A reconfigure shows at the next redraw, new builders in the force form included.

A master has one live panel: making another (running a ``master.panel()`` cell again) closes the
one before, and a closed panel no longer follows the master.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets
from ansi2html import Ansi2HTMLConverter

from ..errors import FlowbotError
from ..master.events import EventKind
from ..record_json import result_json
from ..records import Build

if TYPE_CHECKING:
    from ..master import Master

#: Seconds between redraws while events keep coming.
REFRESH = 0.25
#: Lines of the selected build's log kept in view.
TAIL = 200
#: Builds whose live log lines the panel keeps.
LIVE_BUILDS = 20
#: Newest builds offered to pick from.
PICKABLE = 30
#: Requests of the queue shown.
QUEUE_SHOWN = 10

_HERE = Path(__file__).parent

#: The live panel of each master, by ``id(master)`` (a panel holds its master, so the id is its own).
_panels: dict[int, MasterPanel] = {}


class MasterPanel(anywidget.AnyWidget):
    """Builders with their recent builds, the queue, workers, a selected build's steps and log,
    and forms to force builds, a button to stop one and the form of one that waits for approval.

    What it shows is in its traits, as the module draws them: ``overview`` (the master, builders
    with their newest builds, and the newest matrix of a builder with one; the queue, workers),
    ``builds`` (what can be picked), ``build`` (the selected build and its steps, numbered from 1
    as the web page does), ``log`` (the end of its log as HTML, ANSI colours rendered), ``forms``
    (each builder's force form) and ``message``.
    """

    _esm = _HERE / "panel.js"
    _css = _HERE / "panel.css"

    overview = traitlets.Dict().tag(sync=True)
    builds = traitlets.List().tag(sync=True)
    build = traitlets.Dict().tag(sync=True)
    log = traitlets.Unicode("").tag(sync=True)
    forms = traitlets.Dict().tag(sync=True)
    message = traitlets.Dict().tag(sync=True)
    #: The build shown (None: none yet); the module sets it when the user picks one.
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    #: Whether the newest build is shown as builds start; picking a build turns it off.
    follow = traitlets.Bool(True).tag(sync=True)
    #: What the user last asked for (``{"action": "force" | "stop" | "approve" | "reject", ...}``), set by the module: a
    #: trait rather than a custom message, which every frontend's widget model carries.
    command = traitlets.Dict().tag(sync=True)

    def __init__(self, master: Master, *, recent: int = 10):
        super().__init__()
        self.master = master
        self.recent = recent
        self._live: OrderedDict[int, deque[tuple[str, str]]] = OrderedDict()  # recent builds' (stream, line)s
        self._recent: dict[str, list[dict[str, Any]]] = {}  # each builder's recent builds, newest first
        self._stale: set[str] = set()  # builders whose recent builds changed since they were read
        self._matrix: dict[str, dict[str, Any]] = {}  # the newest matrix of each builder that has one
        self._updating = False  # the panel, not the user, is changing the selection
        self._shown: int | None = None  # the build whose stored log tail the panel read
        self._ansi = Ansi2HTMLConverter(inline=True, dark_bg=True, line_wrap=False)
        self._pending: asyncio.TimerHandle | None = None
        self._log_only = True  # only log lines came since the last redraw
        self.observe(self._picked, names="selected")
        self.observe(self._refollow, names="follow")
        self.observe(self._commanded, names="command")
        self._unsubscribe = master.events.subscribe(self._on_event)
        previous = _panels.get(id(master))
        if previous is not None:
            previous.close()
        _panels[id(master)] = self
        self._spawn(self.refresh())

    # -- following the master ---------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == EventKind.LOG:
            build_id = event.get("build_id")
            tail = self._live.get(build_id)
            if tail is None:
                tail = self._live[build_id] = deque(maxlen=TAIL)
                while len(self._live) > LIVE_BUILDS:
                    self._live.popitem(last=False)
            tail.extend(event["lines"])
            if build_id != self.selected:
                return
        else:
            self._log_only = False
            if event["type"] in (EventKind.BUILD_STARTED, EventKind.BUILD_FINISHED):
                self._stale.add(event["build"]["builder"])
            elif event["type"] in (EventKind.REQUEST_NEW, EventKind.REQUEST_CANCELLED) and event.get("builder"):
                self._stale.add(event["builder"])  # a matrix's cells came, or fail_fast withdrew some
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(REFRESH, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._pending = None
        if self._log_only and self.selected in self._live:
            self.log = self._html(self._live[self.selected])  # no need to read anything
            return
        self._spawn(self.refresh())

    def _spawn(self, coro: Any) -> None:
        task = self.master.spawn(coro, "the notebook panel", watched=True)
        task.add_done_callback(self._report)  # it shows the failure

    def _report(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._say(str(task.exception()), error=True)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message = {"text": text, "error": error, "at": time.time()}

    def close(self) -> None:
        """Stop following the master, and close the widget."""
        self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if _panels.get(id(self.master)) is self:
            del _panels[id(self.master)]
        super().close()

    async def refresh(self) -> None:
        """Read the master's state and redraw every part of the panel."""
        self._log_only = True
        master = self.master
        if master.store is None:
            self.overview = {"master": {"running": False}}
            return
        names = [b.name for b in master.pipeline.builders]
        matrices = await self._matrices([b.name for b in master.pipeline.builders if b.matrix is not None])
        recent = await self._recent_builds(names)
        activity = master.status.activity(QUEUE_SHOWN)
        self.overview = {
            "master": {
                "running": True,
                "url": master.http_url,
                "builds": activity.running,
                "queued": activity.queued,
            },
            "builders": [
                {"name": name, "builds": [_chip(b) for b in recent[name]], "matrix": matrices.get(name)}
                for name in names
            ],
            "queue": [{"id": r.id, "builder": r.builder, "reason": r.reason} for r in activity.first_queued],
            "workers": await self._workers(),
        }
        self.forms = _forms(master)
        self._offer(await master.store.builds.query(limit=PICKABLE))
        await self._show_build()

    async def _workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "name": worker.name,
                "connected": worker.connected,
                "seen": round(now - worker.last_seen) if worker.connected and worker.last_seen else None,
                "paused": worker.paused,
                "paused_reason": worker.paused_reason or "",
                "shutting_down": worker.shutting_down,
                "running": [f"{b.builder} #{b.number}" for b in worker.running],
            }
            for worker in await self.master.status.workers()
        ]

    async def _matrices(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """The newest matrix of each named builder (read again only for those that built since),
        with its cells, as the web page's matrix view shows them."""
        unread = [n for n in names if n in self._stale or n not in self._matrix]
        found = await asyncio.gather(*(self.master.store.matrices.query(builder=n, limit=1) for n in unread))
        self._matrix.update((name, views[0].to_json()) for name, views in zip(unread, found, strict=True) if views)
        return self._matrix

    async def _recent_builds(self, names: list[str]) -> dict[str, list[Build]]:
        """The recent builds of each named builder, read again only for those that built since."""
        unread = [n for n in names if n in self._stale or n not in self._recent]
        self._stale.difference_update(unread)
        if unread:
            for state in await self.master.status.builders(unread, recent=self.recent):
                self._recent[state.name] = list(state.recent)
        return self._recent

    def _offer(self, builds: list[Build]) -> None:
        """Offer the newest builds to pick from; pick the newest while following, else keep the user's pick."""
        options = [
            {"id": b.id, "label": f"{b.builder} #{b.number} ({result_json(b.result) or 'running'})"} for b in builds
        ]
        picked = self.selected
        if not self.follow and picked not in {o["id"] for o in options}:
            options += [o for o in self.builds if o["id"] == picked]
        self._updating = True
        try:
            self.builds = options
            if self.follow and options:
                self.selected = options[0]["id"]
        finally:
            self._updating = False

    def _refollow(self, change: dict[str, Any]) -> None:
        if change["new"]:  # ticked again: show the newest build now
            self._spawn(self.refresh())

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._updating:  # the user picked a build: stay on it
            self.follow = False
            self._spawn(self._show_build())

    async def _show_build(self) -> None:
        build_id = self.selected
        if build_id is None:
            self.build, self.log, self._shown = {}, "", None
            return
        build = await self.master.store.builds.get(build_id)
        self.build = {
            **_chip(build),
            "builder": build.builder,
            "worker": build.worker,
            "running": build.result is None,
            "approval": self.master.approvals.waiting(build_id),
            "steps": [
                {
                    "number": step.number + 1,  # as the web page numbers them
                    "name": step.name,
                    "result": result_json(step.result),
                    "summary": step.summary,
                }
                for step in build.steps
                if not step.hidden
            ],
        }
        if build_id in self._live:
            self.log = self._html(self._live[build_id])
        elif build_id != self._shown:  # a build from before the panel: the end of its log is in the store
            lines: list[tuple[str, str]] = []
            for step in reversed(build.steps):
                tail, _ = await self.master.store.logs.tail(build_id, step.number, "stdio", TAIL - len(lines))
                lines[:0] = tail
                if len(lines) >= TAIL:
                    break
            self.log = self._html(lines)
        self._shown = build_id

    def _html(self, lines: Iterable[tuple[str, str]]) -> str:
        """``(stream, line)`` pairs as HTML: ANSI colours as inline styles, everything else escaped,
        and the master's header lines and stderr marked (``h``, ``e``) as the web page marks them."""
        parts = []
        for stream, group in itertools.groupby(lines, key=lambda pair: pair[0]):
            html = self._ansi.convert("\n".join(line for _, line in group), full=False)
            parts.append(f'<span class="{stream}">{html}</span>' if stream in ("h", "e") else html)
        return "\n".join(parts)

    # -- acting on it -----------------------------------------------------------------------------

    def _commanded(self, change: dict[str, Any]) -> None:
        command = change["new"] or {}
        if command.get("action") == "force":
            self._spawn(self.force(command.get("builder", ""), command.get("values") or {}))
        elif command.get("action") == "stop":
            self._spawn(self.stop(command.get("build")))
        elif command.get("action") in ("approve", "reject"):
            approved = command["action"] == "approve"
            self.decide(command.get("build"), approved, command.get("values") or {}, command.get("comment") or "")

    async def force(self, builder: str, values: dict[str, Any]) -> list[int]:
        """Force a build of ``builder`` with what its form says (as the Force button does): fields
        left empty are left out, so the scheduler applies its default or says a value is required."""
        given = {name: value for name, value in values.items() if value not in ("", None)}
        try:
            ids = await self.master.force(
                builder,
                reason=given.pop("reason", "forced from the notebook"),
                branch=given.pop("branch", None),
                revision=given.pop("revision", None),
                properties=given,
            )
        except FlowbotError as exc:
            self._say(str(exc), error=True)
            return []
        self._say(f"forced {builder}: request {', '.join(map(str, ids))}")
        return ids

    async def stop(self, build_id: int | None = None) -> None:
        """Stop ``build_id`` (the selected build by default), as the Stop button does."""
        build_id = self.selected if build_id is None else build_id
        if build_id is None:
            return
        try:
            await self.master.stop_build(build_id, "stopped from the notebook")
        except FlowbotError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"stopping build {build_id}")

    def decide(
        self, build_id: int | None, approved: bool, values: dict[str, Any] | None = None, comment: str = ""
    ) -> None:
        """Approve (with the values of its form) or reject ``build_id``, a build that waits for
        approval, as the Approve and Reject buttons do; fields left empty are left out."""
        given = {name: value for name, value in (values or {}).items() if value not in ("", None)}
        try:
            self.master.approvals.decide(
                build_id, approved, by="the notebook", comment=comment, values=given if approved else None
            )
        except FlowbotError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"{'approved' if approved else 'rejected'} build {build_id}")


def _chip(build: Build) -> dict[str, Any]:
    return {"id": build.id, "number": build.number, "result": result_json(build.result), "worker": build.worker}


def _forms(master: Master) -> dict[str, Any]:
    """Each builder's force form: the scheduler's fields after reason, branch and revision (none
    for a builder no force scheduler lists)."""
    forms = {}
    for builder in master.pipeline.builders:
        scheduler = master.pipeline.force_scheduler_for(builder.name)
        if scheduler is None:
            continue
        fields = [
            {"name": "reason", "label": "Reason", "type": "text", "default": "forced from the notebook"},
            {"name": "branch", "label": "Branch", "type": "text", "default": ""},
            {"name": "revision", "label": "Revision", "type": "text", "default": ""},
        ]
        forms[builder.name] = {"scheduler": scheduler.name, "fields": fields + scheduler.describe_params()}
    return forms
