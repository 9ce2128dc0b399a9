"""The janitor (``flowbot/store/janitor.py``) and ``Retention`` (``flowbot/retention.py``) on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from flowbot import Builder, ConfigError, ForceScheduler, Pipeline, Retention, Shell, Worker
from flowbot.analysis import History
from flowbot.master import Master
from flowbot.results import Result
from flowbot.store import Ref, Store, janitor
from flowbot.store import schema as t

from ..analysis.conftest import HOUR, T0, build_spec, write_history
from .test_pull_requests import add, head
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
    monkeypatch.setattr(janitor, "JANITOR_FIRST_BATCH", 1)
    monkeypatch.setattr(janitor, "JANITOR_MAX_BATCH", 1)
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


@pytest.mark.parametrize(
    ("retention", "kept"),
    [
        (Retention(per_builder={"lint": Retention(logs="1d")}), ["unit"] * 7),  # the others' kept forever
        (Retention(logs="1d", per_builder={"lint": Retention(logs="30d")}), ["lint"] * 2),
    ],
)
async def test_a_builders_own_log_limit_applies_to_its_builds_and_only_to_them(
    store: Store, retention: Retention, kept: list[str]
):
    # When the janitor sweeps two days after the story began
    swept = await janitor.sweep(store, retention, now=T0 + 2 * 86400)
    # Then only the logs past their own builder's limit went
    assert swept == janitor.Swept(log_chunks=9 - len(kept))
    assert await builders_with_logs(store) == kept
    assert await count(store, t.builds) == 9


async def builders_with_logs(store: Store) -> list[str]:
    """The builder of each step that has a log, in step order."""
    steps = {row.id: row.build_id for row in await rows(store, t.steps)}
    builders = {row.id: row.builder for row in await rows(store, t.builds)}
    chunks = sorted(await rows(store, t.log_chunks), key=lambda chunk: chunk.step_id)
    return [builders[steps[chunk.step_id]] for chunk in chunks]


async def test_a_sweep_reads_the_logs_left_not_the_builds_whose_logs_went(store: Store, monkeypatch):
    # Given a store whose logs older than a day went in an earlier sweep
    retention, now = Retention(logs="1d"), T0 + 3 * HOUR + 86400
    assert (await janitor.sweep(store, retention, now=now)).log_chunks == 5
    work = measure_batches(monkeypatch, "_purge_logs")
    # When the janitor sweeps it again, before and after two thousand older builds whose logs went are added
    await janitor.sweep(store, retention, now=now)
    before = work[:]
    work.clear()
    await add_builds_without_logs(store, 2000, before=T0)
    await janitor.sweep(store, retention, now=now)
    # Then each sweep is one batch, which reads about as much with those builds as without them
    assert len(work) == len(before) == 1
    assert work[0] - before[0] < 50, (before, work)  # reading 2000 builds would cost thousands


async def test_a_sweep_starts_where_the_last_one_left_every_log_settled(store: Store):
    # Given logs kept forever, except lint's, kept for a day, and a lint build that runs for days
    retention, walks = Retention(per_builder={"lint": Retention(logs="1d")}), {}
    (request,) = await store.requests.add_buildset(build_spec("lint", "main", "r9"), T0 + 5 * HOUR)
    build, step = Ref(), Ref()
    await store.builds.start(request, 3, "w2", T0 + 5 * HOUR, "master", build)
    await store.steps.start(build, 0, "lint", T0 + 5 * HOUR, step)
    await store.logs.append(step, "stdio", 0, "linting", "o")
    # When the janitor sweeps two days later
    swept = await janitor.sweep(store, retention, now=T0 + 2 * 86400, walks=walks)
    # Then the finished lint builds lost their logs, and the walk stops before the running one
    assert swept.log_chunks == 2
    assert walks == {"lint": janitor.Walk(at=step.id, settled=step.id - 1)}
    # And once that build has ended, the next sweep takes its log, and the one after has nothing left to read
    await store.steps.finish(step, Result.SUCCESS, T0 + 50 * HOUR)
    await store.builds.finish(build, request, Result.SUCCESS, T0 + 50 * HOUR)
    assert (await janitor.sweep(store, retention, now=T0 + 3 * 86400, walks=walks)).log_chunks == 1
    assert walks == {"lint": janitor.Walk(at=step.id, settled=step.id)}
    assert await janitor.sweep(store, retention, now=T0 + 4 * 86400, walks=walks) == janitor.Swept()
    assert await builders_with_logs(store) == ["unit"] * 7


@pytest.mark.parametrize(
    ("retention", "deleted"),
    [
        (Retention(builds="1d", per_builder={"old": Retention()}), 8),  # unit's and lint's requests go
        (Retention(per_builder={"unit": Retention(builds="1d")}), 6),  # only unit's go
    ],
)
async def test_a_batch_of_old_requests_reads_those_it_deletes_not_those_kept_longer(
    store: Store, monkeypatch: pytest.MonkeyPatch, retention: Retention, deleted: int
):
    # Given batches of two requests, and many requests of a builder kept forever, older than any other
    monkeypatch.setattr(janitor, "JANITOR_FIRST_BATCH", 2)
    monkeypatch.setattr(janitor, "JANITOR_MAX_BATCH", 2)
    kept = 20_000
    await add_requests(store, "old", kept, before=T0)
    work = measure_batches(monkeypatch, "_purge_requests")
    # When the janitor sweeps two days after the story began
    swept = await janitor.sweep(store, retention, now=T0 + 2 * 86400)
    # Then the old requests of the builders the limit is for went, and the kept ones stayed
    assert swept.requests == deleted
    assert sum(r.builder == "old" for r in await rows(store, t.buildrequests)) == kept
    # And no batch read its way past the kept requests (a unit per twenty of them at least: SQLite's
    # hundreds of steps, PostgreSQL's rows read), each read about what it deleted
    assert len(work) >= 3 and max(work) < kept / 40, work


def measure_batches(monkeypatch: pytest.MonkeyPatch, purge: str) -> list[int]:
    """Record what each batch of one of the janitor's purges costs the database, batch by batch.

    On PostgreSQL, the rows its statements read (by table scans, index scans and the fetches
    they make), from the transaction's own statistics; on SQLite, its statements' virtual
    machine steps, in hundreds. Either grows with every row a statement looks at.
    """
    work: list[int] = []
    original = getattr(janitor, purge)

    def measured(conn: sa.Connection, *args, **kwargs):
        if conn.dialect.name == "sqlite":
            hundreds, raw = [0], conn.connection.driver_connection

            def count() -> int:
                hundreds[0] += 1
                return 0  # go on

            raw.set_progress_handler(count, 100)
            try:
                return original(conn, *args, **kwargs)
            finally:
                raw.set_progress_handler(None, 0)
                work.append(hundreds[0])
        before = conn.exec_driver_sql(_READ).scalar()
        try:
            return original(conn, *args, **kwargs)
        finally:
            work.append(conn.exec_driver_sql(_READ).scalar() - before)

    monkeypatch.setattr(janitor, purge, measured)
    return work


_READ = (
    "SELECT coalesce(sum(seq_tup_read + coalesce(idx_scan, 0) + coalesce(idx_tup_fetch, 0)), 0)"
    " FROM pg_stat_xact_user_tables"
)


async def add_builds_without_logs(store: Store, n: int, before: float) -> None:
    """``n`` finished builds of a builder "old", a minute apart up to ``before``, each with a step and no log."""

    def write(conn: sa.Connection) -> None:
        buildset = conn.execute(
            sa.insert(t.buildsets).values(scheduler="force", properties={}, submitted_at=before - n * 60)
        ).inserted_primary_key[0]
        request = conn.execute(
            sa.insert(t.buildrequests).values(
                buildset_id=buildset, builder="old", submitted_at=before - n * 60, complete_at=before, result=0
            )
        ).inserted_primary_key[0]
        times = [before - (n - i) * 60 for i in range(n)]
        conn.execute(
            sa.insert(t.builds),
            [
                {
                    "request_id": request,
                    "builder": "old",
                    "number": i + 1,
                    "worker": "w1",
                    "started_at": at,
                    "finished_at": at + 30,
                    "result": 0,
                }
                for i, at in enumerate(times)
            ],
        )
        ids = conn.execute(sa.select(t.builds.c.id, t.builds.c.started_at).where(t.builds.c.builder == "old")).all()
        conn.execute(
            sa.insert(t.steps),
            [
                {"build_id": build, "number": 0, "name": "test", "started_at": at, "finished_at": at + 30, "result": 0}
                for build, at in ids
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")  # as autovacuum would, by the time history is that long

    await store.submit(write)


async def add_requests(store: Store, builder: str, n: int, before: float) -> None:
    """``n`` requests of ``builder`` in one buildset, completed a minute apart up to ``before``, without builds."""

    def write(conn: sa.Connection) -> None:
        at = before - n * 60
        buildset = conn.execute(
            sa.insert(t.buildsets).values(scheduler="force", properties={}, submitted_at=at)
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(t.buildrequests),
            [
                {
                    "buildset_id": buildset,
                    "builder": builder,
                    "submitted_at": at,
                    "complete_at": at + i * 60,
                    "result": 0,
                }
                for i in range(1, n + 1)
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")

    await store.submit(write)


def test_retention_is_checked_where_it_is_written():
    with pytest.raises(ConfigError, match=r"test_janitor.py:\d+: Retention\(logs=...\): 'a month'"):
        Retention(logs="a month")
    with pytest.raises(ConfigError, match="must be a Retention without per_builder"):
        Retention(per_builder={"unit": Retention(per_builder={"x": Retention()})})
    assert Retention(logs="30 days", builds=86400.0).limits() == (30 * 86400, 86400)
    with pytest.raises(ConfigError, match=r"test_janitor.py:\d+: Retention\(artifacts=...\): 'forever'"):
        Retention(artifacts="forever")
    # Artifacts go with their builds at the latest
    assert Retention(builds="2d", artifacts="30d").artifacts_limit() == 2 * 86400
    assert Retention(artifacts="1h", per_builder={"unit": Retention(builds="1d")}).artifacts_limit("unit") == 86400
    assert Retention(logs="1d").artifacts_limit() is None
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


async def store_files(store: Store, root, place: str) -> dict[str, int]:
    """Give every build a file of its own under ``root``, and every unit build one more at the shared
    ``place`` (each replacing the one before, as uploads to one path do); returns build id by file."""
    stored: dict[str, int] = {}
    for build in sorted(await rows(store, t.builds), key=lambda b: b.id):
        step = next(s for s in await rows(store, t.steps) if s.build_id == build.id)
        names = [f"{build.builder}/{build.number}/report.txt"] + ([place] if build.builder == "unit" else [])
        files = []
        for name in names:
            path = root.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"build {build.id}")
            stat = path.stat()
            files.append({"path": name, "size": stat.st_size, "sha256": "0" * 64, "mtime_ns": stat.st_mtime_ns})
            stored[name] = build.id
        build_ref, step_ref = Ref(), Ref()
        build_ref.id, step_ref.id = build.id, step.id
        await store.steps.add_artifacts(build_ref, step_ref, files, build.started_at)
    return stored


async def test_old_artifacts_go_with_their_files_but_a_newer_builds_file_stays(store: Store, tmp_path):
    # Given builds that stored files, unit's builds each one more at a place they share
    root = tmp_path / "artifacts"
    root.mkdir()
    await store_files(store, root, "latest/app.txt")
    (root / "unit" / "1" / "by-hand.txt").write_text("someone put this here")
    before = await count(store, t.artifacts)

    # When artifacts are kept a day (lint's for ever) and the janitor sweeps after the story
    retention = Retention(artifacts="1d", per_builder={"lint": Retention()})
    swept = await janitor.sweep(store, retention, now=T0 + 86400 + 3.5 * HOUR, artifacts=root)

    # Then the unit builds older than a day lost their files and rows, and the directories they emptied
    remaining = await rows(store, t.artifacts)
    left = {row.path for row in remaining}
    builds = {row.id: row for row in await rows(store, t.builds)}
    kept = sorted(
        (b.builder, b.number) for b in builds.values() if b.builder == "lint" or b.started_at >= T0 + 3.5 * HOUR
    )
    assert sorted({tuple(p.split("/")[:2]) for p in left if p != "latest/app.txt"}) == [
        (builder, str(number)) for builder, number in kept
    ]
    assert swept.artifacts == before - len(remaining) == 8
    for path in left:
        assert root.joinpath(*path.split("/")).exists(), path
    assert not (root / "unit" / "2").exists()
    # And a file that no row names stays, with its directory; the shared file stays for the newest build
    assert (root / "unit" / "1" / "by-hand.txt").exists()
    newest_unit = max(b.id for b in builds.values() if b.builder == "unit")
    assert (root / "latest" / "app.txt").read_text() == f"build {newest_unit}"
    # And builds kept their rows: only their artifacts went
    assert len(builds) == 9

    # When builds themselves go, their artifacts go first, files and all
    swept = await janitor.sweep(store, Retention(builds="1d"), now=T0 + 86400 * 30, artifacts=root)
    assert await count(store, t.artifacts) == 0
    assert not (root / "latest").exists() and not (root / "lint").exists()
    assert sorted(p.name for p in root.rglob("*")) == ["1", "by-hand.txt", "unit"]


async def test_a_pull_request_goes_with_the_last_of_its_buildsets(db_url: str):
    # Given pull request #2, whose only request was cancelled long ago, and #3, waiting to be built
    store = await Store.open(db_url)
    try:
        (old,) = await add(store, head(2, "a1"), "test", at=T0)
        await store.requests.cancel(old.id, T0)
        await add(store, head(3, "c1"), "test", at=T0)

        # When builds are kept for a day, two days later
        await janitor.sweep(store, Retention(builds="1d"), now=T0 + 2 * 86400)

        # Then #2 went with its buildset, and #3 stays
        assert [p.number for p in await rows(store, t.pull_requests)] == [3]
    finally:
        await store.close()


async def test_a_slow_database_does_not_shrink_batches_to_single_rows(store: Store, monkeypatch: pytest.MonkeyPatch):
    # Given a database on which every batch takes longer than a batch should (a loaded server, where a
    # commit alone costs more than that), and many old requests
    monkeypatch.setattr(janitor, "JANITOR_BATCH_SECONDS", 0.0)
    monkeypatch.setattr(janitor, "JANITOR_PAUSE_SECONDS", 0.0)
    await add_requests(store, "old", 400, before=T0)
    sizes: list[int] = []
    original = janitor._purge_requests

    def recorded(conn: sa.Connection, size: int, *args, **kwargs):
        sizes.append(size)
        return original(conn, size, *args, **kwargs)

    monkeypatch.setattr(janitor, "_purge_requests", recorded)
    # When the janitor sweeps them
    swept = await janitor.sweep(store, Retention(builds="1d"), now=T0 + 2 * 86400)
    # Then its batches shrank to the smallest it takes, never to a row or two at a time
    assert swept.requests >= 400
    assert min(sizes) == janitor.JANITOR_MIN_BATCH and len(sizes) < 400 / 10, sizes
