"""One build, to triage it where you are: its steps, logs and test results as frames, shown as the web page shows it.

``History.build(build_id)`` reads everything the store keeps of one build. Steps are numbered
from 1, as the web page numbers them (and as ``master.rerun_step`` takes them). In a notebook the
report draws itself: the build's result, its steps, the tests that failed and the end of the log
of the step that failed, ANSI colours and all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from ansi2html import Ansi2HTMLConverter

from ..errors import NotFound
from ..store import schema as t
from ..store.log_codec import unpack
from . import frames
from .dtypes import durations, results, timestamps
from .search import STREAMS

if TYPE_CHECKING:
    from .reader import Reader

_b, _s, _l, _tr = t.builds.c, t.steps.c, t.log_chunks.c, t.test_results.c
#: Lines of the failing step's log a report shows.
SHOWN_LINES = 40
_COLOURS = {
    "SUCCESS": "#2e9e44",
    "WARNINGS": "#d9a400",
    "FAILURE": "#d4373a",
    "EXCEPTION": "#8e44ad",
    "RETRY": "#e67e22",
    "CANCELLED": "#8a8f98",
    "SKIPPED": "#b5bac2",
}


@dataclass(frozen=True)
class BuildReport:
    """A build with its steps, logs and test results.

    Attributes:
        build: the build, as a row of :meth:`History.builds` (with ``build_id``, ``result``...).
        steps: ``number`` (from 1), ``name, result, summary, hidden, started_at, finished_at, duration``.
        logs: ``step`` (its number), ``step_name, log, line`` (from 1), ``stream`` (stdout,
            stderr or header) and ``text``, in order.
        tests: the build's test results (as :meth:`History.test_results` has them), failures first.
        properties: the build's properties as it ended, ``{name: value}``.
    """

    build: pd.Series
    steps: pd.DataFrame
    logs: pd.DataFrame
    tests: pd.DataFrame
    properties: dict[str, Any] = field(default_factory=dict)

    def log(self, step: int | str, name: str = "stdio") -> str:
        """The text of a step's log (the step by number, as shown, or by name)."""
        column = "step" if isinstance(step, int) else "step_name"
        lines = self.logs[(self.logs[column] == step) & (self.logs["log"] == name)]
        return "\n".join(lines["text"])

    @property
    def rerun_of(self) -> int | None:
        """The id of the build one of whose steps this build ran again (``master.rerun_step``), if it did."""
        return self.properties.get("rerun_of")

    @property
    def failed_step(self) -> int | None:
        """The number of the first step that failed, if one did."""
        failing = self.steps[self.steps["result"].isin(["FAILURE", "EXCEPTION"])]
        return int(failing["number"].iloc[0]) if len(failing) else None

    def _repr_html_(self) -> str:
        build = self.build
        result = str(build["result"]) if pd.notna(build["result"]) else "running"
        rows = "".join(
            f"<tr><td>{step.number}</td><td>{escape(step.name)}</td><td>{_badge(step.result)}</td>"
            f"<td>{escape(step.summary or '')}</td><td>{_seconds(step.duration)}</td></tr>"
            for step in self.steps.itertuples()
            if not step.hidden
        )
        failed = self.tests[self.tests["outcome"].isin(["failed", "error"])]
        tests = "".join(
            f"<li><code>{escape(f'{test.classname}.{test.name}')}</code> {escape(test.message or '')}</li>"
            for test in failed.head(20).itertuples()
        )
        shown = self.failed_step or (int(self.steps["number"].iloc[-1]) if len(self.steps) else None)
        tail = ""
        if shown is not None:
            lines = self.log(shown).split("\n")[-SHOWN_LINES:]
            html = Ansi2HTMLConverter(inline=True, dark_bg=True).convert("\n".join(lines), full=False)
            tail = (
                f"<p>the end of step {shown}'s log</p><pre style='background:#16181d;color:#e4e6ea;padding:.5em;"
                f"max-height:24em;overflow:auto;white-space:pre-wrap'>{html}</pre>"
            )
        revision = f" · {escape(str(build['revision']))[:12]}" if pd.notna(build["revision"]) else ""
        return (
            f"<div class='flowbot-build'><p><b>{escape(str(build['builder']))} #{build['number']}</b> "
            f"{_badge(result)} on {escape(str(build['worker']))}{revision}</p>"
            f"<table><thead><tr><th>#</th><th>step</th><th>result</th><th></th><th>took</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            + (f"<p>{len(failed)} test(s) failed</p><ul>{tests}</ul>" if len(failed) else "")
            + tail
            + "</div>"
        )


