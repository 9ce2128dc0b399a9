"""Following builds from the command line: ``flowbot logs`` and ``flowbot force --wait/--follow``.

Steps are numbered from 1 here, as the web page numbers them (the API counts from 0). Following
polls the master's API (a page of new lines per step, twice a second), so it needs nothing but
the standard library and works through any proxy the API works through.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO

from ..client import Client
from ..errors import InvalidRequest
from ..record_json import build_from_json
from ..records import Build, StepRecord

#: Seconds between two looks at a running build.
POLL = 0.5
#: Lines asked for at a time.
PAGE = 5000
#: Results a script may go on after.
PASSED = frozenset({"SUCCESS", "WARNINGS"})


def pick_step(build: Build, step: str) -> StepRecord:
    """The step ``step`` names: its number as the page shows it (from 1) or its name."""
    if step.isdigit():
        number = int(step) - 1
        found = next((s for s in build.steps if s.number == number), None)
    else:
        found = next((s for s in build.steps if s.name == step), None)
    if found is None:
        names = ", ".join(f"{s.number + 1} {s.name}" for s in build.steps) or "none yet"
        raise InvalidRequest(f"build {build.builder}/{build.number} has no step {step!r} (its steps: {names})")
    return found


def _heading(step: StepRecord) -> str:
    said = f" ({step.summary})" if step.summary else ""
    return f"── step {step.number + 1}: {step.name}{said} ──"


class _Printer:
    """Writes log lines as text, or as JSON lines (``{"step", "line", "stream", "text"}``)."""

    def __init__(self, out: IO[str], as_json: bool, headings: bool):
        self.out, self.as_json, self.headings = out, as_json, headings

    def heading(self, step: StepRecord) -> None:
        if self.headings and not self.as_json:
            self.out.write(_heading(step) + "\n")

    def lines(self, step: StepRecord, first: int, lines: list[list[str]]) -> None:
        for offset, (tag, text) in enumerate(lines):
            if self.as_json:
                record = {"step": step.number + 1, "line": first + offset + 1, "stream": tag, "text": text}
                self.out.write(json.dumps(record) + "\n")
            else:
                self.out.write(text + "\n")
        self.out.flush()


def logs(
    client: Client, ref: str, step: str | None = None, *, as_json: bool = False, out: IO[str] = sys.stdout
) -> None:
    """Print a finished build's logs (or one step's), whole, as stored."""
    build = build_from_json(client.build(ref))
    steps = [pick_step(build, step)] if step is not None else build.steps
    printer = _Printer(out, as_json, headings=step is None)
    for s in steps:
        printer.heading(s)
        if as_json:
            first = 0
            while True:
                page = client.log_lines(build.id, s.number, first=first, count=PAGE)
                printer.lines(s, page["first"], page["lines"])
                first = page["first"] + len(page["lines"])
                if not page["lines"] or first >= page["total"]:
                    break
        else:
            out.flush()
            client.copy_log(build.id, s.number, out.buffer if hasattr(out, "buffer") else _Bytes(out))
            out.flush()


class _Bytes:
    """A text stream taking bytes (for output that is not a real file: a test's StringIO)."""

    def __init__(self, out: IO[str]):
        self.out = out

    def write(self, data: bytes) -> int:
        self.out.write(data.decode("utf-8", "replace"))
        return len(data)


def follow(
    client: Client,
    build_id: int,
    step: str | None = None,
    *,
    as_json: bool = False,
    out: IO[str] = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
) -> Build:
    """Print a build's log lines as they come, step after step, until it ends; returns the build."""
    printer = _Printer(out, as_json, headings=step is None)
    read: dict[int, int] = {}  # step number -> lines printed
    done: set[int] = set()
    while True:
        build = build_from_json(client.build(build_id))
        steps = [pick_step(build, step)] if step is not None else build.steps
        for s in steps:
            number = s.number
            if number in done:
                continue
            if number not in read:
                printer.heading(s)
                read[number] = 0
            while True:
                page = client.log_lines(build_id, number, first=read[number], count=PAGE)
                printer.lines(s, page["first"], page["lines"])
                read[number] = page["first"] + len(page["lines"])
                if not page["lines"] or read[number] >= page["total"]:
                    break
            if s.finished_at is not None:  # its log was whole before its end was stored
                done.add(number)
        if build.result is not None:
            return build
        sleep(POLL)


def wait(
    client: Client,
    request_ids: list[int],
    *,
    follow_logs: bool = False,
    as_json: bool = False,
    out: IO[str] = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until the requests are done (printing their builds' logs live with ``follow_logs``),
    say how each ended; True when every one passed (SUCCESS or WARNINGS)."""
    passed = True
    for request_id in request_ids:
        followed: set[int] = set()
        while True:
            request = client.buildrequest(request_id)
            if follow_logs:
                for build in request["builds"]:
                    if build["id"] not in followed:
                        followed.add(build["id"])
                        follow(client, build["id"], as_json=as_json, out=out, sleep=sleep)
            if request["complete_at"] is not None:
                break
            sleep(POLL)
        result = request["result"]
        passed = passed and result in PASSED
        builds = request["builds"]
        if as_json:
            out.write(json.dumps({"buildrequest": request_id, "result": result, "builds": builds}) + "\n")
        elif builds:
            last = builds[-1]
            summary = f" ({last['summary']})" if last.get("summary") else ""
            out.write(f"{last['builder']}/{last['number']} (build {last['id']}): {result}{summary}\n")
            for step in build_from_json(client.build(last["id"])).steps:
                if step.summary:
                    out.write(f"  step {step.number + 1} {step.name}: {step.summary}\n")
        else:
            out.write(f"build request {request_id}: {result} without a build\n")
        out.flush()
    return passed
