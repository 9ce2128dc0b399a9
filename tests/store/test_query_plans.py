"""How the store reads what grows with the history: EXPLAIN shows the indexes made for it, on both databases.

A store with a year of CI holds a million builds: a page of the event stream's resume, or a batch of
the janitor, that scans the builds or requests table would take seconds each. PostgreSQL plans by
statistics, so the store holds enough rows, analysed, for its plan to be the one a real history gets.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from flowbot import Retention
from flowbot.defaults import MAX_LIST
from flowbot.record_json import build_json
from flowbot.records import BuildsetSpec, SourceStamp
from flowbot.store import Store, janitor
from flowbot.store import schema as t

T0 = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC
BUILDS = 20_000


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A store with :data:`BUILDS` finished builds of four builders in turn, each of its own request, a minute apart."""
    store = await Store.open(db_url)
    await store.submit(lambda conn: add_finished_builds(conn, BUILDS, builders=4))
    yield store
    await store.close()


def add_finished_builds(conn: sa.Connection, n: int, builders: int) -> None:
    """``n`` builds, each of its own request, of ``builders`` builders in turn, finished a minute apart from T0.

    The rows are made by the database (a recursive query counting to ``n``): tens of thousands in a moment.
    """
    buildset = conn.execute(
        sa.insert(t.buildsets).values(scheduler="force", properties={}, submitted_at=T0)
    ).inserted_primary_key[0]
    counter = sa.select(sa.literal(0).label("i")).cte("counter", recursive=True)
    counter = counter.union_all(sa.select(counter.c.i + 1).where(counter.c.i < n - 1))
    at = sa.literal(T0) + counter.c.i * 60
    conn.execute(
        sa.insert(t.buildrequests).from_select(
            ["buildset_id", "builder", "priority", "submitted_at", "complete_at", "result"],
            sa.select(
                sa.literal(buildset),
                "b" + sa.cast(counter.c.i % builders, sa.Text),
                sa.literal(0),
                at,
                at,
                sa.literal(0),
            ),
        )
    )
    r = t.buildrequests.c
    conn.execute(
        sa.insert(t.builds).from_select(
            ["request_id", "builder", "number", "worker", "submitted_at", "started_at", "finished_at", "result"],
            sa.select(
                r.id, r.builder, r.id, sa.literal("w1"), r.submitted_at, r.complete_at - 30, r.complete_at, r.result
            ).order_by(r.id),
        )
    )
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE")  # as autovacuum would, by the time history is that long


@contextmanager
def plans(store: Store, table: str) -> Iterator[list[str]]:
    """The database's plan for each SELECT from ``table`` the store runs inside the block, made just before it
    runs, on its connection: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN. A SELECT from another
    table that only looks into ``table`` in a subquery is not one."""
    explained: list[str] = []
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "

    def explain_first(conn, cursor, statement: str, parameters: Any, context, executemany: bool) -> None:
        if statement.startswith("SELECT") and re.search(rf"\b(FROM|JOIN) {table}\b", outside_subqueries(statement)):
            plan = cursor.connection.cursor()
            plan.execute(explain + statement, parameters)
            explained.append("\n".join(str(row[-1]) for row in plan.fetchall()))
            plan.close()

    sa.event.listen(store.engine, "before_cursor_execute", explain_first)
    try:
        yield explained
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", explain_first)


def outside_subqueries(statement: str) -> str:
    """``statement`` without what its parentheses hold (its subqueries among them)."""
    while (inner := re.sub(r"\([^()]*\)", "", statement)) != statement:
        statement = inner
    return statement


def searches(store: Store, explained: str, table: str, index: str) -> bool:
    """Whether a plan reads ``table`` through a range of ``index`` (in its order), never all of the table."""
    if store.dialect == "sqlite":
        return f"SEARCH {table} USING " in explained and index in explained and f"SCAN {table}" not in explained
    return f"using {index} on {table}" in explained and f"Seq Scan on {table}" not in explained


