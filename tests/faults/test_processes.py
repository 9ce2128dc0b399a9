"""A trial of each fault of a process, a link or the database: nothing accepted lost, nothing run
twice, every log whole or saying what it lacks, and the master building again."""

from __future__ import annotations

import zlib

import pytest

from .catalogue import FAULTS
from .trial import Outcome, Resources, run_trial

#: A trial starts a master and three workers, and waits for the fault to pass.
pytestmark = pytest.mark.timeout(300)


def _try(name: str, db: str, tmp_path, resources: Resources) -> Outcome:
    outcome = run_trial(FAULTS[name], db, tmp_path, resources, seed=zlib.crc32(tmp_path.name.encode()))
    assert outcome.accepted >= 3, outcome
    return outcome


def test_a_link_held_for_less_than_the_window_loses_nothing(tmp_path):
    outcome = _try("blip-short", "sqlite", tmp_path, Resources())
    assert outcome.clean, outcome


@pytest.mark.parametrize("name", ["worker-kill", "worker-stop", "blip-long"])
def test_a_worker_killed_or_silent_for_longer_than_the_window_loses_nothing(name, tmp_path):
    # A worker killed just after a step's command ended reports the result from its journal once
    # started again, and its build goes on: the step does not run again.
    outcome = _try(name, "sqlite", tmp_path, Resources())
    assert outcome.clean, outcome


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_master_killed_under_load_loses_nothing_once_started_again(db, tmp_path, request):
    postgres = request.getfixturevalue("own_postgres") if db == "postgresql" else None
    # A build killed between two steps, or as a step's result came, goes on at its restart: a
    # step's command goes out only once the step's start is stored, and a build recorded between
    # two steps goes on with the next one.
    outcome = _try("master-kill", db, tmp_path, Resources(postgres=postgres))
    assert outcome.clean, outcome


@pytest.mark.parametrize("name", ["postgres-restart", "postgres-stop"])
def test_postgresql_going_away_mid_build_loses_nothing(name, tmp_path, stoppable_postgres):
    outcome = _try(name, "postgresql", tmp_path, Resources(postgres=stoppable_postgres))
    assert outcome.clean, outcome


def test_sqlite_on_a_full_filesystem_loses_nothing(tmp_path, small_disk):
    outcome = _try("full-disk", "sqlite", tmp_path, Resources(mount=small_disk))
    assert outcome.clean, outcome
