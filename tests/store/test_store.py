"""The store (``flowbot/store/store.py``): what the master writes comes back as written, on SQLite and PostgreSQL.

Every test runs twice through the ``db_url`` fixture: on a SQLite file and on a fresh PostgreSQL
database. Build progress goes through the hot path the master uses: writes queued without awaiting,
later ones using the ids (:class:`Ref`) that earlier ones fill in when they run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from flowbot.errors import InvalidRequest, NotFound, StoreError
from flowbot.record_json import build_detail_json, build_json, request_json
from flowbot.records import Build, BuildRequest, BuildsetSpec, Change, Release, RememberedWorker, SourceStamp
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.store import schema as t

#: A time with microseconds, to check that times come back exactly (not rounded to float4 or ms).
NOW = 1_700_000_000.123456


def build_now(spec: BuildsetSpec) -> Release:
    """A scheduler's decision to build the new change at once, as ``spec`` says (linked to the change)."""
    return Release(spec.scheduler, "", (), spec)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An open, migrated store on an empty database; closed at teardown."""
    store = await Store.open(db_url)
    yield store
    await store.close()


def buildset(
    *builders: str, branch: str | None = "main", revision: str | None = "abc123", **fields: Any
) -> BuildsetSpec:
    return BuildsetSpec(
        scheduler="force",
        builders=builders,
        sourcestamps=(SourceStamp(repository="https://example.org/repo.git", branch=branch, revision=revision),),
        **fields,
    )


async def run_build(
    store: Store,
    request: BuildRequest,
    number: int,
    result: Result,
    *,
    steps: Sequence[tuple[str, Result]] = (("compile", Result.SUCCESS),),
    worker: str = "w1",
    at: float = NOW,
) -> int:
    """Run a whole build through the hot path, queueing every write before awaiting any; returns its id."""
    build = Ref()
    writes = [store.builds.start(request, number, worker, at, "master", build)]
    for index, (name, step_result) in enumerate(steps):
        step = Ref()
        writes.append(store.steps.start(build, index, name, at + index, step))
        writes.append(store.logs.append(step, "stdio", 0, f"running {name}", "h"))
        writes.append(store.steps.finish(step, step_result, at + index + 0.5))
    writes.append(store.builds.finish(build, request, result, at + len(steps)))
    await asyncio.gather(*writes)
    assert build.id is not None
    return build.id


async def rows(store: Store, table: sa.Table, *where: Any) -> list[sa.Row]:
    """Rows of a table the store has no read method for (buildsets, changes), read beside the store."""

    def read() -> list[sa.Row]:
        with store.engine.connect() as conn:
            return conn.execute(sa.select(table).where(*where).order_by(next(iter(table.c)))).all()

    return await asyncio.to_thread(read)


async def request_row(store: Store, request_id: int) -> dict[str, Any]:
    return next(request_json(r) for r in await store.requests.query(limit=1000) if r.id == request_id)


# -- changes, buildsets and requests -----------------------------------------------------------------


async def test_a_change_is_stored_with_its_files_and_its_buildsets_requests_are_pending(store: Store) -> None:
    # Given a change touching two files, and two schedulers that each made a buildset of it
    change = Change(
        branch="main",
        revision="1a2b3c",
        repository="https://example.org/repo.git",
        project="demo",
        author="alice",
        comments="fix parser",
        files=("src/parser.py", "docs/index.md"),
        when=NOW - 60,
        properties={"ticket": 42, "labels": ["fast", "parser"]},
    )
    stamp = change.sourcestamp()
    specs = [
        BuildsetSpec(
            "on-change",
            ("unit", "lint"),
            (stamp,),
            reason="change 1a2b3c",
            properties={"x": (1, "Scheduler")},
            priority=5,
        ),
        BuildsetSpec("nightly", ("docs",), (stamp,), reason="docs changed", properties={"y": ([1, 2], "Scheduler")}),
    ]

    # When the change is stored, with schedulers building it at once
    change_id, requests = await store.changes.add(change, [build_now(spec) for spec in specs], NOW)

    # Then it is there with its files, linked to both buildsets
    (stored,) = await rows(store, t.changes)
    assert (stored.id, stored.branch, stored.revision, stored.author, stored.comments) == (
        change_id,
        "main",
        "1a2b3c",
        "alice",
        "fix parser",
    )
    assert (stored.when_at, stored.received_at) == (NOW - 60, NOW)
    assert stored.properties == {"ticket": 42, "labels": ["fast", "parser"]}
    assert sorted(r.path for r in await rows(store, t.change_files)) == ["docs/index.md", "src/parser.py"]
    buildset_ids = {r.buildset_id for r in requests}
    assert len(buildset_ids) == 2
    assert {(r.buildset_id, r.change_id) for r in await rows(store, t.buildset_changes)} == {
        (b, change_id) for b in buildset_ids
    }

    # And one request per builder is pending, with the buildset's sources, reason, properties and priority
    pending = await store.requests.pending()
    assert pending == requests
    assert [(r.builder, r.reason, r.properties, r.priority) for r in pending] == [
        ("unit", "change 1a2b3c", {"x": (1, "Scheduler")}, 5),
        ("lint", "change 1a2b3c", {"x": (1, "Scheduler")}, 5),
        ("docs", "docs changed", {"y": ([1, 2], "Scheduler")}, 0),
    ]
    assert all(r.sourcestamps == (stamp,) and r.submitted_at == NOW for r in pending)
    assert (pending[0].branch, pending[0].revision) == ("main", "1a2b3c")


async def test_a_buildset_keeps_one_sourcestamp_per_codebase_in_order(store: Store) -> None:
    stamps = (
        SourceStamp(codebase="app", repository="app.git", branch="main", revision="aaa", project="p"),
        SourceStamp(codebase="lib", repository="lib.git", branch="v2", revision=None, project="p"),
    )

    (request,) = await store.requests.add_buildset(BuildsetSpec("force", ("unit",), stamps, reason="forced"), NOW)

    (pending,) = await store.requests.pending()
    assert pending.id == request.id
    assert pending.sourcestamps == stamps
    # A request's branch and revision are those of its first codebase
    assert (pending.branch, pending.revision) == ("main", "aaa")


async def test_a_buildset_without_sourcestamps_is_stored(store: Store) -> None:
    # A custom scheduler may build without sources (Scheduler.buildset accepts an empty list)
    (request,) = await store.requests.add_buildset(BuildsetSpec("nightly", ("unit",), (), reason="nightly"), NOW)

    (pending,) = await store.requests.pending()
    assert pending.id == request.id
    assert pending.sourcestamps == ()
    assert pending.branch is None


# -- builds through the hot path ---------------------------------------------------------------------


async def test_a_build_written_through_the_hot_path_reads_back_with_steps_and_logs(store: Store) -> None:
    # Given a pending request
    (request,) = await store.requests.add_buildset(buildset("unit", reason="forced"), NOW - 10)

    # When a build claims it, runs two steps with log chunks and finishes, all queued without waiting
    build, compile_, tests = Ref(), Ref(), Ref()
    writes = [
        store.builds.start(request, 7, "w1", NOW, "master-1", build),
        store.steps.start(build, 0, "compile", NOW + 1, compile_),
        store.logs.append(compile_, "stdio", 0, "make\nin build", "hh"),
        store.logs.append(compile_, "stdio", 2, "cc -c parser.c\n\nparser.c:3: warning: unused x", "ooe"),
        store.logs.append(compile_, "stdio", 5, "exit code 0", "h"),
        store.steps.finish(compile_, Result.SUCCESS, NOW + 2, "compiled"),
        store.steps.start(build, 1, "test", NOW + 2, tests),
        store.logs.append(tests, "stdio", 0, "1 failed", "e"),
        store.steps.finish(tests, Result.FAILURE, NOW + 3, "1 failed"),
        store.builds.finish(build, request, Result.FAILURE, NOW + 4, "tests failed"),
    ]
    await asyncio.gather(*writes)

    # Then the build is listed with its times and result
    assert build.id is not None
    (listed,) = [build_json(b) for b in await store.builds.query()]
    assert listed == {
        "id": build.id,
        "builder": "unit",
        "number": 7,
        "worker": "w1",
        "result": "FAILURE",
        "branch": "main",
        "revision": "abc123",
        "request_id": request.id,
        "submitted_at": NOW - 10,
        "started_at": NOW,
        "finished_at": NOW + 4,
        "summary": "tests failed",
        "attempt": 1,
    }

    # And its steps come back in order with results and log names
    detail = build_detail_json(await store.builds.get(build.id))
    assert {k: v for k, v in detail.items() if k not in ("steps", "properties")} == listed
    assert detail["steps"] == [
        {
            "number": 0,
            "name": "compile",
            "result": "SUCCESS",
            "started_at": NOW + 1,
            "finished_at": NOW + 2,
            "summary": "compiled",
            "hidden": False,
            "attempts": 1,
            "logs": ["stdio"],
        },
        {
            "number": 1,
            "name": "test",
            "result": "FAILURE",
            "started_at": NOW + 2,
            "finished_at": NOW + 3,
            "summary": "1 failed",
            "hidden": False,
            "attempts": 1,
            "logs": ["stdio"],
        },
    ]

    # And the log's lines come back tagged and in order across its chunks, empty line included
    assert await store.logs.lines(build.id, 0) == [
        ("h", "make"),
        ("h", "in build"),
        ("o", "cc -c parser.c"),
        ("o", ""),
        ("e", "parser.c:3: warning: unused x"),
        ("h", "exit code 0"),
    ]
    assert await store.logs.lines(build.id, 1, "stdio") == [("e", "1 failed")]

    # And the request is complete with the build's result
    assert await store.requests.pending() == []
    assert (await request_row(store, request.id))["result"] == "FAILURE"


async def test_a_running_build_is_visible_before_it_finishes(store: Store) -> None:
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()
    await asyncio.gather(
        store.builds.start(request, 1, "w1", NOW, "master", build),
        store.steps.start(build, 0, "compile", NOW, step),
        store.logs.append(step, "stdio", 0, "still going", "o"),
    )

    (listed,) = [build_json(b) for b in await store.builds.query()]
    assert (listed["result"], listed["finished_at"]) == (None, None)
    (running_step,) = (build_detail_json(await store.builds.get(build.id)))["steps"]
    assert (running_step["result"], running_step["finished_at"]) == (None, None)
    assert await store.logs.lines(build.id, 0) == [("o", "still going")]
    # Claimed, so no longer waiting, but not complete either
    row = await request_row(store, request.id)
    assert row["claimed_at"] == NOW and row["complete_at"] is None


async def test_retry_puts_the_request_back_in_the_queue_and_a_rerun_completes_it(store: Store) -> None:
    # Given a request whose first build was lost with its worker
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    lost = await run_build(store, request, 1, Result.RETRY, steps=[("compile", Result.RETRY)])

    # Then the request is pending and unclaimed again
    assert [r.id for r in await store.requests.pending()] == [request.id]
    row = await request_row(store, request.id)
    assert (row["claimed_at"], row["complete_at"], row["result"]) == (None, None, None)

    # When it is built again and succeeds
    rerun = await run_build(store, request, 2, Result.SUCCESS, worker="w2", at=NOW + 100)

    # Then the request is complete, and both builds of it are kept
    assert await store.requests.pending() == []
    row = await request_row(store, request.id)
    assert (row["complete_at"], row["result"]) == (NOW + 101, "SUCCESS")
    builds = [build_json(b) for b in await store.builds.query(request_id=request.id)]
    assert [(b["id"], b["result"], b["worker"]) for b in builds] == [(rerun, "SUCCESS", "w2"), (lost, "RETRY", "w1")]


async def test_a_buildset_completes_with_its_last_request_and_the_worst_result_by_precedence(store: Store) -> None:
    # Given a buildset of three builders
    requests = await store.requests.add_buildset(buildset("docs", "lint", "unit"), NOW)
    docs, lint, unit = requests
    buildset_id = docs.buildset_id

    # When two of them finish, it is not complete yet
    await run_build(store, docs, 1, Result.SKIPPED)
    await run_build(store, lint, 1, Result.WARNINGS)
    (row,) = await rows(store, t.buildsets, t.buildsets.c.id == buildset_id)
    assert (row.complete_at, row.result) == (None, None)

    # When the last one finishes
    await run_build(store, unit, 1, Result.SUCCESS, at=NOW + 50)

    # Then it completes with WARNINGS: worse than SUCCESS and SKIPPED (though SKIPPED's code is higher)
    (row,) = await rows(store, t.buildsets, t.buildsets.c.id == buildset_id)
    assert (row.complete_at, row.result) == (NOW + 51, Result.WARNINGS)


async def test_cancelling_a_request_completes_it_as_cancelled_and_only_once(store: Store) -> None:
    # Given a buildset with one failed build and one request still waiting
    failed, waiting = await store.requests.add_buildset(buildset("unit", "lint"), NOW)
    await run_build(store, failed, 1, Result.FAILURE)

    # When the waiting one is cancelled
    await store.requests.cancel(waiting.id, NOW + 5)

    # Then it is complete as CANCELLED without a build, and the buildset ends CANCELLED (worse than FAILURE)
    assert await store.requests.pending() == []
    row = await request_row(store, waiting.id)
    assert (row["complete_at"], row["result"]) == (NOW + 5, "CANCELLED")
    assert [build_json(b) for b in await store.builds.query(request_id=waiting.id)] == []
    (buildset_row,) = await rows(store, t.buildsets)
    assert (buildset_row.complete_at, buildset_row.result) == (NOW + 5, Result.CANCELLED)

    # And cancelling it again, or cancelling a request that never existed, is NotFound
    with pytest.raises(NotFound):
        await store.requests.cancel(waiting.id, NOW + 6)
    with pytest.raises(NotFound):
        await store.requests.cancel(waiting.id + 1000, NOW + 6)
    assert (await request_row(store, waiting.id))["complete_at"] == NOW + 5


async def test_claiming_a_request_that_is_no_longer_pending_is_not_found(store: Store) -> None:
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    await run_build(store, request, 1, Result.SUCCESS)

    build = Ref()
    with pytest.raises(NotFound):
        await store.builds.start(request, 2, "w1", NOW + 10, "master", build)

    assert build.id is None
    assert [b.number for b in await store.builds.query()] == [1]


async def test_a_failed_write_fails_alone_and_the_rest_of_its_batch_commits(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a request that is already complete and one that is pending
    (done,) = await store.requests.add_buildset(buildset("lint"), NOW)
    await store.requests.cancel(done.id, NOW)
    (pending,) = await store.requests.add_buildset(buildset("unit"), NOW)

    # When, in one turn of the loop (one group commit), a build claims each and starts a step
    caplog.set_level(logging.WARNING, logger="flowbot.store.writer")
    stale, fresh, step = Ref(), Ref(), Ref()
    stale_start = store.builds.start(done, 1, "w1", NOW + 1, "master", stale)
    stale_step = store.steps.start(stale, 0, "lint", NOW + 1, Ref())
    fresh_start = store.builds.start(pending, 1, "w2", NOW + 1, "master", fresh)
    fresh_step = store.steps.start(fresh, 0, "compile", NOW + 1, step)
    fresh_log = store.logs.append(step, "stdio", 0, "ok", "o")
    outcomes = await asyncio.gather(stale_start, stale_step, fresh_start, fresh_step, fresh_log, return_exceptions=True)

    # Then the claim of the completed request fails, and so does the step that needed its build's id
    assert isinstance(outcomes[0], NotFound)
    assert isinstance(outcomes[1], StoreError)
    assert stale.id is None
    # And they were in one batch with the other writes, which all committed
    assert any("batch of 5 writes failed" in r.getMessage() for r in caplog.records)
    assert not any(isinstance(outcome, BaseException) for outcome in outcomes[2:])
    (build,) = [build_json(b) for b in await store.builds.query()]
    assert (build["id"], build["builder"], build["result"]) == (fresh.id, "unit", None)
    assert [s["name"] for s in (build_detail_json(await store.builds.get(fresh.id)))["steps"]] == ["compile"]
    assert await store.logs.lines(fresh.id, 0) == [("o", "ok")]


async def test_a_build_left_running_is_found_as_it_was_and_its_retry_queues_its_request_again(db_url: str) -> None:
    # Given a master that died with one build finished and one running (its second step half way,
    # the properties it had when its first step ended recorded)
    store = await Store.open(db_url)
    try:
        finished, running = await store.requests.add_buildset(buildset("lint", "unit"), NOW)
        await run_build(store, finished, 1, Result.SUCCESS)
        build, first, second = Ref(), Ref(), Ref()
        await asyncio.gather(
            store.builds.start(running, 1, "w1", NOW, "master", build),
            store.steps.start(build, 0, "compile", NOW, first),
            store.steps.finish(first, Result.SUCCESS, NOW + 1),
            store.builds.set_properties(build, {"version": ["1.2", "SetProperty Step"]}),
            store.steps.start(build, 1, "test", NOW + 1, second),
            store.logs.append(second, "stdio", 0, "test_a ... ok\ntest_b ... ok", "oo"),
        )
    finally:
        await store.close()

    # When a new master opens the store
    store = await Store.open(db_url)
    try:
        # Then it finds the running build as it was: its request, its steps, its properties, and
        # where the log of the step it was running goes on
        (left,) = await store.builds.unfinished()
        assert (left.id, left.request, left.number, left.worker, left.started_at) == (build.id, running, 1, "w1", NOW)
        assert [(s.id, s.number, s.name, s.result) for s in left.steps] == [
            (first.id, 0, "compile", Result.SUCCESS),
            (second.id, 1, "test", None),
        ]
        assert left.running_step == left.steps[1]
        assert left.properties == {"version": ("1.2", "SetProperty Step")}
        assert left.log_lines == {"stdio": 2}

        # When it does not take the build up, but retries it
        assert await store.builds.retry([build.id], NOW + 100) == 1

        # Then the running build and its running step end as RETRY; its finished step is untouched
        detail = build_detail_json(await store.builds.get(build.id))
        assert (detail["result"], detail["finished_at"], detail["summary"]) == ("RETRY", NOW + 100, "master restarted")
        assert [(s["name"], s["result"], s["finished_at"]) for s in detail["steps"]] == [
            ("compile", "SUCCESS", NOW + 1),
            ("test", "RETRY", NOW + 100),
        ]
        assert await store.logs.lines(build.id, 1) == [("o", "test_a ... ok"), ("o", "test_b ... ok")]

        # And its request is queued again, unclaimed; the finished build and its request are untouched
        assert [r.id for r in await store.requests.pending()] == [running.id]
        assert (await request_row(store, running.id))["claimed_at"] is None
        assert (await request_row(store, finished.id))["result"] == "SUCCESS"
        assert {b.builder: b.result for b in await store.builds.query()} == {
            "lint": Result.SUCCESS,
            "unit": Result.RETRY,
        }

        # And a second retry finds nothing to do, nor anything left running
        assert await store.builds.retry([build.id], NOW + 200) == 0
        assert await store.builds.unfinished() == []
    finally:
        await store.close()


async def test_next_build_numbers_continue_each_builders_sequence(store: Store) -> None:
    assert await store.builds.next_numbers() == {}

    unit_a, lint = await store.requests.add_buildset(buildset("unit", "lint"), NOW)
    (unit_b,) = await store.requests.add_buildset(buildset("unit"), NOW)
    await run_build(store, unit_a, 1, Result.RETRY)
    await run_build(store, unit_a, 2, Result.SUCCESS)
    await run_build(store, unit_b, 3, Result.FAILURE)
    await run_build(store, lint, 41, Result.SUCCESS)

    # Every build counts, RETRY ones too: a number is never reused
    assert await store.builds.next_numbers() == {"unit": 4, "lint": 42}


# -- reads for people --------------------------------------------------------------------------------


async def test_builds_are_newest_first_and_filter_by_builder_result_and_limit(store: Store) -> None:
    # Given five finished builds of two builders
    made = []
    for number, (builder, result) in enumerate(
        [
            ("unit", Result.SUCCESS),
            ("lint", Result.FAILURE),
            ("unit", Result.FAILURE),
            ("lint", Result.SUCCESS),
            ("unit", Result.SUCCESS),
        ],
        start=1,
    ):
        (request,) = await store.requests.add_buildset(buildset(builder), NOW + number)
        made.append(await run_build(store, request, number, result, at=NOW + number))

    def ids(builds: list[Build]) -> list[int]:
        return [b.id for b in builds]

    # Then they are listed newest first, and each filter narrows the list
    assert ids(await store.builds.query()) == made[::-1]
    assert ids(await store.builds.query(builder="unit")) == [made[4], made[2], made[0]]
    assert ids(await store.builds.query(result=Result.FAILURE)) == [made[2], made[1]]
    assert ids(await store.builds.query(result=Result.SUCCESS, builder="lint")) == [made[3]]
    assert ids(await store.builds.query(limit=2)) == [made[4], made[3]]
    assert await store.builds.query(builder="docs") == []
    # And the newest build of each builder is at hand
    latest = await store.builds.latest(["unit", "lint", "docs"])
    assert {name: b.id for name, b in latest.items()} == {"unit": made[4], "lint": made[3]}


async def test_missing_builds_and_logs_are_not_found(store: Store) -> None:
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build_id = await run_build(store, request, 1, Result.SUCCESS)

    with pytest.raises(NotFound):
        build_detail_json(await store.builds.get(build_id + 1))
    with pytest.raises(NotFound):
        await store.logs.lines(build_id, 5)
    with pytest.raises(NotFound):
        await store.logs.lines(build_id, 0, "junit.xml")


async def test_log_text_in_any_script_round_trips(store: Store) -> None:
    # Given output that is not ASCII: accents, CJK, emoji, the U+FFFD the master puts for NUL and bad
    # bytes, a carriage return from a progress bar, a tab, trailing spaces and a long line
    lines = [
        "naïve café — ünïcödé",
        "日本語のテキスト",
        "emoji 🚀✅ and astral \U0001d518\U0001d52b",
        "NUL was here: \ufffd",
        "progress 10%\rprogress 100%",
        "col1\tcol2",
        "trailing   ",
        "x" * 100_000,
    ]
    (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    build, step = Ref(), Ref()

    # When it is stored in two chunks
    await asyncio.gather(
        store.builds.start(request, 1, "w1", NOW, "master", build),
        store.steps.start(build, 0, "show", NOW, step),
        store.logs.append(step, "stdio", 0, "\n".join(lines[:4]), "oooe"),
        store.logs.append(step, "stdio", 4, "\n".join(lines[4:]), "oooo"),
    )

    # Then every character comes back as it went in
    assert await store.logs.lines(build.id, 0) == list(zip("oooeoooo", lines, strict=True))


async def test_workers_are_remembered_across_connects_and_disconnects(store: Store) -> None:
    # When a worker connects, is heard from, and goes away
    await store.workers.connected("w1", {"os": "posix", "python": "3.11", "tags": ["x86"]}, NOW)
    await store.workers.seen({"w1": NOW + 5})
    assert (await store.workers.all())["w1"] == RememberedWorker(
        info={"os": "posix", "python": "3.11", "tags": ["x86"]},
        connected_at=NOW,
        disconnected_at=None,
        last_seen=NOW + 5,
        paused_at=None,
        paused_reason=None,
    )
    await store.workers.disconnected("w1", NOW + 20, NOW + 8)
    assert (await store.workers.all())["w1"].disconnected_at == NOW + 20
    assert (await store.workers.all())["w1"].last_seen == NOW + 8

    # And comes back with new info, while another connects
    await store.workers.connected("w1", {"os": "posix", "python": "3.12"}, NOW + 30)
    await store.workers.connected("w2", {"os": "nt"}, NOW + 31)
    await store.workers.seen({})
    await store.workers.seen({"w2": NOW + 35, "ghost": NOW + 35})

    # Then each worker has one record, reflecting its latest connection; unknown names make none
    unpaused = {"paused_at": None, "paused_reason": None}
    assert await store.workers.all() == {
        "w1": RememberedWorker(
            info={"os": "posix", "python": "3.12"},
            connected_at=NOW + 30,
            disconnected_at=None,
            last_seen=NOW + 30,
            **unpaused,
        ),
        "w2": RememberedWorker(
            info={"os": "nt"},
            connected_at=NOW + 31,
            disconnected_at=None,
            last_seen=NOW + 35,
            **unpaused,
        ),
    }


async def test_a_pause_is_remembered_until_unpaused_whatever_the_worker_does(store: Store) -> None:
    # When a worker that never connected is paused, and a connected one too, which then reconnects
    await store.workers.paused("w9", "not racked yet", NOW)
    await store.workers.connected("w1", {"os": "posix"}, NOW)
    await store.workers.paused("w1", "", NOW + 1)
    await store.workers.disconnected("w1", NOW + 2, NOW + 2)
    await store.workers.connected("w1", {"os": "posix"}, NOW + 3)

    # Then both stay paused, with their reasons
    workers = await store.workers.all()
    assert (workers["w9"].paused_at, workers["w9"].paused_reason, workers["w9"].info) == (
        NOW,
        "not racked yet",
        {},
    )
    assert (workers["w1"].paused_at, workers["w1"].paused_reason) == (NOW + 1, "")

    # And unpausing one forgets its pause only
    await store.workers.paused("w1", None, NOW + 4)
    workers = await store.workers.all()
    assert (workers["w1"].paused_at, workers["w1"].paused_reason) == (None, None)
    assert workers["w9"].paused_at == NOW


# -- durability and migrations -----------------------------------------------------------------------


async def test_everything_survives_closing_and_reopening(db_url: str) -> None:
    # Given a store holding a change, a finished build with a log, a pending request and a worker
    store = await Store.open(db_url)
    try:
        _, (built, waiting) = await store.changes.add(
            Change(branch="main", revision="r1", files=("a.py",)),
            [
                build_now(
                    BuildsetSpec(
                        "on-change",
                        ("unit", "lint"),
                        (SourceStamp(branch="main", revision="r1"),),
                        reason="change r1",
                        properties={"k": ("v", "Scheduler")},
                        priority=3,
                    )
                )
            ],
            NOW,
        )
        build_id = await run_build(store, built, 1, Result.SUCCESS)
        await store.workers.connected("w1", {"os": "posix"}, NOW)
        before = (
            [build_json(b) for b in await store.builds.query()],
            build_detail_json(await store.builds.get(build_id)),
            await store.logs.lines(build_id, 0),
            await store.workers.all(),
        )
    finally:
        await store.close()

    # When it is opened again on the same URL
    store = await Store.open(db_url)
    try:
        # Then everything is there as it was
        after = (
            [build_json(b) for b in await store.builds.query()],
            build_detail_json(await store.builds.get(build_id)),
            await store.logs.lines(build_id, 0),
            await store.workers.all(),
        )
        assert after == before
        assert after[2] == [("h", "running compile")]
        assert await store.requests.pending() == [waiting]
        assert await store.builds.next_numbers() == {"unit": 2}
        assert [r.path for r in await rows(store, t.change_files)] == ["a.py"]
    finally:
        await store.close()


async def test_opening_a_migrated_database_changes_nothing(db_url: str) -> None:
    # Given a migrated database with a pending request in it
    store = await Store.open(db_url)
    try:
        (request,) = await store.requests.add_buildset(buildset("unit"), NOW)
    finally:
        await store.close()

    # When it is opened again, watching every statement sent to any database
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        store = await Store.open(db_url)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    try:
        # Then it only looked (no DDL, no writes), and its data is untouched
        assert statements, "the store should read the schema version"
        writes = [
            s
            for s in statements
            if s.split(None, 1)[0].upper() in ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")
        ]
        assert writes == []
        assert await store.requests.pending() == [request]
    finally:
        await store.close()


# -- long values ---------------------------------------------------------------------------------


async def test_long_free_text_is_stored_whole_on_every_database(store: Store) -> None:
    # Given a change and a build whose every name and text is longer than a VARCHAR(255) would take
    long = {name: f"{name}-" + "x" * 600 for name in ("branch", "author", "repository", "project", "category")}
    change = Change(
        branch=long["branch"],
        revision="r" * 300,
        repository=long["repository"],
        project=long["project"],
        author=long["author"],
        committer=long["author"],
        category=long["category"],
        revlink="https://example.org/" + "p" * 1100,
        files=("deep/" * 300 + "file.py",),
    )
    spec = dataclasses.replace(buildset("b" * 300, branch=long["branch"]), scheduler="s" * 300)

    # When they go through the store, claimed by a master whose directory has a long path
    _, (request,) = await store.changes.add(change, [build_now(spec)], NOW)
    build, step = Ref(), Ref()
    await asyncio.gather(
        store.builds.start(request, 1, "w" * 300, NOW, "host:/" + "d" * 400, build),
        store.steps.start(build, 0, "n" * 300, NOW, step),
        store.logs.append(step, "l" * 300, 0, "text", "o"),
        store.builds.finish(build, request, Result.SUCCESS, NOW + 1),
    )

    # Then everything comes back as it was written
    (stored,) = await rows(store, t.changes)
    assert (stored.branch, stored.revision, stored.author, stored.repository, stored.category) == (
        long["branch"],
        "r" * 300,
        long["author"],
        long["repository"],
        long["category"],
    )
    assert [r.path for r in await rows(store, t.change_files)] == list(change.files)
    (claimed,) = await rows(store, t.buildrequests)
    assert claimed.claimed_by == "host:/" + "d" * 400
    detail = build_detail_json(await store.builds.get(build.id))
    assert (detail["builder"], detail["worker"], detail["branch"]) == ("b" * 300, "w" * 300, long["branch"])
    assert detail["steps"][0]["name"] == "n" * 300
    assert detail["steps"][0]["logs"] == ["l" * 300]


async def test_a_branch_too_long_to_index_is_refused_the_same_way_everywhere(store: Store) -> None:
    # A branch of 1 KiB is taken; one of more is refused before anything is stored
    await store.changes.add(Change(branch="é" * 512, revision="r1"), [], NOW)
    with pytest.raises(InvalidRequest, match="branch is 1026 bytes long; at most 1024"):
        await store.changes.add(Change(branch="é" * 513, revision="r2"), [], NOW)
    with pytest.raises(InvalidRequest, match="revision is 2000 bytes long"):
        await store.changes.add(Change(branch="main", revision="r" * 2000), [], NOW)
    assert [r.revision for r in await rows(store, t.changes)] == ["r1"]


async def test_a_change_and_its_sources_state_are_stored_together_or_not_at_all(store: Store) -> None:
    # Given a change source that remembers the revision it reports, in the change's transaction
    await store.changes.add(Change(branch="main", revision="r1"), [], NOW, "source:poller", {"last": "r1"})
    assert await store.state.get("source:poller") == {"last": "r1"}

    # When a scheduler's decision about the next change cannot be stored (it names a change that does not exist)
    broken = BuildsetSpec("s", ("unit",), (), change_ids=(999_999,))

    with pytest.raises(StoreError):
        await store.changes.add(
            Change(branch="main", revision="r2"), [Release("s", "", (), broken)], NOW, "source:poller", {"last": "r2"}
        )

    # Then neither the change nor the state moved on
    assert [r.revision for r in await rows(store, t.changes)] == ["r1"]
    assert await store.state.get("source:poller") == {"last": "r1"}
