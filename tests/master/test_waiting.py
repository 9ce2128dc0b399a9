"""Why a request waits (``flowbot/master/waiting.py``), from the facts the dispatcher has."""

from __future__ import annotations

from flowbot.master.waiting import WorkerFacts, why_waiting


def test_each_worker_says_what_keeps_it_from_the_build():
    workers = [
        WorkerFacts("w1", connected=False),
        WorkerFacts("w2", connected=True, paused="disk full"),
        WorkerFacts("w3", connected=True, paused=""),
        WorkerFacts("w4", connected=True, shutting_down=True),
        WorkerFacts("w5", connected=True, running=("unit",)),
        WorkerFacts("w6", connected=True, running=("lint", "docs"), max_builds=2),
        WorkerFacts("w7", connected=False, on_demand=True),
    ]
    assert why_waiting("unit", True, workers, locks_free=True) == (
        "w1 is offline; w2 is paused (disk full); w3 is paused; w4 is shutting down; "
        "w5 runs a build of unit already; w6 runs 2 builds, its max_builds; an instance of w7 is to start"
    )


def test_a_free_worker_leaves_the_locks_or_nothing_to_wait_for():
    free = [WorkerFacts("w1", connected=False), WorkerFacts("w2", connected=True, running=("lint",))]
    assert why_waiting("unit", True, free, locks_free=False) == "waiting for the builder's locks"
    assert why_waiting("unit", True, free, locks_free=True) == "starting"


def test_a_builder_the_pipeline_lost_or_without_workers():
    assert why_waiting("old", False, [], True) == "the pipeline has no builder old now; it waits for one"
    assert why_waiting("lonely", True, [], True) == "builder lonely has no workers"
