"""The worker's journal (``flowbot_worker/journal.py``): what a worker killed and started again on
the same directory finds of the commands its earlier process ran, and says in its hello."""

from __future__ import annotations

import logging

import pytest
import zmq.asyncio
from flowbot_worker.bodies import Hello
from flowbot_worker.journal import Journal
from flowbot_worker.output import Tail
from flowbot_worker.worker import Worker


def test_a_command_is_read_back_as_started_until_its_result_is_kept_and_gone_once_forgotten(tmp_path):
    # Given a journal that noted two commands, one of which ended
    journal = Journal(tmp_path)
    journal.started("r1.b1.s0.c1")
    journal.started("r2.b1.s0.c1")
    finished = {"cmd_id": "r1.b1.s0.c1", "rc": 0, "offsets": {"stdout": 9}}
    journal.finished("r1.b1.s0.c1", finished, {"stdout": Tail(4, 1, b"\x00tail\n")})

    # Then a journal on the same directory reads back the result with its output, and the other as started
    entries = {entry.cmd_id: entry for entry in Journal(tmp_path).entries()}
    assert entries["r1.b1.s0.c1"].finished == finished
    assert entries["r1.b1.s0.c1"].output == {"stdout": Tail(4, 1, b"\x00tail\n")}
    assert entries["r2.b1.s0.c1"].finished is None

    # And a command forgotten is gone
    journal.forget("r1.b1.s0.c1")
    journal.forget("never-noted")
    assert [entry.cmd_id for entry in Journal(tmp_path).entries()] == ["r2.b1.s0.c1"]


def test_an_entry_that_cannot_be_read_is_dropped_and_said(tmp_path, caplog):
    journal = Journal(tmp_path)
    journal.started("c1")
    (journal.directory / "torn.json").write_text('{"cmd_id": "c2", "finish')
    with caplog.at_level(logging.ERROR, "flowbot_worker"):
        assert [entry.cmd_id for entry in journal.entries()] == ["c1"]
    assert "torn.json" in caplog.text
    assert not (journal.directory / "torn.json").exists()


def test_a_command_the_journal_cannot_note_does_not_run_and_says_why(tmp_path):
    journal = Journal(tmp_path)
    journal.directory.parent.mkdir(exist_ok=True)
    journal.directory.write_text("a file where the journal's directory should be")
    with pytest.raises(OSError):
        journal.started("c1")


def test_a_worker_started_again_reports_the_results_left_and_names_the_commands_it_died_running(tmp_path):
    # Given a journal left by a worker killed after one command ended and while another ran
    journal = Journal(tmp_path)
    journal.started("r1.b1.s0.c1")
    journal.finished("r1.b1.s0.c1", {"cmd_id": "r1.b1.s0.c1", "rc": 0}, {"stdout": Tail(4, 1, b"two\n")})
    journal.started("r2.b1.s0.c1")

    # When a worker starts on that directory
    context = zmq.asyncio.Context()
    worker = Worker("tcp://127.0.0.1:1", "w1", "s", tmp_path, context=context)
    worker._recover(journal.entries())
    context.destroy(linger=0)

    # Then its hello lists the result, with the output the master has not acknowledged, and names
    # the command it died running (so a command it names neither way never started)
    hello = Hello.decode(worker._hello())
    assert hello.held == {"r1.b1.s0.c1": {"offsets": {"stdout": [4, 8]}, "lines": {"stdout": 1}, "finished": True}}
    assert hello.lost == ["r2.b1.s0.c1"]
    # And neither runs again under its id
    assert {"r1.b1.s0.c1", "r2.b1.s0.c1"} <= set(worker._done)