def _badge(result: object) -> str:
    text = str(result) if isinstance(result, str) or pd.notna(result) else "running"
    colour = _COLOURS.get(text, "#f2c200")
    return (
        f"<span style='background:{colour};color:#fff;padding:0 .5em;border-radius:3px;"
        f"font-size:.85em;font-weight:600'>{escape(text)}</span>"
    )


def _seconds(took: object) -> str:
    return f"{took.total_seconds():.1f} s" if isinstance(took, pd.Timedelta) and pd.notna(took) else ""


def build_report(reader: Reader, build_id: int) -> BuildReport:
    """Build ``build_id``'s steps, logs and test results as frames (see :class:`BuildReport`)."""
    with reader.engine.connect() as conn:
        known = conn.execute(sa.select(_b.builder, _b.started_at, _b.properties).where(_b.id == build_id)).first()
    if known is None:
        raise NotFound(f"no build with id {build_id}")
    # Read as builds() and test_results() read them, narrowed to the builds that started at that instant.
    narrowed = {"builder": known.builder, "since": known.started_at, "until": known.started_at + 1e-3}
    builds = frames.builds(reader, **narrowed)
    found = builds[builds["build_id"] == build_id]
    steps = reader.read(
        sa.select(
            _s.id.label("step_id"),
            _s.number,
            _s.name,
            _s.result,
            _s.summary,
            _s.hidden,
            _s.started_at,
            _s.finished_at,
        )
        .where(_s.build_id == build_id)
        .order_by(_s.number)
    )
    numbers = dict(zip(steps["step_id"], steps["number"] + 1, strict=True))
    names = dict(zip(steps["step_id"], steps["name"], strict=True))
    steps["duration"] = durations(steps["finished_at"] - steps["started_at"])
    steps["result"] = results(steps["result"])
    steps["hidden"] = steps["hidden"].astype(bool)
    steps["started_at"], steps["finished_at"] = timestamps(steps["started_at"]), timestamps(steps["finished_at"])
    steps["number"] = steps["number"] + 1
    chunks = reader.read(
        sa.select(_l.step_id, _l.log, _l.first_line, _l.content, reader.compressed.label("compressed"), _l.streams)
        .join(t.steps, _s.id == _l.step_id)
        .where(_s.build_id == build_id)
        .order_by(_s.number, _l.log, _l.first_line)
    )
    rows = []
    for chunk in chunks.itertuples():
        lines = unpack(chunk.content, chunk.compressed).split("\n")
        for offset, (stream, text) in enumerate(zip(chunk.streams, lines, strict=True)):
            number, name = numbers[chunk.step_id], names[chunk.step_id]
            rows.append((number, name, chunk.log, chunk.first_line + offset + 1, STREAMS.get(stream, stream), text))
    logs = pd.DataFrame(rows, columns=["step", "step_name", "log", "line", "stream", "text"])
    tests = frames.test_results(reader, **narrowed)
    tests = tests[tests["build_id"] == build_id]
    failing = tests["outcome"].isin(["failed", "error"])
    tests = pd.concat([tests[failing], tests[~failing]]).reset_index(drop=True)
    properties = {name: value for name, (value, _) in (known.properties or {}).items()}
    return BuildReport(found.iloc[0], steps.drop(columns=["step_id"]), logs, tests, properties)
