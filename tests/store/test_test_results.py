"""Recording test results (``Store.add_test_results``): parsed JUnit cases land linked to their build and step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from flowbot.junit import parse
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.store import schema as t

from .test_store import NOW, buildset, rows


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


REPORT = """<testsuite name="unit">
  <testcase classname="test_a" name="test_ok" time="0.5"/>
  <testcase classname="test_a" name="test_bad"><failure message="boom"/></testcase>
</testsuite>"""


async def test_cases_are_stored_with_their_build_and_step(store: Store):
    # Given a build whose step is still on its way to the store
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()
    writes = [
        store.builds.start(request, 1, "w1", NOW, "master", build),
        store.steps.start(build, 0, "pytest", NOW, step),
        # When its report's cases are queued behind it, before any id is known
        store.steps.add_test_results(build, step, parse(REPORT)),
        store.steps.add_test_results(build, step, []),
        store.steps.finish(step, Result.FAILURE, NOW + 1),
        store.builds.finish(build, request, Result.FAILURE, NOW + 1),
    ]
    results = await asyncio.gather(*writes)

    # Then each case is one row, linked to the build and the step
    assert results[2:4] == [2, 0]
    stored = await rows(store, t.test_results)
    assert [
        (r.build_id, r.step_id, r.suite, r.classname, r.name, r.outcome, r.duration, r.message) for r in stored
    ] == [
        (build.id, step.id, "unit", "test_a", "test_ok", "passed", 0.5, ""),
        (build.id, step.id, "unit", "test_a", "test_bad", "failed", None, "boom"),
    ]

    # And they go when their build goes
    await store.submit(lambda conn: conn.execute(sa.delete(t.builds).where(t.builds.c.id == build.id)))
    assert await rows(store, t.test_results) == []


async def test_long_test_names_are_kept_whole_and_only_unindexable_ones_are_cut(store: Store):
    # Given a report with a parametrised test whose name is 600 characters, and one of 3000
    long_name, huge_name = "test_" + "p" * 595, "test_" + "q" * 2995
    report = f"""<testsuite name="{"s" * 300}">
      <testcase classname="{"c" * 600}" name="{long_name}"/>
      <testcase classname="pkg.mod" name="{huge_name}"><failure message="no"/></testcase>
    </testsuite>"""
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()

    # When its cases are stored
    stored = await asyncio.gather(
        store.builds.start(request, 1, "w1", NOW, "master", build),
        store.steps.start(build, 0, "pytest", NOW, step),
        store.steps.add_test_results(build, step, parse(report)),
    )

    # Then both are there: the first as written, the second cut to fit the index, visibly
    assert stored[2] == 2
    first, second = await rows(store, t.test_results)
    assert (first.suite, first.classname, first.name) == ("s" * 300, "c" * 600, long_name)
    assert second.name.startswith("test_qqq") and second.name.endswith("…")
    assert len(second.name.encode()) == 1024
    assert second.outcome == "failed"
