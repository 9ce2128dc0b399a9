"""A small, known history written through the store the way a master writes it, on SQLite and PostgreSQL.

The story (times from T0 = 2024-01-01 00:00 UTC, one hour apart unless said):

- ``unit`` on branch main: #1 r1 SUCCESS, #2 r2 FAILURE (bob's change broke it, test_parse fails,
  the log says "Segmentation fault"), #3 r3 SUCCESS (carol fixed it), #4 r3 again FAILURE (only
  test_network failed: flaky), #5 r4 SUCCESS, all on w1; each build has a one-minute ``compile``
  step and a ``test`` step running to its end (ten minutes after the build started).
- ``lint`` (no tests) on w2: #1 r1 SUCCESS, #2 r2 WARNINGS, two minutes each.
- ``unit`` #6 on branch feature: a RETRY on w2, rerun as #7 SUCCESS on w1 (one request, two builds).
- One request for ``unit`` is still pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from flowbot.analysis import History
from flowbot.junit import Outcome, TestCase
from flowbot.records import BuildRequest, BuildsetSpec, Change, Release, SourceStamp
from flowbot.results import Result
from flowbot.store import Ref, Store

T0 = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC
HOUR = 3600.0


@dataclass
class Known:
    """Ids the tests check answers against."""

    changes: dict[str, int]
    builds: dict[str, int]  # "unit#2" -> build id


def build_spec(builder: str, branch: str | None, revision: str | None) -> BuildsetSpec:
    return BuildsetSpec(
        scheduler="on-change",
        builders=(builder,),
        sourcestamps=(SourceStamp(repository="repo", branch=branch, revision=revision),),
    )


async def write_build(
    store: Store,
    request: BuildRequest,
    number: int,
    worker: str,
    at: float,
    result: Result,
    *,
    took: float = 600.0,
    log: str = "compiling\nall good",
    tests: Sequence[tuple[str, Outcome]] = (),
) -> int:
    build, compile_step, step = Ref(), Ref(), Ref()
    lines = log.split("\n")
    writes = [
        store.builds.start(request, number, worker, at, "master", build),
        store.steps.start(build, 0, "compile", at, compile_step),
        store.steps.finish(compile_step, Result.SUCCESS, at + 60),
        store.steps.start(build, 1, "test", at + 60, step),
        store.logs.append(step, "stdio", 0, "\n".join(["pytest -q", *lines]), "h" + "o" * len(lines)),
    ]
    if tests:
        cases = [TestCase("unit", "tests.test_core", name, outcome, 0.25, "") for name, outcome in tests]
        writes.append(store.steps.add_test_results(build, step, cases))
    writes += [
        store.steps.finish(step, result, at + took),
        store.builds.finish(build, request, result, at + took),
    ]
    await asyncio.gather(*writes)
    return build.id


async def write_history(store: Store) -> Known:
    """Write the story above; every write goes through the master's own store calls."""
    passed, failed = Outcome.PASSED, Outcome.FAILED
    changes, builds = {}, {}
    requests = {}
    for i, (who, rev, comment) in enumerate(
        [
            ("alice", "r1", "add parser"),
            ("bob", "r2", "speed up parser"),
            ("carol", "r3", "fix parser"),
            ("dan", "r4", "docs"),
        ]
    ):
        at = T0 + i * HOUR
        change = Change(
            branch="main",
            revision=rev,
            repository="repo",
            author=who,
            comments=comment,
            when=at - 60,
            files=(f"src/{rev}.py",),
        )
        specs = [build_spec("unit", "main", rev)] + ([build_spec("lint", "main", rev)] if i < 2 else [])
        decisions = [Release(s.scheduler, s.builders[0], (), s) for s in specs]
        changes[rev], made = await store.changes.add(change, decisions, at)
        for request in made:
            requests[(request.builder, rev)] = request
    await store.workers.connected("w1", {"os": "posix"}, T0 - HOUR)
    await store.workers.connected("w2", {"os": "posix"}, T0 - HOUR)

    ok = [("test_parse", passed), ("test_network", passed)]
    builds["unit#1"] = await write_build(store, requests["unit", "r1"], 1, "w1", T0 + 30, Result.SUCCESS, tests=ok)
    builds["unit#2"] = await write_build(
        store,
        requests["unit", "r2"],
        2,
        "w1",
        T0 + HOUR + 30,
        Result.FAILURE,
        log="running tests\nSegmentation fault (core dumped)\n1 failed",
        tests=[("test_parse", failed), ("test_network", passed)],
    )
    builds["unit#3"] = await write_build(
        store, requests["unit", "r3"], 3, "w1", T0 + 2 * HOUR + 30, Result.SUCCESS, tests=ok
    )
    (rerun,) = await store.requests.add_buildset(build_spec("unit", "main", "r3"), T0 + 3 * HOUR - 600)
    builds["unit#4"] = await write_build(
        store, rerun, 4, "w1", T0 + 3 * HOUR, Result.FAILURE, tests=[("test_parse", passed), ("test_network", failed)]
    )
    builds["unit#5"] = await write_build(
        store, requests["unit", "r4"], 5, "w1", T0 + 4 * HOUR, Result.SUCCESS, tests=ok
    )
    builds["lint#1"] = await write_build(store, requests["lint", "r1"], 1, "w2", T0 + 60, Result.SUCCESS, took=120)
    builds["lint#2"] = await write_build(
        store, requests["lint", "r2"], 2, "w2", T0 + HOUR + 60, Result.WARNINGS, took=120
    )

    # A feature-branch request lost with its worker, then rerun elsewhere
    (feature,) = await store.requests.add_buildset(build_spec("unit", "feature", "f1"), T0 + 5 * HOUR)
    builds["unit#6"] = await write_build(store, feature, 6, "w2", T0 + 5 * HOUR + 100, Result.RETRY, took=300)
    builds["unit#7"] = await write_build(store, feature, 7, "w1", T0 + 5 * HOUR + 500, Result.SUCCESS)
    # And one still waiting
    await store.requests.add_buildset(build_spec("unit", "main", "r5"), T0 + 6 * HOUR)
    return Known(changes=changes, builds=builds)


@pytest.fixture
async def history(db_url: str) -> AsyncIterator[tuple[History, Known]]:
    """A History over the known story, read with no master running."""
    store = await Store.open(db_url)
    try:
        known = await write_history(store)
    finally:
        await store.close()
    with History(db_url) as history:
        yield history, known
