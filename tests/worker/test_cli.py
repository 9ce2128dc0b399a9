"""``flowbot-worker``'s command line (``flowbot_worker/cli.py``): what its flags ask of the worker."""

from __future__ import annotations

import json

import pytest
from flowbot_worker import cli


@pytest.fixture
def started(monkeypatch) -> list[dict]:
    """The keyword arguments of each worker the command line runs (none is run)."""
    runs: list[dict] = []
    monkeypatch.setattr(cli, "run_worker", lambda *args, **kwargs: runs.append(kwargs))
    monkeypatch.setenv("FLOWBOT_WORKER_SECRET", "s")
    return runs


@pytest.mark.parametrize("given", [False, True])
def test_keep_trying_reaches_a_worker_run_from_flags(started, tmp_path, given):
    cli.main(["--master", "127.0.0.1:9989", "--name", "w1", "--basedir", str(tmp_path)] + ["--keep-trying"] * given)
    assert started[0]["keep_trying"] is given


@pytest.mark.parametrize("given", [False, True])
def test_keep_trying_reaches_a_worker_started_from_its_directory(started, tmp_path, given):
    (tmp_path / cli.CONFIG_FILE).write_text(json.dumps({"master": "tcp://127.0.0.1:9989", "name": "w1", "secret": "s"}))
    cli.main(["start", str(tmp_path)] + ["--keep-trying"] * given)
    assert started[0]["keep_trying"] is given
