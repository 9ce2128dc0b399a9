"""The build queue (``flowbot/master/queue.py``) and Buildbot's collapse rule it serves."""

from __future__ import annotations

from flowbot.builder import same_source
from flowbot.master.queue import BuildQueue
from flowbot.records import BuildRequest, SourceStamp


def request(request_id: int, branch: str | None, revision: str = "r1", *, from_changes: bool = True) -> BuildRequest:
    stamp = SourceStamp(repository="https://example.org/repo.git", branch=branch, revision=revision)
    return BuildRequest(request_id, request_id, "unit", (stamp,), submitted_at=request_id, from_changes=from_changes)


def test_no_branch_and_an_empty_branch_are_the_same_source_for_the_queue_and_the_rule() -> None:
    # Given waiting requests on the default branch, written as no branch and as an empty one
    queue = BuildQueue()
    unnamed, empty, main = request(1, None), request(2, ""), request(3, "main")
    for waiting in (unnamed, empty, main):
        queue.add(waiting)

    # Then the queue offers each as a candidate for the other, and the rule collapses them
    assert queue.same_source(empty) == [unnamed]
    assert same_source(empty, unnamed) and same_source(unnamed, empty)
    # And another branch is another source for both
    assert queue.same_source(main) == []
    assert not same_source(main, empty)


def test_requests_not_made_from_changes_collapse_only_on_the_same_revision() -> None:
    forced, same, other = (request(i, "main", rev, from_changes=False) for i, rev in ((1, "r1"), (2, "r1"), (3, "r2")))
    assert same_source(same, forced)
    assert not same_source(other, forced)
    assert same_source(request(4, "main", "r9"), request(5, "main", "r1"))  # both from changes: any revision


def test_each_builder_waits_at_the_place_of_its_first_request_by_priority_then_age() -> None:
    # Given requests of two builders, one of them urgent
    queue = BuildQueue()
    for request_id, builder, priority in ((1, "a", 0), (2, "b", 0), (3, "a", 0), (4, "b", 100)):
        queue.add(BuildRequest(request_id, request_id, builder, (), priority=priority, submitted_at=request_id))

    # Then b stands first, by its urgent request, and a by its oldest
    assert sorted(queue.heads()) == [((-100, 4, 4), "b"), ((0, 1, 1), "a")]
    # And once a request is taken, its builder stands at the place of its next one
    queue.remove(4)
    queue.remove(1)
    assert sorted(queue.heads()) == [((0, 2, 2), "b"), ((0, 3, 3), "a")]
    assert queue.first("a").id == 3


def test_a_builder_says_how_many_requests_wait_and_which_come_first_without_listing_them_all() -> None:
    # Given a deep queue of one builder, an urgent request among them and some taken out
    queue = BuildQueue()
    for request_id in range(1, 1001):
        queue.add(BuildRequest(request_id, request_id, "unit", (), priority=100 if request_id == 500 else 0,
                               submitted_at=request_id))  # fmt: skip
    for request_id in (1, 2, 3):
        queue.remove(request_id)

    # Then the builder has 997 waiting, the urgent one first, then the oldest
    count, first = queue.waiting("unit", 4)
    assert count == 997
    assert [r.id for r in first] == [500, 4, 5, 6]
    assert queue.waiting("other", 4) == (0, [])
