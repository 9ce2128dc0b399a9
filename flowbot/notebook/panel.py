"""``master.panel()``: a live ipywidgets view of a running master, with buttons to act on it.

The panel follows the master's in-process events: any event marks it stale, and at most a few
times a second it reads what changed from the store and redraws, on the kernel's own event loop,
so nothing polls and nothing blocks the kernel. It shows the newest build, following new ones
until the user picks a build; that build's log is tailed from the ``log`` events as lines arrive.
A reconfigure shows at the next redraw, new builders in the force form included.

A master has one live panel: making another (running a ``master.panel()`` cell again) closes the
one before, and a closed panel no longer follows the master.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import FlowbotError
from ..master.events import EventKind
from ..schedulers.parameters import BoolParameter, ChoiceParameter, Parameter

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

COLOURS = {
    "SUCCESS": "#34a853",
    "WARNINGS": "#fbbc04",
    "FAILURE": "#ea4335",
    "SKIPPED": "#9aa0a6",
    "EXCEPTION": "#a142f4",
    "RETRY": "#ff6d01",
    "CANCELLED": "#5f6368",
    None: "#4285f4",
}


def badge(build: dict[str, Any]) -> str:
    """One build as a coloured chip: number and result (running builds are blue)."""
    result = build.get("result")
    title = f"{build['builder']} #{build['number']}: {result or 'running'} on {build['worker']}"
    return (
        f'<span title="{escape(title)}" style="display:inline-block;min-width:2.2em;margin:1px;'
        f"padding:1px 4px;border-radius:3px;color:white;background:{COLOURS.get(result, '#4285f4')};"
        f'font-size:11px;text-align:center">#{build["number"]} {escape(result or "running")}</span>'
    )


def _param_widget(param: Parameter) -> widgets.Widget:
    if isinstance(param, BoolParameter):
        return widgets.Checkbox(value=bool(param.default), description=param.label)
    if isinstance(param, ChoiceParameter):
        return widgets.Dropdown(options=param.choices, value=param.default, description=param.label)
    # Text for numbers too: a field left empty is not sent, so the scheduler applies its default or
    # says the parameter is required, and checks a number as the web form's would be.
    return widgets.Text(
        value="" if param.default is None else str(param.default),
        description=param.label,
        placeholder="required" if param.required else "",
    )


def _close_tree(widget: widgets.Widget) -> None:
    """Close a widget with its children, layout and style: ipywidgets keeps every open one."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()
    widgets.Widget.close(widget)


#: The live panel of each master, by ``id(master)`` (a panel holds its master, so the id is its own).
_panels: dict[int, MasterPanel] = {}


