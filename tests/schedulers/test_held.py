"""What schedulers decide about a change before it is written, and the changes they hold meanwhile."""

from __future__ import annotations

import pytest

from flowbot import AnyBranchScheduler, Nightly, SingleBranchScheduler
from flowbot.records import Change, HeldChange, Hold, Release
from flowbot.schedulers.held import HeldChanges


def change(revision: str, id: int | None = None, **fields) -> Change:
    return Change(branch="main", revision=revision, id=id, **fields)


def test_a_change_built_at_once_takes_what_its_scheduler_held_under_the_same_key():
    # Given a scheduler that holds the unimportant changes of a key until an important one comes
    scheduler = AnyBranchScheduler("s", ["b"], file_is_important=lambda c: not c.comments.startswith("docs"))
    held = HeldChanges()
    held.load([HeldChange("s", "main", False, 1.0, change("r1", 1, comments="docs"))])

    # When an important change comes
    (decision,) = held.decide([scheduler], change("r2"))

    # Then the scheduler lets go of the held change and its buildset is made of both, oldest first
    assert isinstance(decision, Release)
    assert [c.revision for c in decision.changes] == ["r1"]
    assert decision.buildset is not None
    assert decision.buildset.sourcestamps[0].revision == "r2"
    assert decision.buildset.change_ids == (1,)  # the new change is linked once it has an id
    assert "and 1 earlier" in decision.buildset.reason

    # And the next change finds nothing held
    (again,) = held.decide([scheduler], change("r3"))
    assert isinstance(again, Release) and again.changes == ()


def test_a_held_change_is_held_once_stored_and_a_release_that_was_not_stored_is_held_again():
    scheduler = SingleBranchScheduler("s", ["b"], branch="main", tree_stable_timer=60)
    held = HeldChanges()

    # Given a change the scheduler holds for its timer, once stored
    decisions = held.decide([scheduler], change("r1"))
    assert decisions == [Hold("s", "", True)]
    held.stored(decisions, change("r1", 1))

    # When the timer fires but its release cannot be stored
    release = held.release(scheduler, "", scheduler.changes_buildset)
    assert [c.id for c in release.changes] == [1]
    held.not_stored([release])

    # Then the change is held again, before any held since
    held.stored([Hold("s", "", True)], change("r2", 2))
    assert [c.id for c in held.release(scheduler, "", scheduler.changes_buildset).changes] == [1, 2]


def test_a_scheduler_that_fails_to_make_its_buildset_keeps_what_it_held():
    # Given a scheduler holding a change, whose buildset cannot be made
    scheduler = AnyBranchScheduler("s", ["b"])

    def broken(changes: list[Change]):
        raise ValueError("no buildset")

    held = HeldChanges()
    held.load([HeldChange("s", "main", False, 1.0, change("r1", 1))])

    # When its timer fires, the failure is the caller's to see
    with pytest.raises(ValueError, match="no buildset"):
        held.release(scheduler, "main", broken)

    # Then the change is still held
    assert [c.id for c in held.release(scheduler, "main", scheduler.changes_buildset).changes] == [1]


def test_branch_and_timed_schedulers_agree_on_unimportant_changes():
    # Given a branch scheduler and a nightly one that call documentation changes unimportant
    def important(c: Change) -> bool:
        return not c.comments.startswith("docs")

    branch = AnyBranchScheduler("branch", ["b"], file_is_important=important)
    nightly = Nightly("nightly", ["b"], cron="0 3 * * *", only_if_changed=True, file_is_important=important)
    held = HeldChanges()

    # When a documentation change comes, both hold it, as unimportant, and neither builds it
    decisions = held.decide([branch, nightly], change("r1", comments="docs: typo"))
    assert decisions == [Hold("branch", "main", False), Hold("nightly", "", False)]
    docs = change("r1", comments="docs")
    assert branch.classify(docs).important is nightly.classify(docs).important is False
    held.stored(decisions, change("r1", 1, comments="docs: typo"))

    # Then the nightly run skips it and keeps it held
    skipped = held.release(nightly, "", nightly.timed_buildset)
    assert skipped.buildset is None and skipped.changes == ()

    # And once an important change comes, each builds it with the unimportant one riding along
    decisions = held.decide([branch, nightly], change("r2"))
    assert isinstance(decisions[0], Release) and [c.id for c in decisions[0].changes] == [1]
    assert decisions[1] == Hold("nightly", "", True)
    held.stored(decisions, change("r2", 2))
    run = held.release(nightly, "", nightly.timed_buildset)
    assert run.buildset is not None and run.buildset.change_ids == (1, 2)
