"""Scheduler decisions without a master: filters, importance, timers, cron, parameters."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from flowbot import (
    AnyBranchScheduler,
    Builder,
    ChangeFilter,
    GitHubHook,
    IntParameter,
    Nightly,
    Periodic,
    Pipeline,
    Shell,
    SingleBranchScheduler,
    Trigger,
    Triggerable,
    Worker,
)
from flowbot.errors import ConfigErrors
from flowbot.records import Change, SourceStamp


def change(**fields) -> Change:
    return Change(**{"branch": "main", "revision": "r", "id": 1, **fields})


@pytest.mark.parametrize(
    ("flt", "matches"),
    [
        (ChangeFilter(branch="main"), True),
        (ChangeFilter(branch=["dev", "main"]), True),
        (ChangeFilter(branch=None), False),
        (ChangeFilter(branch_re=r"^ma"), True),
        (ChangeFilter(repository="other.git"), False),
        (ChangeFilter(files=["src/*.py"]), True),
        (ChangeFilter(files=["docs/*"]), False),
        (ChangeFilter(branch=lambda b: b.startswith("m"), project="p"), True),
        (ChangeFilter(filter_fn=lambda c: "skip ci" in c.comments), False),
    ],
)
def test_change_filters(flt: ChangeFilter, matches: bool) -> None:
    assert flt(change(files=("src/a.py",), repository="repo.git", project="p", comments="fix")) is matches


def test_change_filters_select_or_leave_out_pull_requests_and_choose_their_base_branch() -> None:
    # Given a push to master, a pull request into master and one into dev, as GitHub delivers them
    hook = GitHubHook()
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"
    push_body = (fixtures / "push-with-new-branch.payload.json").read_bytes()
    (push,) = hook.parse({"X-GitHub-Event": "push"}, push_body).changes
    opened = json.loads((fixtures / "pull_request.opened.payload.json").read_bytes())
    (into_master,) = hook.parse({"X-GitHub-Event": "pull_request"}, json.dumps(opened).encode()).changes
    opened["pull_request"]["base"]["ref"] = "dev"
    (into_dev,) = hook.parse({"X-GitHub-Event": "pull_request"}, json.dumps(opened).encode()).changes
    changes = [push, into_master, into_dev]

    def kept(flt: ChangeFilter) -> list[Change]:
        return [c for c in changes if flt(c)]

    # Then filters keep pull requests or leave them out, and choose them by the branch they go into
    assert kept(ChangeFilter(pull_requests=True)) == [into_master, into_dev]
    assert kept(ChangeFilter(pull_requests=False)) == [push]
    assert kept(ChangeFilter(base_branch="master")) == [into_master]
    assert kept(ChangeFilter(pull_requests=True, base_branch=["dev", "release"])) == [into_dev]
    assert kept(ChangeFilter(base_branch=lambda b: b != "dev")) == [into_master]
    assert kept(ChangeFilter(branch="master")) == [push]  # a pull request's branch is its ref
    assert repr(ChangeFilter(pull_requests=True, base_branch="main")) == (
        "ChangeFilter(pull_requests=True, base_branch='main')"
    )
    with pytest.raises(ValueError, match="must be True, False or None"):
        ChangeFilter(pull_requests="yes")
    with pytest.raises(ValueError, match="cannot go with pull_requests=False"):
        ChangeFilter(pull_requests=False, base_branch="main")


def test_schedulers_with_codebases_take_their_changes_and_fill_in_the_others() -> None:
    # Given a scheduler that builds an application with its library
    scheduler = AnyBranchScheduler(
        "both", ["unit"], codebases={"app": {"repository": "/srv/app.git", "branch": "main"}, "lib": {}}
    )

    # Then changes of other codebases are left alone
    assert scheduler.classify(change(codebase="docs")) is None
    assert scheduler.classify(change(codebase="")) is None
    assert scheduler.classify(change(codebase="lib")) is not None

    # And a change of the library builds it with the application's branch head
    spec = scheduler.changes_buildset([change(codebase="lib", repository="/srv/lib.git", revision="r9")])
    assert spec.sourcestamps == (
        SourceStamp(codebase="lib", repository="/srv/lib.git", branch="main", revision="r9"),
        SourceStamp(codebase="app", repository="/srv/app.git", branch="main"),
    )
    # A scheduler of names only gives their stamps no defaults; one without codebases takes any change
    named = AnyBranchScheduler("named", ["unit"], codebases=["app", "lib"])
    assert named.changes_buildset([change(codebase="app")]).sourcestamps[1] == SourceStamp(codebase="lib")
    assert AnyBranchScheduler("any", ["unit"]).classify(change(codebase="docs")) is not None
    for bad, message in [
        ("app", "must be a list of names or a dict"),
        ({"app": {"tag": "v1"}}, r"unknown field\(s\) \['tag'\]"),
        ({"app": {"branch": 3}}, "fields must be strings"),
    ]:
        with pytest.raises(ValueError, match=message):
            AnyBranchScheduler("bad", ["unit"], codebases=bad)


def test_branch_schedulers_classify_by_filter_importance_and_branch() -> None:
    single = SingleBranchScheduler("s", ["b"], branch="main", file_is_important=lambda c: "README" not in c.files)
    assert single.classify(change(branch="dev")) is None
    assert single.classify(change(files=("README",))).important is False
    assert single.classify(change(files=("x.py",))).key == ""
    assert AnyBranchScheduler("a", ["b"]).classify(change(branch="dev")).key == "dev"
    with pytest.raises(ValueError, match="needs a branch"):
        SingleBranchScheduler("s", ["b"])


def test_a_buildset_of_several_changes_builds_the_newest_and_lists_them_all() -> None:
    spec = AnyBranchScheduler("a", ["b"]).changes_buildset(
        [change(id=1, revision="r1", properties={"k": 1}), change(id=2, revision="r2", author="bo")]
    )
    assert spec.change_ids == (1, 2)
    assert spec.sourcestamps[0].revision == "r2"
    assert spec.reason == "a: change r2 by bo and 1 earlier on main"
    assert spec.properties["k"] == (1, "Change")


def test_timed_schedulers_compute_their_next_run() -> None:
    assert Periodic("p", ["b"], period=90).next_run(1000.0) == 1090.0
    nightly = Nightly("n", ["b"], cron="30 3 * * *", only_if_changed=True)
    after = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC).timestamp()
    assert dt.datetime.fromtimestamp(nightly.next_run(after), dt.UTC) == dt.datetime(2026, 11, 26, 3, 30, tzinfo=dt.UTC)
    assert nightly.timed_buildset([]) is None  # nothing changed: no run
    assert nightly.timed_buildset([change()]).change_ids == (1,)
    with pytest.raises(ValueError, match="not a cron expression"):
        Nightly("n", ["b"], cron="every night")


def test_a_nightly_in_a_time_zone_runs_at_its_local_time_summer_and_winter() -> None:
    paris = Nightly("n", ["b"], cron="0 3 * * *", timezone="Europe/Paris")

    def next_utc(*when: int) -> dt.datetime:
        after = dt.datetime(*when, tzinfo=dt.UTC).timestamp()
        return dt.datetime.fromtimestamp(paris.next_run(after), dt.UTC)

    assert next_utc(2026, 7, 1, 12, 0) == dt.datetime(2026, 7, 2, 1, 0, tzinfo=dt.UTC)  # 03:00 CEST
    assert next_utc(2026, 12, 1, 12, 0) == dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)  # 03:00 CET
    # The night the clocks go back (25 October 2026), 03:00 comes once
    assert next_utc(2026, 10, 24, 12, 0) == dt.datetime(2026, 10, 25, 2, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a time zone"):
        Nightly("n", ["b"], cron="0 3 * * *", timezone="Mars/Olympus")


def test_int_parameters_convert_and_check() -> None:
    jobs = IntParameter("jobs", minimum=1)
    assert jobs.parse("4") == 4
    for bad in ("x", True, 0):
        with pytest.raises(ValueError):
            jobs.parse(bad)


def test_triggers_must_name_triggerable_schedulers_and_never_loop() -> None:
    workers = [Worker("w", secret="s")]

    def builder(name: str, *triggers: str) -> Builder:
        return Builder(name, workers=["w"], steps=[Shell("true"), *[Trigger(schedulers=[t]) for t in triggers]])

    with pytest.raises(ConfigErrors, match="builders trigger each other in a cycle: a -> b -> a"):
        Pipeline(
            workers=workers,
            schedulers=[Triggerable("to-b", ["b"]), Triggerable("to-a", ["a"])],
            builders=[builder("a", "to-b"), builder("b", "to-a")],
        )
    with pytest.raises(ConfigErrors, match="triggers 'to-b', which is not a Triggerable scheduler"):
        Pipeline(
            workers=workers,
            schedulers=[AnyBranchScheduler("to-b", ["b"])],
            builders=[builder("a", "to-b"), builder("b")],
        )
    fine = Pipeline(
        workers=workers, schedulers=[Triggerable("to-b", ["b"])], builders=[builder("a", "to-b"), builder("b")]
    )
    assert ("builder:a", "scheduler:to-b", "triggers") in fine.edges()
