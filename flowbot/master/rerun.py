"""Running one step of a finished build again: the request that asks for it, the steps it runs,
the worker it waits for, and its output followed as it comes.

A rerun is an ordinary build request whose properties say what it is (``rerun_of``: the build,
``rerun_step``: the step's number from 1, ``rerun_worker``: the worker it must run on,
``rerun_command``: a command that replaces the step's), so it is stored, shown and queried as any
build is, and the API and History see the link.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from ..builder import Builder
from ..errors import InvalidRequest
from ..records import Build, BuildRequest, BuildsetSpec
from ..steps.base import Step
from .events import EventKind

RERUN_OF = "rerun_of"
RERUN_STEP = "rerun_step"
RERUN_WORKER = "rerun_worker"
RERUN_COMMAND = "rerun_command"
SOURCE = "Rerun"
_OWN = ("Build", SOURCE)  # recomputed by the new build, or set for it here


def rerun_spec(
    build: Build,
    spec: BuildsetSpec,
    builder: Builder,
    step: int,
    *,
    worker: str | None,
    properties: dict[str, Any] | None,
    command: Any,
    reason: str,
) -> BuildsetSpec:
    """The buildset that runs step ``step`` (from 1) of ``build`` again: the build's own properties
    (as it ended, so what earlier steps set is there) over the buildset's, then ``properties``.

    Raises:
        InvalidRequest: no such step, a worker the builder does not use, or a command for a step
            that runs none.
    """
    if not 1 <= step <= len(builder.steps):
        raise InvalidRequest(f"builder {builder.name!r} has steps 1 to {len(builder.steps)}, not {step}")
    worker = worker or build.worker
    if worker not in builder.workers:
        raise InvalidRequest(f"builder {builder.name!r} does not run on worker {worker!r}")
    if command is not None and not hasattr(builder.steps[step - 1], "command"):
        raise InvalidRequest(f"step {step} of {builder.name!r} runs no command to replace")
    kept = {n: (v, s) for n, (v, s) in build.properties.items() if s not in _OWN}
    wanted = {
        RERUN_OF: build.id,
        RERUN_STEP: step,
        RERUN_WORKER: worker,
        **({RERUN_COMMAND: command} if command is not None else {}),
    }
    merged = {
        **spec.properties,
        **kept,
        **{n: (v, SOURCE) for n, v in (properties or {}).items()},
        **{n: (v, SOURCE) for n, v in wanted.items()},
    }
    # A build of "whatever is newest" reruns what it built.
    stamps = tuple(
        dataclasses.replace(s, revision=build.revision) if i == 0 and s.revision is None else s
        for i, s in enumerate(spec.sourcestamps)
    )
    text = reason or f"rerun of step {step} of {build.builder} #{build.number}"
    return dataclasses.replace(spec, reason=text, properties=merged, sourcestamps=stamps)


def steps_to_run(steps: list[Step], request: BuildRequest) -> list[tuple[int, Step]]:
    """The steps a build of ``request`` runs, with their indexes: all of them, or the one it reruns
    (with the command it was given in place of its own)."""
    chosen = request.properties.get(RERUN_STEP)
    if chosen is None:
        return list(enumerate(steps))
    index = chosen[0] - 1
    step = steps[index]
    command = request.properties.get(RERUN_COMMAND)
    if command is not None:
        step = copy.copy(step)
        step.command = command[0]
    return [(index, step)]


def wanted_worker(request: BuildRequest) -> str | None:
    """The worker a request must run on, if it names one."""
    worker = request.properties.get(RERUN_WORKER)
    return None if worker is None else worker[0]


class Follower:
    """Gathers the live log lines of one request's build, and learns the build's id. Events may
    come before the request's id is known: they wait here."""

    def __init__(self, builder: str):
        self.builder = builder
        self.request_id: int | None = None
        self.build_id: int | None = None
        self._started: dict[int, int] = {}  # request id -> build id, for this builder
        self._lines: dict[int, list[str]] = {}  # request id -> lines of a request not known yet
        self._ready: list[str] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == EventKind.BUILD_STARTED and event["build"]["builder"] == self.builder:
            self._started[event["build"]["request_id"]] = event["build"]["id"]
        elif event["type"] == EventKind.LOG and event["builder"] == self.builder:
            self._lines.setdefault(event["request_id"], []).extend(line for _, line in event["lines"])
        self._flush()

    async def relay(self, request_id: int, done: asyncio.Future, output: Callable[[str], Any] | None) -> None:
        """Hand the lines to ``output`` until ``done``, from the caller's own task: a notebook shows
        what a cell's tasks print in that cell, and the events come from the master's tasks."""
        self.request_id = request_id
        done.add_done_callback(lambda _: self._arrived.set())
        self._flush()
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            lines, self._ready = self._ready, []
            for line in lines if output is not None else ():
                output(line)
            if done.done():
                done.result()
                return

    def _flush(self) -> None:
        if self.request_id is None:
            return
        if self.build_id is None:
            self.build_id = self._started.get(self.request_id)
        self._ready += self._lines.pop(self.request_id, [])
        self._lines.clear()
        if self._ready:
            self._arrived.set()
