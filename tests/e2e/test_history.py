"""Reading the history of a real master: a master process, real workers, then ``flowbot.History`` on its database."""

from __future__ import annotations

import shutil

import pandas as pd

from flowbot import History

from ..gitrepos import GitRepo
from ..support import finished_builds


def test_the_history_of_real_builds_reads_live_and_from_a_copy(master_factory, worker_factory, tmp_path):
    # Given the walking-skeleton pipeline with both workers, and two changes built
    master = master_factory()
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    for revision in ("1a2b3c", "4d5e6f"):
        master.client.sendchange(branch="main", revision=revision, author="alice", comments="fix", files=["a.py"])
    finished_builds(master.client, 4)

    # When History reads the master's database while it runs
    database = master.basedir / "state.sqlite"
    with History(f"sqlite:///{database}") as history:
        builds = history.builds()
        # Then it sees the builds the API reports, with their results
        assert sorted(zip(builds["builder"], builds["result"], strict=True)) == [
            ("lint", "FAILURE"),
            ("lint", "FAILURE"),
            ("unit", "SUCCESS"),
            ("unit", "SUCCESS"),
        ]
        assert (builds["duration"] > pd.Timedelta(0)).all()
        rates = history.failure_rate().set_index("builder")["failure_rate"]
        assert rates.to_dict() == {"lint": 1.0, "unit": 0.0}
        assert history.changes()["revision"].tolist() == ["1a2b3c", "4d5e6f"]
        assert set(history.workers()["worker"]) == {"w1", "w2"}
        # And the logs the workers streamed are searchable
        found = history.search_logs("testing 4d5e6f")
        assert found[["builder", "step", "stream"]].values.tolist() == [["unit", "test", "stdout"]]

    # And a copy taken after the master stopped reads the same, with no master at all
    master.stop()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(database, copy)
    with History(f"sqlite:///{copy}") as history:
        assert len(history.builds()) == 4
        assert len(history.culprits("lint")) == 0  # it never passed: nothing broke it


FLAKY_REPO_SCRIPT = """\
if [ "$FLOWBOT_BUILD_NUMBER" = 2 ] || [ "$FLOWBOT_BUILD_NUMBER" = 5 ]; then
  failure='<failure message="timed out after 5 s">socket.timeout</failure>'
fi
cat > report.xml <<XML
<testsuite name="net">
  <testcase classname="tests.test_net" name="test_download">$failure</testcase>
  <testcase classname="tests.test_net" name="test_parse"/>
</testsuite>
XML
[ -z "$failure" ]
"""

FORCED_PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, ForceScheduler, Git, Shell
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], collapse_requests=False, steps=[
        Git({repo!r}, mode="full"),
        Shell("sh run_tests.sh", name="test", junit="report.xml"),
    ])],
)
"""


def test_forced_reruns_of_one_commit_record_it_and_show_a_flaky_test(master_factory, worker_factory, tmp_path):
    # Given a repository whose network test fails on two of six runs of one commit
    repo = GitRepo(tmp_path / "repo")
    head = repo.commit("tests", {"run_tests.sh": FLAKY_REPO_SCRIPT})
    master = master_factory(FORCED_PIPELINE.format(repo=repo.url))
    worker_factory(master, "w1", "s")

    # When it is forced six times, naming no revision
    for _ in range(6):
        master.client.force("unit")
    builds = finished_builds(master.client, 6, timeout=90)

    # Then each build's revision is the commit it checked out, in the API and in History
    assert [b["result"] for b in builds] == ["SUCCESS", "FAILURE", "SUCCESS", "SUCCESS", "FAILURE", "SUCCESS"]
    assert {b["revision"] for b in builds} == {head}
    assert master.client.build(builds[0]["id"])["revision"] == head
    with History(f"sqlite:///{master.basedir / 'state.sqlite'}") as history:
        assert history.builds()["revision"].tolist() == [head] * 6
        # And the test that flipped across the reruns is flaky; the stable one is not
        flaky = history.flaky_tests()
        assert flaky["name"].tolist() == ["test_download"]
        found = flaky.iloc[0]
        assert (found["runs"], found["failed"], found["mixed_revisions"]) == (6, 2, 1)
        assert found["revisions"] == [head]
        assert sorted(found["failed_builds"]) == [builds[1]["id"], builds[4]["id"]]
