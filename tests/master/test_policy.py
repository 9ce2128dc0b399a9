"""Dispatch policy (``flowbot/master/policy.py``) on plain queues and lock tables: no master, no workers."""

from __future__ import annotations

import subprocess
import sys

from flowbot import Builder, MasterLock, Shell
from flowbot.master.locks import LockTable
from flowbot.master.policy import assignment_pass, collapsed, pick, rank, takes_build
from flowbot.master.queue import BuildQueue
from flowbot.records import BuildRequest, SourceStamp


def builder(name: str = "unit", **options) -> Builder:
    return Builder(name, workers=["w1", "w2"], steps=[Shell("true")], **options)


def request(request_id: int, builder: str = "unit", *, branch: str = "main", priority: int = 0) -> BuildRequest:
    stamp = SourceStamp(repository="repo", branch=branch, revision=f"r{request_id}")
    return BuildRequest(
        request_id, request_id, builder, (stamp,), priority=priority, submitted_at=request_id, from_changes=True
    )


def queue_of(*requests: BuildRequest) -> BuildQueue:
    queue = BuildQueue()
    for waiting in requests:
        queue.add(waiting)
    return queue


def test_a_new_request_collapses_the_waiting_ones_of_its_source_by_the_builders_rule() -> None:
    old_main, old_feature, new = request(1), request(2, branch="feature"), request(3)
    queue = queue_of(old_main, old_feature)
    assert collapsed(builder(), new, queue) == [old_main]
    assert collapsed(builder(collapse_requests=False), new, queue) == []
    assert collapsed(builder(collapse_requests=lambda new, old: True), new, queue) == [old_main, old_feature]
    assert collapsed(None, new, queue) == []  # a builder the pipeline no longer has


def test_a_collapse_function_that_raises_stops_collapsing_keeping_what_it_matched() -> None:
    first, second, new = request(1), request(2), request(3)

    def rule(new: BuildRequest, old: BuildRequest) -> bool:
        if old.id == 2:
            raise RuntimeError("bad rule")
        return True

    assert collapsed(builder(collapse_requests=rule), new, queue_of(first, second)) == [first]


def test_a_pass_serves_builders_by_their_most_urgent_request_and_a_builder_again_by_its_next() -> None:
    queue = queue_of(request(1, "a"), request(2, "b"), request(3, "a"), request(4, "c", priority=5))
    started: list[str] = []

    def start_one(name: str) -> bool:
        if name == "b":
            return False  # b has no free worker
        started.append(f"{name}:{queue.first(name).id}")
        queue.remove(queue.first(name).id)
        return True

    assignment_pass(queue, start_one)
    assert started == ["c:4", "a:1", "a:3"]
    # A pass limited to some builders offers only those
    queue.add(request(5, "a"))
    assignment_pass(queue, start_one, builders=["c"])
    assert started == ["c:4", "a:1", "a:3"]


def test_a_worker_takes_one_build_per_builder_and_no_more_than_its_limit() -> None:
    assert takes_build("unit", None, ["lint", "docs"])
    assert not takes_build("unit", None, ["unit"])
    assert not takes_build("unit", 2, ["lint", "docs"])
    assert takes_build("unit", 3, ["lint", "docs"])


def test_pick_takes_the_first_in_line_on_the_least_busy_worker_with_its_locks() -> None:
    queue, locks = queue_of(request(1), request(2)), LockTable()
    load = {"w1": 2, "w2": 0}.__getitem__
    assert pick(builder(), ["w1", "w2"], queue, locks, load) == (request(1), "w2")
    assert pick(builder(), [], queue, locks, load) is None


def test_pick_follows_the_builders_hooks() -> None:
    queue, locks = queue_of(request(1), request(2)), LockTable()
    load = {"w1": 0, "w2": 1}.__getitem__
    hooked = builder(next_build=lambda b, pending: pending[-1], next_worker=lambda b, workers, r: "w2")
    assert pick(hooked, ["w1", "w2"], queue, locks, load) == (request(2), "w2")
    # A hook that fails falls back to the default choice
    broken = builder(next_worker=lambda b, workers, r: 1 / 0)
    assert list(rank(broken, ["w1", "w2"], request(1))) == ["w1", "w2"]
    # A worker the hook names that is not free: nothing starts
    assert pick(builder(next_worker=lambda b, w, r: "w9"), ["w1", "w2"], queue, locks, load) is None


def test_pick_starts_nothing_while_the_builders_lock_is_held() -> None:
    deploy = MasterLock("deploy")
    queue, locks = queue_of(request(1)), LockTable()
    assert locks.try_acquire([deploy.access("exclusive")], "w1", "another build")
    assert pick(builder(locks=[deploy.access()]), ["w1", "w2"], queue, locks, lambda worker: 0) is None
    locks.release("another build")
    assert pick(builder(locks=[deploy.access()]), ["w1", "w2"], queue, locks, lambda worker: 0) == (request(1), "w1")


def test_the_policy_imports_nothing_of_the_masters_machinery() -> None:
    code = (
        "import sys, flowbot.master.policy\n"
        "loaded = {'zmq', 'tornado', 'sqlalchemy', 'flowbot.master.master'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def cell(request_id: int, os: str, matrix_id: int = 1) -> BuildRequest:
    return BuildRequest(request_id, 1, "unit", (), submitted_at=request_id, matrix_id=matrix_id, cell={"os": os})


def test_a_cell_no_free_worker_takes_lets_the_next_cell_go_first() -> None:
    queue, locks = queue_of(cell(1, "mac"), cell(2, "linux"), cell(3, "mac")), LockTable()
    on = {"w1": "linux", "w2": "mac"}
    fits = lambda request, worker: request.cell["os"] == on[worker]  # noqa: E731
    assert pick(builder(), ["w1"], queue, locks, lambda worker: 0, fits) == (cell(2, "linux"), "w1")
    assert pick(builder(), ["w2"], queue, locks, lambda worker: 0, fits) == (cell(1, "mac"), "w2")
    queue.remove(2)
    assert pick(builder(), ["w1"], queue, locks, lambda worker: 0, fits) is None


def test_cells_never_collapse_into_each_other_and_a_cell_collapses_only_into_the_same_cell() -> None:
    queue = queue_of(cell(1, "mac", matrix_id=1), cell(2, "linux", matrix_id=1))
    newer = cell(3, "mac", matrix_id=2)
    assert collapsed(builder(), cell(2, "linux", matrix_id=1), queue_of(cell(1, "mac", matrix_id=1))) == []
    assert collapsed(builder(collapse_requests=lambda new, old: True), newer, queue) == [cell(1, "mac", matrix_id=1)]
