"""The store's reads for people (``log_pages``, ``test_pages``, ``change_links``), on SQLite and
PostgreSQL: a page anywhere in a log of many chunks, its first error, a build's tests failures
first, and changes linked to their builds both ways."""

from __future__ import annotations

import asyncio

import pytest

from flowbot.errors import NotFound
from flowbot.junit import Outcome, TestCase
from flowbot.records import Change, StoredArtifact
from flowbot.results import Result
from flowbot.store import Ref, Store

from .test_store import NOW, build_now, buildset, store  # noqa: F401 (fixture)


async def _build_with_log(store: Store, chunks: list[tuple[str, str]]) -> tuple[int, Ref, Ref]:  # noqa: F811
    """A running build whose first step has a stdio log made of ``chunks`` (text, tags)."""
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()
    writes = [
        store.builds.start(request, 1, "w1", NOW, "master", build),
        store.steps.start(build, 0, "test", NOW, step),
    ]
    first = 0
    for text, tags in chunks:
        writes.append(store.logs.append(step, "stdio", first, text, tags))
        first += len(tags)
    await asyncio.gather(*writes)
    return build.id, build, step


async def test_a_page_anywhere_in_a_log_reads_only_its_lines(store: Store) -> None:  # noqa: F811
    # Given a log of 10 chunks of 100 lines, a header first
    chunks = [("\n".join(f"line {n}" for n in range(i * 100, i * 100 + 100)), "o" * 100) for i in range(10)]
    chunks[0] = ("make test\n" + chunks[0][0].split("\n", 1)[1], "h" + "o" * 99)
    build_id, _, _ = await _build_with_log(store, chunks)

    # A page across two chunks, the tail, and a page past the end
    page = await store.logs.page(build_id, 0, first=195, count=10)
    assert (page.first, page.total) == (195, 1000)
    assert [text for _, text in page.lines] == [f"line {n}" for n in range(195, 205)]
    tail = await store.logs.page(build_id, 0, first=None, count=3)
    assert (tail.first, [text for _, text in tail.lines]) == (997, ["line 997", "line 998", "line 999"])
    start = await store.logs.page(build_id, 0, first=0, count=2)
    assert start.lines == [("h", "make test"), ("o", "line 1")]
    beyond = await store.logs.page(build_id, 0, first=5000, count=10)
    assert (beyond.first, beyond.lines, beyond.total) == (1000, [], 1000)
    with pytest.raises(NotFound):
        await store.logs.page(build_id, 0, "other", first=0, count=10)
    assert (await store.logs.page(build_id, 0, first=0, count=0)).total == 1000


async def test_the_first_error_is_the_first_output_line_that_reads_as_one(store: Store) -> None:  # noqa: F811
    build_id, _, _ = await _build_with_log(
        store,
        [
            ("pytest -x  # stops at the first error\ncollected 3 items", "ho"),
            ("tests/a.py ..\n\x1b[31mE   AssertionError: 3 != 5\x1b[0m\nFAILED tests/a.py::test_add", "oeo"),
        ],
    )
    assert await store.logs.first_error(build_id, 0) == 3  # not the header, whatever it says; colours aside
    assert await store.logs.first_error(build_id, 0, after=4) == 4
    assert await store.logs.first_error(build_id, 0, after=5) is None


async def test_a_builds_tests_come_failures_first_with_their_step(store: Store) -> None:  # noqa: F811
    build_id, build, step = await _build_with_log(store, [("ran", "o")])
    cases = [
        TestCase("s", "tests.a", "test_ok", Outcome.PASSED, 0.1, ""),
        TestCase("s", "tests.a", "test_skip", Outcome.SKIPPED, None, "slow"),
        TestCase("s", "tests.a", "test_err", Outcome.ERROR, 0.2, "boom"),
        TestCase("s", "tests.a", "test_bad", Outcome.FAILED, 0.3, "assert 3 == 5", "tests/a.py", 12),
    ]
    await store.steps.add_test_results(build, step, cases)
    found = await store.steps.test_results(build_id)
    assert [(t.case.name, t.case.outcome, t.step, t.step_name) for t in found] == [
        ("test_bad", "failed", 0, "test"),
        ("test_err", "error", 0, "test"),
        ("test_skip", "skipped", 0, "test"),
        ("test_ok", "passed", 0, "test"),
    ]
    assert (found[0].case.file, found[0].case.line, found[0].case.message) == ("tests/a.py", 12, "assert 3 == 5")
    assert [t.case.name for t in await store.steps.test_results(build_id, outcomes=["passed", "error"])] == [
        "test_err",
        "test_ok",
    ]
    assert await store.steps.test_counts(build_id) == {"failed": 1, "error": 1, "skipped": 1, "passed": 1}