@pytest.mark.parametrize(
    ("builder", "index"), [(None, "ix_builds_finished_at_id"), ("b1", "ix_builds_builder_finished_at_id")]
)
async def test_each_page_of_a_resumed_event_stream_is_a_range_of_an_index(
    store: Store, builder: str | None, index: str
):
    # When the event stream's resume reads a page after the first, as for a client back after days
    with plans(store, "builds") as explained:
        page = [
            build_json(b)
            for b in await store.builds.finished_after(T0 + 3600, after_id=61, builder=builder, limit=MAX_LIST)
        ]
    assert len(page) == MAX_LIST
    # Then the database reads that page from the index, in the index's order: no scan, no sort
    (only,) = explained
    assert searches(store, only, "builds", index), only
    assert "TEMP B-TREE" not in only and "Sort" not in only, only


async def test_paging_through_builds_that_finished_together_returns_each_once_in_order(db_url: str):
    # Given builds that finished two or three at a time
    store = await Store.open(db_url)
    try:

        def write(conn: sa.Connection) -> None:
            add_finished_builds(conn, 120, builders=2)
            conn.execute(sa.update(t.builds).values(finished_at=T0 + t.builds.c.id // 3 * 60))

        await store.submit(write)
        expected = [(b.finished_at, b.id) for b in await store.builds.finished_after(T0 - 1)]
        # When a reader pages through them four at a time, each page after the last build of the one before
        pages, when, after_id = [], T0 - 1, None
        while page := [
            build_json(b) for b in await store.builds.finished_after(when, after_id=after_id, builder="b0", limit=4)
        ]:
            pages.append(page)
            when, after_id = page[-1]["finished_at"], page[-1]["id"]
    finally:
        await store.close()
    # Then it read each of that builder's builds once, in the order they finished
    read = [(b["finished_at"], b["id"]) for page in pages for b in page]
    assert read == [(at, id) for at, id in expected if id % 2 == 1] and len(read) == 60
    assert sorted(read) == read and any(a[0] == b[0] for a, b in itertools.pairwise(read))


async def test_the_janitor_reaches_old_requests_through_an_index_of_builders(store: Store):
    # When the janitor deletes the oldest quarter of the builds, in batches
    with plans(store, "buildrequests") as explained:
        swept = await janitor.sweep(store, Retention(builds="1d"), now=T0 + BUILDS * 15 + 86400)
    assert swept.requests == BUILDS // 4
    # Then each of its reads of the requests (for the next builder, or a builder's oldest) is a range of
    # the (builder, complete_at) index
    assert len(explained) > 10
    for each in explained:
        assert searches(store, each, "buildrequests", "ix_buildrequests_builder_complete_at"), each


async def test_the_requests_pending_are_read_from_an_index_of_them_alone(store: Store):
    # Given a request waiting among the many completed
    (request,) = await store.requests.add_buildset(
        BuildsetSpec(scheduler="force", builders=("b1",), sourcestamps=(SourceStamp(),)), T0 + BUILDS * 60
    )
    # When a master starts, and someone lists the requests pending
    with plans(store, "buildrequests") as explained:
        assert [r.id for r in await store.requests.pending()] == [request.id]
        assert [r.id for r in await store.requests.query(pending=True)] == [request.id]
    # Then both read the index of pending requests, not the completed ones
    assert len(explained) == 2
    for each in explained:
        assert "ix_buildrequests_pending" in each and "Seq Scan on buildrequests" not in each, each


async def test_the_newest_builds_of_each_builder_are_a_range_of_an_index(store: Store):
    # When the web page's overview reads the newest builds of each builder, in a long history
    with plans(store, "builds") as explained:
        recent = await store.builds.recent(["b0", "b1", "b2", "b3", "gone"], 25)
    # Then each builder has its newest, newest first (a builder without builds has none)
    assert [b.id for b in recent["b1"]] == list(range(BUILDS - 2, BUILDS - 2 - 25 * 4, -4))
    assert sorted(recent) == ["b0", "b1", "b2", "b3"]
    # And each builder's are read backwards along the (builder, number) index: no scan of the
    # builds, no sort, nothing ranked over the whole table
    assert len(explained) == 5
    for each in explained:
        index = "sqlite_autoindex_builds_1" if store.dialect == "sqlite" else "uq_builds_builder_number"
        assert searches(store, each, "builds", index), each
        assert "TEMP B-TREE" not in each and "Sort" not in each and "WindowAgg" not in each, each
