"""The store's pull requests (``flowbot/store/pull_requests.py``, and how ``requests.py`` links and
supersedes): each buildset and build is linked to the pull request it builds, and a new head's
requests complete the waiting requests of older heads in the transaction that stores them; on
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic import command

from flowbot.builder import Builder
from flowbot.errors import StoreError
from flowbot.pull_requests import PullRequest
from flowbot.records import BuildRequest, BuildsetSpec, Change, Release, SourceStamp
from flowbot.results import Result
from flowbot.store import Ref, Store
from flowbot.store import schema as t
from flowbot.store.engine import alembic_config
from flowbot.superseding import Superseding

NOW = 1_700_000_000.0
REPO = "octo/widgets"
SUPERSEDING = Superseding(
    [
        Builder("test", workers=["w"], steps=[]),
        Builder("lint", workers=["w"], steps=[], cancel_superseded=False),
        Builder("deploy", workers=["w"], steps=[], cancel_superseded=True),
    ]
)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


def build_now(change: Change, *builders: str) -> Release:
    """A scheduler's decision to build ``change`` at once on ``builders``, with its properties."""
    stamp = SourceStamp(repository=change.repository, branch=change.branch, revision=change.revision)
    properties = {name: (value, "Change") for name, value in change.properties.items()}
    return Release("on-change", "", (), BuildsetSpec("on-change", builders, (stamp,), properties=properties))


async def add(store: Store, change: Change, *builders: str, at: float = NOW) -> list[BuildRequest]:
    """Store ``change``, built at once on ``builders``, superseding as SUPERSEDING says; its requests."""
    _, requests = await store.changes.add(change, [build_now(change, *builders)], at, superseding=SUPERSEDING)
    return requests


def head(number: int, revision: str, title: str = "Add a feature") -> Change:
    """A change for pull request ``number`` of REPO at head ``revision``."""
    request = PullRequest(REPO, number, title=title, url=f"https://github.com/{REPO}/pull/{number}", base_branch="main")
    return request.change(revision, f"refs/pull/{number}/head", project="", when=NOW)


async def rows(store: Store, table: sa.Table) -> list[sa.Row]:
    return await store.read(lambda conn: conn.execute(sa.select(table).order_by(table.c.id)).all())


async def test_a_new_head_completes_the_waiting_requests_of_older_heads_of_its_pull_request(store: Store) -> None:
    # Given pull request #2 waiting to be built at head a1 by two builders, one of which keeps
    # superseded heads, and pull request #3 and a push to main waiting too
    old_test, old_lint = await add(store, head(2, "a1"), "test", "lint")
    (other,) = await add(store, head(3, "c1"), "test")
    (push,) = await add(store, Change(repository=REPO, branch="main", revision="m1"), "test")

    # When pull request #2 gets head a2, retitled
    new_test, new_lint = await add(store, head(2, "a2", "Add a better feature"), "test", "lint", at=NOW + 1)

    # Then the new request of "test" superseded the old one, which is complete, saying why; the rest wait
    assert (new_test.superseded, new_lint.superseded) == ((old_test.id,), ())
    requests = {r.id: r for r in await rows(store, t.buildrequests)}
    assert (requests[old_test.id].result, requests[old_test.id].summary) == (int(Result.CANCELLED), "superseded by a2")
    assert requests[old_test.id].complete_at == NOW + 1
    waiting = {i for i, r in requests.items() if r.complete_at is None}
    assert waiting == {old_lint.id, other.id, push.id, new_test.id, new_lint.id}
    assert {r.id for r in await store.requests.pending()} == waiting  # what a master starting now would queue

    # And the store knows both pull requests, #2 as its newest change describes it, and links their buildsets
    pull_requests = await rows(store, t.pull_requests)
    assert [(p.repository, p.number, p.title, p.closed_at) for p in pull_requests] == [
        (REPO, 2, "Add a better feature", None),
        (REPO, 3, "Add a feature", None),
    ]
    links = {b.id: b.pull_request_id for b in await rows(store, t.buildsets)}
    assert [links[r.buildset_id] for r in (old_test, other, push, new_test)] == [
        pull_requests[0].id,
        pull_requests[1].id,
        None,
        pull_requests[0].id,
    ]


async def test_superseding_is_part_of_the_new_heads_transaction(store: Store) -> None:
    # Given head a1 of pull request #2 waiting
    (old,) = await add(store, head(2, "a1"), "test")

    # When storing head a2 fails after its request superseded a1's (another scheduler's decision
    # cannot be stored: it names a change that does not exist)
    new = head(2, "a2")
    broken = Release("s", "", (), BuildsetSpec("s", ("unit",), (), change_ids=(999_999,)))
    with pytest.raises(StoreError):
        await store.changes.add(new, [build_now(new, "test"), broken], NOW + 1, superseding=SUPERSEDING)

    # Then a1's request still waits, as if head a2 never came
    assert [(r.id, r.complete_at) for r in await rows(store, t.buildrequests)] == [(old.id, None)]


