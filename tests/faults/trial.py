"""One trial of a fault: set a rig up, put it under load, inject the fault, then check what must hold.

The tests run a trial or two of each fault; ``benchmarks/faults.py`` runs many and prints the
table of :func:`table`. What a trial checks, once every accepted request has been dealt with:

- **lost**: accepted requests (the API answered 201 with their ids) not built, that is with no
  build that ended SUCCESS, or WARNINGS with a log saying what it lacks;
- **builds twice**: requests built more than once;
- **steps twice**: steps that completed twice for one request, or started twice in one build (from
  the ledger the steps keep themselves, not from what the master recorded);
- **logs incomplete**: built builds whose log lacks lines without saying so;
- **survived**: the master serves and builds after the fault (a probe build forced as the fault
  ends finishes), without a traceback in its log;
- **recovery**: seconds from the end of the fault until that probe build has finished.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowbot.client import Client
from flowbot.errors import FlowbotError

from ..outages import PostgresServer, SmallDisk
from ..support import step_log, wait_for
from .rig import Rig

#: How long the checks wait for every accepted request to be dealt with after a fault.
SETTLE = 180.0
#: Requests forced before the fault; more are forced every :data:`LOAD_EVERY` seconds until it ends.
QUEUED = 3
LOAD_EVERY = 1.0
#: What a log that lacks lines says of itself.
MARKER = "could not be stored"


@dataclass
class Resources:
    """What a fault may need besides a directory: a PostgreSQL server of its own, small disks."""

    postgres: PostgresServer | None = None
    mount: Callable[[int], SmallDisk] | None = None


class Fault:
    """A fault: the rig it needs, and how to inject it. Subclasses override :meth:`inject` and, when the
    fault concerns the database or the link, :meth:`database` and the class attributes."""

    #: The fault's name in the table.
    name = "fault"
    #: Databases the fault is tried on ("sqlite", "postgresql").
    databases: tuple[str, ...] = ("sqlite",)
    heartbeat = 0.3
    proxied = False

    def database(self, kind: str, root: Path, resources: Resources) -> str | None:
        """The master's database URL for a trial on ``kind``."""
        if kind == "sqlite":
            return None
        if resources.postgres is None:
            raise RuntimeError(f"{self.name} on PostgreSQL needs a server of its own")
        return resources.postgres.create_database()

    def inject(self, rig: Rig, rng: random.Random, resources: Resources) -> float | None:
        """Break something while builds run, and return once the fault is over: with the moment it
        ended (``time.monotonic()``) when that was earlier (a kill), or None for now. Recovery is timed
        from then."""
        raise NotImplementedError


@dataclass(frozen=True)
class Outcome:
    """What one trial found."""

    fault: str
    db: str
    survived: bool
    accepted: int
    lost: int
    builds_twice: int
    steps_twice: int
    logs_incomplete: int
    recovery: float | None
    #: What went wrong, in words (empty when nothing did).
    problems: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.survived and not (self.lost or self.builds_twice or self.steps_twice or self.logs_incomplete)


class _Load:
    """Forces ``work`` requests, each with a revision of its own, until stopped; keeps the ids accepted.

    A request refused (503 while the database is away) or unanswered (the master is down) is not
    accepted, and its sender would try again: only what the API accepted must be built."""

    def __init__(self, url: str):
        self.client = Client(url, timeout=10)
        self.accepted: dict[int, str] = {}
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def force(self) -> None:
        self._count += 1
        revision = f"r{self._count}"
        try:
            (request_id,) = self.client.force("work", revision=revision)
        except FlowbotError:  # refused or unanswered: not accepted
            return
        self.accepted[request_id] = revision

    def _run(self) -> None:
        while not self._stop.wait(LOAD_EVERY):
            self.force()

    def start(self) -> None:
        for _ in range(QUEUED):
            self.force()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _probe(client: Client, timeout: float) -> float:
    """Force a probe build (again and again while the master refuses or does not answer) and wait
    until it has finished; returns when it did (``time.monotonic()``)."""

    def forced() -> int | None:
        try:
            return client.force("probe")[0]
        except FlowbotError:
            return None

    request_id = wait_for(forced, timeout, "the master to take a probe request")

    def finished() -> bool:
        try:
            builds = client.request("GET", f"/api/buildrequests/{request_id}")["builds"]
        except FlowbotError:
            return False
        return any(b["result"] == "SUCCESS" for b in builds)

    wait_for(finished, timeout, "the probe build to finish")
    return time.monotonic()


def _settled(client: Client, accepted: set[int]) -> bool:
    """Whether every accepted request has been dealt with and no build of ``work`` runs."""
    try:
        pending = {r["id"] for r in client.buildrequests(pending=True)}
        running = [b for b in client.builds(builder="work", limit=20) if b["result"] is None]
    except FlowbotError:
        return False
    return not (pending & accepted) and not running


