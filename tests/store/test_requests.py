"""The store's build requests (``flowbot/store/requests.py``) as people list them, on SQLite and PostgreSQL."""

from __future__ import annotations

from flowbot.records import MATRIX_SOURCE, Change
from flowbot.results import Result
from flowbot.store import Store

from .test_store import NOW, build_now, buildset, run_build, store  # noqa: F401 (fixture)


async def test_listed_requests_carry_what_their_buildset_says_of_them(store: Store) -> None:  # noqa: F811
    # Given a change whose buildset has properties, one builder a matrix of two cells, and a
    # forced buildset that a build triggered
    spec = buildset("unit", "lint", properties={"ticket": (42, "Scheduler")}, cells={"unit": ({"py": "3.12"},)})
    _, requests = await store.changes.add(Change(branch="main", revision="abc123"), [build_now(spec)], NOW)
    parent = await run_build(store, requests[1], 1, Result.SUCCESS)
    (triggered,) = await store.requests.add_buildset(buildset("docs", parent_build_id=parent), NOW + 1)

    # When someone lists them, pending or all, or asks for one
    listed = {r.id: r for r in await store.requests.query()}
    pending = {r.id: r for r in await store.requests.query(pending=True)}
    (one,) = await store.requests.query(request_id=requests[0].id)

    # Then each carries its properties (a cell's values among them), whether changes made it and
    # the build that triggered it, as the queue reads them
    unit, lint = listed[requests[0].id], listed[requests[1].id]
    assert unit.properties == {"ticket": (42, "Scheduler"), "py": ("3.12", MATRIX_SOURCE)}
    assert lint.properties == {"ticket": (42, "Scheduler")}
    assert (unit.from_changes, lint.from_changes, listed[triggered.id].from_changes) == (True, True, False)
    assert (unit.parent_build_id, listed[triggered.id].parent_build_id) == (None, parent)
    assert one == unit == pending[unit.id]
    queued = {r.id: r for r in await store.requests.pending()}
    assert pending[unit.id] == queued[unit.id]
    assert lint.result == Result.SUCCESS and lint.complete_at is not None and lint.id not in pending