class MasterPanel(widgets.VBox):
    """Builders with their recent builds, the queue, workers, a selected build's steps and log,
    and forms to force or stop builds."""

    def __init__(self, master: Master, *, recent: int = 10):
        self.master = master
        self.recent = recent
        self.header = widgets.HTML()
        self.builders = widgets.HTML()
        self.queue = widgets.HTML()
        self.workers = widgets.HTML()
        self.build_picker = widgets.Dropdown(description="build", options=[])
        self.follow = widgets.Checkbox(value=True, description="follow the newest build", indent=False)
        self.steps = widgets.HTML()
        self.log_tail = widgets.HTML()
        self.status = widgets.HTML()
        self.stop_button = widgets.Button(description="Stop build", button_style="danger")
        self.force_builder = widgets.Dropdown(description="builder", options=self._builder_names())
        self.force_reason = widgets.Text(description="reason", value="forced from the notebook")
        self.force_branch = widgets.Text(description="branch")
        self.force_revision = widgets.Text(description="revision")
        self.force_params = widgets.VBox()
        self.force_button = widgets.Button(description="Force build", button_style="primary")
        self._live: OrderedDict[int, deque[str]] = OrderedDict()  # recent builds' log lines, as they came
        self._recent: dict[str, list[dict[str, Any]]] = {}  # each builder's recent builds, newest first
        self._stale: set[str] = set()  # builders whose recent builds changed since they were read
        self._updating = False  # the panel, not the user, is changing the build picker
        self._shown: int | None = None  # the build whose log the panel shows
        self._param_widgets: dict[str, widgets.Widget] = {}
        self._form_scheduler: Any = None  # the force scheduler the form's fields come from
        super().__init__(
            [
                self.header,
                widgets.HTML("<b>Builders</b>"),
                self.builders,
                widgets.HBox([self.queue, self.workers]),
                widgets.HTML("<b>Build</b>"),
                widgets.HBox([self.build_picker, self.follow, self.stop_button]),
                self.steps,
                self.log_tail,
                widgets.HTML("<b>Force a build</b>"),
                widgets.VBox(
                    [
                        self.force_builder,
                        self.force_reason,
                        self.force_branch,
                        self.force_revision,
                        self.force_params,
                        self.force_button,
                    ]
                ),
                self.status,
            ]
        )
        self.force_builder.observe(lambda _: self._show_params(), names="value")
        self.build_picker.observe(lambda _: self._picked(), names="value")
        self.follow.observe(lambda _: self._follow_changed(), names="value")
        self.force_button.on_click(lambda _: self._spawn(self.force()))
        self.stop_button.on_click(lambda _: self._spawn(self.stop_selected()))
        self._show_params()
        self._pending: asyncio.TimerHandle | None = None
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
            tail.extend(line for _, line in event["lines"])
            if build_id == self.build_picker.value:
                self.log_tail.value = _pre("\n".join(tail))
            return
        if event["type"] in (EventKind.BUILD_STARTED, EventKind.BUILD_FINISHED):
            self._stale.add(event["build"]["builder"])
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(REFRESH, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._pending = None
        self._spawn(self.refresh())

    def _spawn(self, coro: Any) -> None:
        task = self.master.spawn(coro, "the notebook panel", watched=True)
        task.add_done_callback(self._report)  # it shows the failure

    def _report(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.status.value = f'<span style="color:#ea4335">{escape(str(task.exception()))}</span>'

    def close(self) -> None:
        """Stop following the master, and close the panel's widgets."""
        self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if _panels.get(id(self.master)) is self:
            del _panels[id(self.master)]
        _close_tree(self)

    async def refresh(self) -> None:
        """Read the master's state and redraw every part of the panel."""
        master = self.master
        if master.store is None:
            self.header.value = "<i>the master is not running</i>"
            return
        names = self._builder_names()
        recent = await self._recent_builds(names)
        rows = "".join(
            f"<tr><td style='padding-right:1em'><b>{escape(name)}</b></td><td>"
            + ("".join(badge(x) for x in reversed(recent[name])) or "<i>no builds yet</i>")
            + "</td></tr>"
            for name in names
        )
        self.builders.value = f"<table>{rows}</table>"
        self.header.value = (
            f"<b>flowbot master</b> {escape(master.http_url or '')} · "
            f"{len(master.running)} running · {len(master.queue)} queued"
        )
        waiting = "".join(f"<li>{escape(r.builder)}: {escape(r.reason)}</li>" for r in list(master.queue)[:10])
        self.queue.value = f"<b>Queue</b><ul>{waiting or '<li><i>empty</i></li>'}</ul>"
        workers = []
        for worker in master.pipeline.workers:
            connection = master.registry.connections.get(worker.name)
            running = [f"{b.builder} #{b.number}" for b in master.running.values() if b.worker == worker.name]
            state = (
                f"connected, seen {time.time() - connection.last_seen:.0f} s ago"
                if connection
                else "<span style='color:#ea4335'>offline</span>"
            )
            if master.worker_control.shutting_down(worker.name):
                state += ", shutting down"
            if worker.name in master.worker_control.paused:
                reason = master.worker_control.paused[worker.name]
                state += f", <span style='color:#d9a400'>paused</span>{': ' + escape(reason) if reason else ''}"
            workers.append(
                f"<li>{escape(worker.name)}: {state}{': ' + escape(', '.join(running)) if running else ''}</li>"
            )
        self.workers.value = f"<b>Workers</b><ul>{''.join(workers)}</ul>"
        self._refresh_force_form()
        self._offer(await master.store.builds(limit=PICKABLE))
        await self._show_build()

    async def _recent_builds(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The recent builds of each named builder, read again only for those that built since."""
        unread = [n for n in names if n in self._stale or n not in self._recent]
        self._stale.difference_update(unread)
        builds = await asyncio.gather(*(self.master.store.builds(builder=n, limit=self.recent) for n in unread))
        self._recent.update(zip(unread, builds, strict=True))
        return self._recent

    def _offer(self, builds: list[dict[str, Any]]) -> None:
        """Offer the newest builds to pick from; pick the newest while following, else keep the user's pick."""
        options = [(f"{b['builder']} #{b['number']} ({b['result'] or 'running'})", b["id"]) for b in builds]
        picked = self.build_picker.value
        if not self.follow.value and picked not in {value for _, value in options}:
            options += [option for option in self.build_picker.options if option[1] == picked]
        self._updating = True
        try:
            self.build_picker.options = options
            self.build_picker.value = options[0][1] if self.follow.value and options else picked
        finally:
            self._updating = False

    def _follow_changed(self) -> None:
        if self.follow.value:  # ticked again: show the newest build now
            self._spawn(self.refresh())

    def _picked(self) -> None:
        if not self._updating:  # the user picked a build: stay on it
            self.follow.value = False
            self._spawn(self._show_build())

    async def _show_build(self) -> None:
        build_id = self.build_picker.value
        if build_id is None:
            self.steps.value = self.log_tail.value = ""
            self._shown = None
            return
        build = await self.master.store.build(build_id)
        rows = "".join(
            f"<tr><td>{s['number']}</td><td>{escape(s['name'])}</td>"
            f"<td style='color:{COLOURS.get(s['result'], '#4285f4')}'>{escape(s['result'] or 'running')}</td></tr>"
            for s in build["steps"]
            if not s["hidden"]
        )
        self.steps.value = f"{badge(build)}<table>{rows}</table>"
        if build_id in self._live:
            self.log_tail.value = _pre("\n".join(self._live[build_id]))
        elif build_id != self._shown:  # a build from before the panel: the end of its log is in the store
            lines: list[str] = []
            for step in reversed(build["steps"]):
                tail, _ = await self.master.store.log_tail(build_id, step["number"], "stdio", TAIL - len(lines))
                lines[:0] = [line for _, line in tail]
                if len(lines) >= TAIL:
                    break
            self.log_tail.value = _pre("\n".join(lines))
        self._shown = build_id

    # -- acting on it -----------------------------------------------------------------------------

    def _builder_names(self) -> list[str]:
        return [b.name for b in self.master.pipeline.builders]

    def _refresh_force_form(self) -> None:
        """Offer the builders the pipeline has now (a reconfigure may have changed them), keeping
        the user's choice when it is still there."""
        names = self._builder_names()
        if list(self.force_builder.options) != names:
            chosen = self.force_builder.value
            self.force_builder.options = names
            if chosen in names:
                self.force_builder.value = chosen
        if self.master.pipeline.force_scheduler_for(self.force_builder.value or "") is not self._form_scheduler:
            self._show_params()  # only then: it resets what the user typed into the form

    def _show_params(self) -> None:
        self._form_scheduler = scheduler = self.master.pipeline.force_scheduler_for(self.force_builder.value or "")
        replaced = self._param_widgets.values()
        self._param_widgets = {p.name: _param_widget(p) for p in (scheduler.params if scheduler else [])}
        self.force_params.children = list(self._param_widgets.values())
        for widget in replaced:
            _close_tree(widget)
        self.force_button.disabled = scheduler is None

    async def force(self) -> list[int]:
        """Force a build with what the form says (as the Force button does)."""
        try:
            ids = await self.master.force(
                self.force_builder.value,
                reason=self.force_reason.value,
                branch=self.force_branch.value or None,
                revision=self.force_revision.value or None,
                properties={name: w.value for name, w in self._param_widgets.items() if w.value != ""},
            )
        except FlowbotError as exc:
            self.status.value = f'<span style="color:#ea4335">{escape(str(exc))}</span>'
            return []
        self.status.value = f"forced {escape(self.force_builder.value)}: request {', '.join(map(str, ids))}"
        return ids

    async def stop_selected(self) -> None:
        """Stop the selected build (as the Stop button does)."""
        if self.build_picker.value is None:
            return
        try:
            await self.master.stop_build(self.build_picker.value, "stopped from the notebook")
        except FlowbotError as exc:
            self.status.value = f'<span style="color:#ea4335">{escape(str(exc))}</span>'
            return
        self.status.value = f"stopping build {self.build_picker.value}"


def _pre(text: str) -> str:
    return (
        f"<pre style='max-height:20em;overflow:auto;background:#f8f9fa;padding:6px;font-size:11px'>{escape(text)}</pre>"
    )