def run_trial(fault: Fault, db: str, root: Path, resources: Resources, seed: int) -> Outcome:
    """Try ``fault`` once on a fresh rig in ``root`` (on database ``db``); ``seed`` chooses its moments."""
    rng = random.Random(seed)
    problems: list[str] = []
    rig = Rig(root, fault.database(db, root, resources), heartbeat=fault.heartbeat, proxied=fault.proxied)
    recovery = None
    load = None
    try:
        rig.start()
        load = _Load(rig.master.url)
        load.start()
        ended = fault.inject(rig, rng, resources) or time.monotonic()
        recovery = _probe(rig.client, SETTLE) - ended
        load.stop()
        accepted = set(load.accepted)
        wait_for(lambda: _settled(rig.client, accepted), SETTLE, "every accepted request to be dealt with")
        return _check(fault, db, rig, load.accepted, recovery, problems)
    except (pytest.fail.Exception, FlowbotError, RuntimeError, OSError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
        return Outcome(fault.name, db, False, len(load.accepted) if load else 0, 0, 0, 0, 0, recovery, tuple(problems))
    finally:
        if load is not None:
            load.stop()
        rig.close()


def _check(fault: Fault, db: str, rig: Rig, accepted: dict[int, str], recovery: float, problems: list[str]) -> Outcome:
    client = rig.client
    builds = [b for b in client.builds(builder="work", limit=1000) if b["request_id"] in accepted]
    built: dict[int, list[dict]] = {request_id: [] for request_id in accepted}
    logs_incomplete = 0
    for build in builds:
        if build["result"] not in ("SUCCESS", "WARNINGS"):
            continue
        log = step_log(client, build["id"], 0)
        numbered = [line for line in log.splitlines() if line.startswith("line ")]
        whole = numbered == [f"line {i}" for i in range(1, rig.lines + 1)]
        marked = MARKER in log and build["result"] == "WARNINGS"
        if build["result"] == "SUCCESS" or marked:
            built[build["request_id"]].append(build)
        if not (whole or marked):
            logs_incomplete += 1
            problems.append(f"build {build['id']} ({build['result']}): {len(numbered)} of {rig.lines} lines, unmarked")
    lost = [request_id for request_id, done in built.items() if not done]
    twice = [request_id for request_id, done in built.items() if len(done) > 1]
    if lost:
        problems.append(f"not built: requests {sorted(lost)}")
    if twice:
        problems.append(f"built more than once: requests {sorted(twice)}")
    steps_twice = 0
    for step in ("print", "end"):
        notes = rig.ledger_notes(step)
        completed = Counter(revision for (revision, _, what) in notes.elements() if what == "end")
        again = [revision for revision, count in completed.items() if count > 1]
        restarted = [key for key, count in notes.items() if key[2] == "start" and count > 1]
        steps_twice += len(again) + len(restarted)
        if again or restarted:
            problems.append(f"step {step} completed twice for {again}, started twice in one build for {restarted}")
    survived = rig.master_alive() and "Traceback" not in rig.master_logs()
    if not survived:
        problems.append("the master is down" if not rig.master_alive() else "a traceback in the master's log")
    return Outcome(
        fault.name,
        db,
        survived,
        len(accepted),
        len(lost),
        len(twice),
        steps_twice,
        logs_incomplete,
        recovery,
        tuple(problems),
    )


@dataclass
class Tally:
    """The trials of one fault on one database."""

    fault: str
    db: str
    outcomes: list[Outcome] = field(default_factory=list)

    def row(self) -> list[str]:
        recoveries = [o.recovery for o in self.outcomes if o.recovery is not None]
        recovery = f"{statistics.median(recoveries):.2f} / {max(recoveries):.2f}" if recoveries else "-"
        return [
            self.fault,
            self.db,
            str(len(self.outcomes)),
            str(sum(o.survived for o in self.outcomes)),
            str(sum(o.accepted for o in self.outcomes)),
            str(sum(o.lost for o in self.outcomes)),
            str(sum(o.builds_twice for o in self.outcomes)),
            str(sum(o.steps_twice for o in self.outcomes)),
            str(sum(o.logs_incomplete for o in self.outcomes)),
            recovery,
        ]


HEADERS = [
    "fault",
    "database",
    "trials",
    "survived",
    "accepted",
    "lost",
    "builds twice",
    "steps twice",
    "logs incomplete",
    "recovery s (median / max)",
]


def table(tallies: list[Tally]) -> str:
    """The tallies as a Markdown table."""
    rows = [HEADERS, ["---"] * len(HEADERS), *(tally.row() for tally in tallies)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
