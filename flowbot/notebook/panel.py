"""``master.panel()``: a live ipywidgets view of a running master, with buttons to act on it.

The panel follows the master's in-process events: any event marks it stale, and at most a few
times a second it reads what changed from the store and redraws, on the kernel's own event loop,
so nothing polls and nothing blocks the kernel. The selected build's log is tailed from the
``log`` events as lines arrive. A reconfigure shows at the next redraw, new builders in the force
form included.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import FlowbotError
from ..schedulers.parameters import BoolParameter, ChoiceParameter, IntParameter, Parameter

if TYPE_CHECKING:
    from ..master import Master

#: Seconds between redraws while events keep coming.
REFRESH = 0.25
#: Lines of the selected build's log kept in view.
TAIL = 200
#: Builds whose live log lines the panel keeps.
LIVE_BUILDS = 20

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
    if isinstance(param, IntParameter):
        return widgets.IntText(value=param.default or 0, description=param.label)
    return widgets.Text(value=param.default or "", description=param.label)


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
        self._param_widgets: dict[str, widgets.Widget] = {}
        self._form_scheduler: Any = None  # the force scheduler the form's fields come from
        super().__init__(
            [
                self.header,
                widgets.HTML("<b>Builders</b>"),
                self.builders,
                widgets.HBox([self.queue, self.workers]),
                widgets.HTML("<b>Build</b>"),
                widgets.HBox([self.build_picker, self.stop_button]),
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
        self.force_button.on_click(lambda _: self._spawn(self.force()))
        self.stop_button.on_click(lambda _: self._spawn(self.stop_selected()))
        self._show_params()
        self._pending: asyncio.TimerHandle | None = None
        self._unsubscribe = master.events.subscribe(self._on_event)
        self._spawn(self.refresh())

    # -- following the master ---------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "log":
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
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(REFRESH, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._pending = None
        self._spawn(self.refresh())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._report)

    def _report(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.status.value = f'<span style="color:#ea4335">{escape(str(task.exception()))}</span>'

    def close(self) -> None:
        self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
        super().close()

    async def refresh(self) -> None:
        """Read the master's state and redraw every part of the panel."""
        master = self.master
        if master.store is None:
            self.header.value = "<i>the master is not running</i>"
            return
        builds = await master.store.builds(limit=max(self.recent * len(master.pipeline.builders), 50))
        by_builder: dict[str, list[dict[str, Any]]] = {}
        for build in builds:
            by_builder.setdefault(build["builder"], []).append(build)
        rows = "".join(
            f"<tr><td style='padding-right:1em'><b>{escape(b.name)}</b></td><td>"
            + ("".join(badge(x) for x in reversed(by_builder.get(b.name, [])[: self.recent])) or "<i>no builds yet</i>")
            + "</td></tr>"
            for b in master.pipeline.builders
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
        options = [(f"{b['builder']} #{b['number']} ({b['result'] or 'running'})", b["id"]) for b in builds[:30]]
        selected = self.build_picker.value
        self.build_picker.options = options
        if selected in {value for _, value in options}:
            self.build_picker.value = selected
        await self._show_build()

    def _picked(self) -> None:
        self._spawn(self._show_build(reload_log=True))

    async def _show_build(self, reload_log: bool = False) -> None:
        build_id = self.build_picker.value
        if build_id is None:
            self.steps.value = self.log_tail.value = ""
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
        elif reload_log:  # a build from before the panel: the end of its log is in the store
            lines: list[str] = []
            for step in reversed(build["steps"]):
                tail, _ = await self.master.store.log_tail(build_id, step["number"], "stdio", TAIL - len(lines))
                lines[:0] = [line for _, line in tail]
                if len(lines) >= TAIL:
                    break
            self.log_tail.value = _pre("\n".join(lines))

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
        self._param_widgets = {p.name: _param_widget(p) for p in (scheduler.params if scheduler else [])}
        self.force_params.children = list(self._param_widgets.values())
        self.force_button.disabled = scheduler is None

    async def force(self) -> list[int]:
        """Force a build with what the form says (as the Force button does)."""
        try:
            ids = await self.master.force(
                self.force_builder.value,
                reason=self.force_reason.value,
                branch=self.force_branch.value or None,
                revision=self.force_revision.value or None,
                properties={name: w.value for name, w in self._param_widgets.items()},
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
