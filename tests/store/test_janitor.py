"""The janitor (``flowbot/store/janitor.py``) and ``Retention`` (``flowbot/retention.py``) on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from flowbot import Builder, ConfigError, ForceScheduler, Pipeline, Retention, Shell, Worker
from flowbot.analysis import History
from flowbot.master import Master
from flowbot.store import Store, janitor
from flowbot.store import schema as t

from ..analysis.conftest import HOUR, T0, write_history
from .test_store import rows


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    await write_history(store)
    yield store
    await store.close()


async def count(store: Store, table: sa.Table) -> int:
    return len(await rows(store, table))


async def test_old_logs_go_first_and_builds_stay(store: Store, monkeypatch: pytest.MonkeyPatch):
    # Given batches of one build, so the sweep takes many small transactions
    monkeypatch.setattr(janitor, "FIRST_BATCH", 1)
    monkeypatch.setattr(janitor, "MAX_BATCH", 1)
    # When logs are kept for a day, a day after the third hour of the story
    swept = await janitor.sweep(store, Retention(logs="1d"), now=T0 + 3 * HOUR + 86400)

    # Then the builds that started before 03:00 lost their logs, and only those
    assert swept.log_chunks == 5 and swept.requests == 0
    remaining = await rows(store, t.log_chunks)
    steps = {row.id: row.build_id for row in await rows(store, t.steps)}
    builds = {row.id: row.started_at for row in await rows(store, t.builds)}
    assert len(builds) == 9
    assert sorted(builds[steps[chunk.step_id]] for chunk in remaining) == sorted(
        at for at in builds.values() if at >= T0 + 3 * HOUR
    )
    # And log search forgets them too (SQLite's index follows through its triggers)
    with History(store.url) as history:
        assert history.search_logs("Segmentation").empty
        assert len(history.search_logs("all good")) == 4
    # And a second sweep finds nothing left to do
    assert await janitor.sweep(store, Retention(logs="1d"), now=T0 + 3 * HOUR + 86400) == janitor.Swept()


async def test_old_builds_go_with_everything_they_recorded(store: Store):
    # Given builds kept for a day, except lint's, which are kept forever
    retention = Retention(builds="1d", per_builder={"lint": Retention()})

    # When the janitor sweeps two days after the story began
    swept = await janitor.sweep(store, retention, now=T0 + 2 * 86400)

    # Then every finished unit request went, with its builds, steps, logs and test results
    assert swept.requests == 6
    assert {row.builder for row in await rows(store, t.builds)} == {"lint"}
    requests = await rows(store, t.buildrequests)
    assert sorted((r.builder, r.complete_at is None) for r in requests) == [
        ("lint", False),
        ("lint", False),
        ("unit", True),  # still pending: kept
    ]
    assert await count(store, t.test_results) == 0
    assert {row.build_id for row in await rows(store, t.steps)} == {row.id for row in await rows(store, t.builds)}
    # And buildsets left without requests went; changes stay, for culprits
    assert await count(store, t.buildsets) == 3
    assert await count(store, t.changes) == 4
    with History(store.url) as history:
        assert history.search_logs("Segmentation").empty


def test_retention_is_checked_where_it_is_written():
    with pytest.raises(ConfigError, match=r"test_janitor.py:\d+: Retention\(logs=...\): 'a month'"):
        Retention(logs="a month")
    with pytest.raises(ConfigError, match="must be a Retention without per_builder"):
        Retention(per_builder={"unit": Retention(per_builder={"x": Retention()})})
    assert Retention(logs="30 days", builds=86400.0).limits() == (30 * 86400, 86400)
    assert Retention(logs="1w", per_builder={"unit": Retention(builds="2h")}).limits("unit") == (None, 7200)
    worker = Worker("w1", secret="s")
    unit = Builder("unit", workers=["w1"], steps=[Shell("true")])
    with pytest.raises(ConfigError, match="retention names builder 'unti'"):
        Pipeline(workers=[worker], builders=[unit], retention=Retention(per_builder={"unti": Retention()}))
    with pytest.raises(ConfigError, match="retention must be a Retention"):
        Pipeline(workers=[worker], builders=[unit], retention={"logs": "30d"})


async def test_a_master_runs_the_janitor_and_offers_its_history(db_url: str):
    # Given a store with a 2024 history, and a pipeline that keeps logs for a day
    store = await Store.open(db_url)
    await write_history(store)
    await store.close()
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
        retention=Retention(logs="1d", every="1h"),
    )
    # When a master starts on it
    async with Master(pipeline, db=db_url, http=None, workers="tcp://127.0.0.1:0") as master:
        # Then its janitor soon removes every log, and its history says so
        async def no_logs_left() -> None:
            while await count(master.store, t.log_chunks):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(no_logs_left(), 10)
        with master.history as history:
            assert len(history.builds()) == 9
            assert history.search_logs("all good").empty