async def test_changes_and_the_builds_they_caused_link_both_ways(store: Store) -> None:  # noqa: F811
    # Given a change whose buildset has two builders, one built twice (a retry, then a rerun)
    change_id, (unit, lint) = await store.changes.add(
        Change(branch="main", revision="abc123", author="alice", comments="fix"),
        [build_now(buildset("unit", "lint"))],
        NOW,
    )
    retried, rerun, linted = Ref(), Ref(), Ref()
    await asyncio.gather(
        store.builds.start(unit, 1, "w1", NOW, "master", retried),
        store.builds.finish(retried, unit, Result.RETRY, NOW + 1),
        store.builds.start(unit, 2, "w1", NOW + 2, "master", rerun),
        store.builds.finish(rerun, unit, Result.SUCCESS, NOW + 3),
        store.builds.start(lint, 1, "w2", NOW, "master", linted),
    )
    builds = await store.changes.builds_of([change_id, 999])
    assert [(b.builder, b.number, b.result) for b in builds[change_id]] == [
        ("unit", 1, Result.RETRY),
        ("unit", 2, Result.SUCCESS),
        ("lint", 1, None),
    ]
    assert 999 not in builds
    (change,) = await store.changes.of_build(rerun.id)
    assert (change.id, change.revision, change.author) == (change_id, "abc123", "alice")
    assert await store.changes.recent(change_id=change_id) == await store.changes.recent(limit=1)


async def test_the_changes_that_caused_a_build_come_back_as_the_changes_stored(store: Store) -> None:  # noqa: F811
    # Given a change touching two files, built
    change_id, (request,) = await store.changes.add(
        Change(branch="main", revision="abc123", author="alice", files=("a.py", "b.py")),
        [build_now(buildset("unit"))],
        NOW,
    )
    build = Ref()
    await store.builds.start(request, 1, "w1", NOW, "master", build)
    # Then the build's changes are the change as the list of changes reads it, files and all
    assert await store.changes.of_build(build.id) == await store.changes.recent(change_id=change_id)
    assert await store.changes.of_build(999) == []


async def test_a_builds_files_come_back_with_their_step_and_whether_a_later_build_replaced_them(
    store: Store,  # noqa: F811
) -> None:
    # Given two builds whose steps stored a file at the same place, the first another file too
    (first_request, second_request) = await store.requests.add_buildset(buildset("unit", "lint"), NOW)
    first, first_step, second, second_step = Ref(), Ref(), Ref(), Ref()
    await asyncio.gather(
        store.builds.start(first_request, 1, "w1", NOW, "master", first),
        store.steps.start(first, 0, "test", NOW, first_step),
        store.builds.start(second_request, 1, "w1", NOW, "master", second),
        store.steps.start(second, 0, "lint", NOW, second_step),
    )
    report = {"path": "unit/report.html", "size": 10, "sha256": "a" * 64, "mtime_ns": 1}
    await store.steps.add_artifacts(first, first_step, [report, {**report, "path": "unit/other.txt"}], NOW)
    await store.steps.add_artifacts(second, second_step, [{**report, "sha256": "b" * 64, "mtime_ns": 2}], NOW + 1)

    # When each build's files are read
    older, other = await store.steps.artifacts(first.id)
    (newer,) = await store.steps.artifacts(second.id)

    # Then each is as stored, with its step, and the first build's report is replaced by the second's
    assert older == StoredArtifact("unit/report.html", 10, "a" * 64, 1, NOW, 0, "test", replaced=True)
    assert (other.path, other.replaced) == ("unit/other.txt", False)
    assert (newer.sha256, newer.step_name, newer.stored_at, newer.replaced) == ("b" * 64, "lint", NOW + 1, False)
    assert await store.steps.artifacts(first.id, "unit/other.txt") == [other]