async def test_running_builds_and_other_branches_are_left_to_the_master(store: Store) -> None:
    # Given head a1 of pull request #2 being built, and two pushes to main and one to dev for a
    # builder that cancels superseded branch builds too
    (running,) = await add(store, head(2, "a1"), "test")
    build = Ref()
    await store.builds.start(running, 1, "w", NOW, "master", build)
    (main1,) = await add(store, Change(repository=REPO, branch="main", revision="m1"), "deploy")
    (dev1,) = await add(store, Change(repository=REPO, branch="dev", revision="d1"), "deploy")

    # When pull request #2 gets a new head and main a new commit
    (new,) = await add(store, head(2, "a2"), "test", at=NOW + 1)
    (main2,) = await add(store, Change(repository=REPO, branch="main", revision="m2"), "deploy", at=NOW + 1)

    # Then the running build's request is not completed by the store (the master stops the build),
    # main's older commit is superseded, and dev's is not
    assert (new.superseded, main2.superseded) == ((), (main1.id,))
    waiting = {r.id for r in await store.requests.pending(unclaimed=True)}
    assert waiting == {dev1.id, new.id, main2.id}
    # And the build records the pull request it builds
    (built,) = await rows(store, t.builds)
    assert built.pull_request_id == (await rows(store, t.pull_requests))[0].id


async def test_a_closed_pull_request_is_open_again_when_a_change_comes_for_it(store: Store) -> None:
    await add(store, head(2, "a1"), "test")
    await store.pull_requests.close(REPO, 2, NOW + 1)
    await store.pull_requests.close(REPO, 9, NOW + 1)  # one the store never built: nothing to record
    assert [(p.number, p.closed_at) for p in await rows(store, t.pull_requests)] == [(2, NOW + 1)]

    await add(store, head(2, "a2"), "test", at=NOW + 2)
    assert [(p.number, p.closed_at, p.updated_at) for p in await rows(store, t.pull_requests)] == [(2, None, NOW + 2)]


async def test_builds_stored_before_pull_requests_were_kept_are_linked_to_theirs(db_url: str) -> None:
    # Given a database of the schema before, holding a build of pull request #2 and a forced one
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0010_artifacts")
            for properties in ('{"pr_number": [2, "Change"], "pr_title": ["Add a feature", "Change"]}', "{}"):
                buildset = conn.execute(
                    sa.text(
                        "INSERT INTO buildsets (scheduler, reason, properties, submitted_at)"
                        " VALUES ('s', '', :p, 1) RETURNING id"
                    ),
                    {"p": properties},
                ).scalar_one()
                conn.execute(
                    sa.text(
                        "INSERT INTO sourcestamps (buildset_id, codebase, repository, project) VALUES (:b, '', :r, '')"
                    ),
                    {"b": buildset, "r": REPO},
                )
                request = conn.execute(
                    sa.text(
                        "INSERT INTO buildrequests (buildset_id, builder, priority, submitted_at)"
                        " VALUES (:b, 'test', 0, 1) RETURNING id"
                    ),
                    {"b": buildset},
                ).scalar_one()
                conn.execute(
                    sa.text(
                        "INSERT INTO builds (request_id, builder, number, worker, started_at, summary, locks_wait)"
                        " VALUES (:r, 'test', :r, 'w', 1, '', 0)"
                    ),
                    {"r": request},
                )
    finally:
        engine.dispose()

    # When the current flowbot opens it
    store = await Store.open(db_url)
    try:
        # Then it knows the pull request, and which buildset and build were its
        (known,) = await rows(store, t.pull_requests)
        assert (known.repository, known.number, known.title, known.closed_at) == (REPO, 2, "Add a feature", None)
        assert [b.pull_request_id for b in await rows(store, t.buildsets)] == [known.id, None]
        assert [b.pull_request_id for b in await rows(store, t.builds)] == [known.id, None]
    finally:
        await store.close()


async def test_pull_requests_read_back_as_records_with_the_newest_build_of_each_builder(store: Store) -> None:
    # Given pull request #2 built twice by "lint" (which keeps superseded heads) and once by "test",
    # and #3 closed, never built
    (first_lint,) = await add(store, head(2, "a1"), "lint")
    second_lint, test = await add(store, head(2, "a2"), "lint", "test", at=NOW + 1)
    await add(store, head(3, "c1"), "test")
    await store.pull_requests.close(REPO, 3, NOW + 2)
    builds = [Ref(), Ref(), Ref()]
    for ref, (request, number) in zip(builds, [(first_lint, 1), (second_lint, 2), (test, 1)], strict=True):
        await store.builds.start(request, number, "w", NOW, "master", ref)

    # When the open ones are read, and the one a build built
    (open_one,) = await store.pull_requests.query()
    of_build = await store.pull_requests.of_build(builds[0].id)

    # Then each is its pull request as its newest change describes it, open, with the newest
    # build of each builder (by builder) only when read as a list
    assert open_one.pull_request == PullRequest(
        REPO, 2, title="Add a feature", url=f"https://github.com/{REPO}/pull/2", base_branch="main"
    )
    assert (open_one.state, open_one.updated_at, open_one.closed_at) == ("open", NOW + 1, None)
    assert [(b.builder, b.number) for b in open_one.builds] == [("lint", 2), ("test", 1)]
    assert of_build == dataclasses.replace(open_one, builds=None)
    (closed,) = await store.pull_requests.query(state="closed")
    assert (closed.pull_request.number, closed.state, closed.closed_at, closed.builds) == (3, "closed", NOW + 2, ())
    assert await store.pull_requests.of_build(999) is None
