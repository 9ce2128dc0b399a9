"""The index of free workers (``flowbot/master/free_workers.py``) on plain names and loads."""

from __future__ import annotations

from collections import Counter

from flowbot.master.free_workers import FreeWorkers


def test_workers_come_least_busy_first_ties_in_the_builders_order_and_a_refused_one_waits_for_a_touch() -> None:
    load: Counter[str] = Counter()
    index = FreeWorkers(load.__getitem__)
    roster = ["w3", "w1", "w2", "w1"]  # w1 named twice: its first place counts
    refused = {"w2"}

    def takes(worker: str) -> bool:
        return worker not in refused

    assert list(index.least_busy("unit", roster, takes)) == ["w3", "w1"]

    # A build starts on w3: it comes last; the entries passed over are all still there
    load["w3"] += 1
    index.touch("w3")
    assert list(index.least_busy("unit", roster, takes)) == ["w1", "w3"]

    # w2 was refused, so it stays out even once it would take a build, until it is touched
    refused.clear()
    assert list(index.least_busy("unit", roster, takes)) == ["w1", "w3"]
    index.touch("w2")
    assert list(index.least_busy("unit", roster, takes)) == ["w1", "w2", "w3"]


def test_an_iterator_closed_early_puts_back_what_it_went_past_and_a_new_roster_is_indexed_afresh() -> None:
    load: Counter[str] = Counter({"w1": 2})
    index = FreeWorkers(load.__getitem__)
    roster = ["w1", "w2", "w3"]
    first = index.least_busy("unit", roster, lambda worker: True)
    assert next(first) == "w2"
    first.close()
    assert list(index.least_busy("unit", roster, lambda worker: True)) == ["w2", "w3", "w1"]
    # The pipeline changed: another list for the builder
    assert list(index.least_busy("unit", ["w1", "w4"], lambda worker: True)) == ["w4", "w1"]


def test_a_heap_stays_within_about_twice_its_builders_workers_however_often_they_are_touched() -> None:
    load: Counter[str] = Counter()
    index = FreeWorkers(load.__getitem__)
    roster = [f"w{i}" for i in range(10)]
    assert len(list(index.least_busy("idle", roster, lambda worker: True))) == 10
    for turn in range(1000):
        worker = roster[turn % 10]
        load[worker] = turn % 3
        index.touch(worker)
    assert len(index._heaps["idle"]) <= 2 * len(roster) + 16
    assert list(index.least_busy("idle", roster, lambda worker: True)) == sorted(
        roster, key=lambda w: (load[w], roster.index(w))
    )
