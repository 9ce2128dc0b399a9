"""A build's end in the store (``Builds.finish``), on SQLite and PostgreSQL."""

from __future__ import annotations

from flowbot.results import Result
from flowbot.store import Ref, Store

from .test_store import NOW, buildset, store  # noqa: F401 (fixture)


async def test_an_end_keeps_the_properties_stored_unless_it_gives_others(store: Store) -> None:  # noqa: F811
    # Given two builds started with their properties
    first, second = await store.requests.add_buildset(buildset("unit", "lint"), NOW)
    kept, changed = Ref(), Ref()
    started = {"branch": ["main", "Build"], "cell": [{"os": "linux"}, "matrix"]}
    await store.builds.start(first, 1, "w1", NOW, "master", kept, properties=started)
    await store.builds.start(second, 1, "w1", NOW, "master", changed, properties=started)

    # When one ends without properties (none changed) and the other with those it ended with
    await store.builds.finish(kept, first, Result.SUCCESS, NOW + 1)
    ended = {**started, "got_revision": ["abc123", "git"]}
    await store.builds.finish(changed, second, Result.FAILURE, NOW + 1, properties=ended)

    # Then the first keeps those it started with, the second has its own, and both ended
    one, two = await store.builds.get(kept.id), await store.builds.get(changed.id)
    assert (one.result, one.properties) == (
        Result.SUCCESS,
        {"branch": ("main", "Build"), "cell": ({"os": "linux"}, "matrix")},
    )
    assert (two.result, two.properties["got_revision"]) == (Result.FAILURE, ("abc123", "git"))
