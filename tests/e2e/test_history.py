"""Reading the history of a real master: a master process, real workers, then ``flowbot.History`` on its database."""

from __future__ import annotations

import shutil

import pandas as pd

from flowbot import History

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
