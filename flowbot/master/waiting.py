"""Why a pending request waits: what each worker of its builder is doing instead, or the locks.

The dispatcher starts a request as soon as one of its builder's workers is connected, takes
builds (not paused, not shutting down), is not running that builder already and is below its
``max_builds``, and the builder's locks can be taken for it. When none can, people ask why; this
says it in one line from the same facts, as plain data, so it is tested without a master.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerFacts:
    """What the dispatcher knows of one worker when it looks for one to run a build on."""

    name: str
    connected: bool
    #: Why someone paused it ("" when they gave no reason), or None when it is not paused.
    paused: str | None = None
    shutting_down: bool = False
    #: The builders of the builds it runs.
    running: tuple[str, ...] = ()
    max_builds: int | None = None
    #: Started on demand: an instance is on its way (or will be) rather than connected.
    on_demand: bool = False


def why_waiting(builder: str, known: bool, workers: Sequence[WorkerFacts], locks_free: bool) -> str:
    """Why a request for ``builder`` has not started, in one line.

    Args:
        known: the pipeline has the builder (a reconfigure may have removed it).
        workers: the builder's workers.
        locks_free: whether the builder's locks could be taken on a free worker now.
    """
    if not known:
        return f"the pipeline has no builder {builder} now; it waits for one"
    if not workers:
        return f"builder {builder} has no workers"
    reasons = []
    free = False
    for w in workers:
        if w.on_demand and not w.connected:
            reasons.append(f"an instance of {w.name} is to start")
        elif not w.connected:
            reasons.append(f"{w.name} is offline")
        elif w.paused is not None:
            reasons.append(f"{w.name} is paused" + (f" ({w.paused})" if w.paused else ""))
        elif w.shutting_down:
            reasons.append(f"{w.name} is shutting down")
        elif builder in w.running:
            reasons.append(f"{w.name} runs a build of {builder} already")
        elif w.max_builds is not None and len(w.running) >= w.max_builds:
            reasons.append(f"{w.name} runs {len(w.running)} builds, its max_builds")
        else:
            free = True
    if free and not locks_free:
        return "waiting for the builder's locks"
    if free:
        return "starting"
    return "; ".join(reasons)
