"""The event bus and its journal, in process."""

from __future__ import annotations

from flowbot.master.events import EventBus, EventJournal, id_to_time


def test_event_ids_grow_strictly_and_tell_the_time():
    bus = EventBus()
    seen = []
    bus.subscribe(seen.append)
    for _ in range(1000):
        bus.emit("change.new", change_id=1)
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids))
    assert abs(id_to_time(ids[-1]) - seen[-1]["time"]) < 1.0


def test_the_journal_keeps_durable_events_only_and_says_when_it_forgot_some():
    bus = EventBus()
    journal = EventJournal(bus, size=3)
    start = bus.last_id
    assert journal.covers(start) and journal.after(start) == []

    # Nobody asked for live log lines, so they are not even built
    assert not bus.wants("log")
    assert bus.wants("build.finished")

    ids = []
    unsubscribe = bus.subscribe(lambda e: ids.append(e["id"]))
    for n in range(5):
        bus.emit("request.new", request_id=n, builder="b")
    assert [e["request_id"] for e in journal.after(start)] == [2, 3, 4]
    assert not journal.covers(start)  # requests 0 and 1 are forgotten
    assert not journal.covers(ids[0])  # a client that saw request 0 missed request 1
    assert journal.covers(ids[1])  # one that saw request 1 missed nothing
    assert [e["request_id"] for e in journal.after(ids[3])] == [4]
    assert journal.after(bus.last_id) == []
    unsubscribe()
    journal.close()
    assert not bus.wants("build.finished")
