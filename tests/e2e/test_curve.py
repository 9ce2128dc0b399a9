"""An encrypted worker link (CURVE): only the workers whose public keys the pipeline declares get in.

Real masters (``flowbot start``) and real ``flowbot-worker`` processes, with keys made the way a
user makes them; each refusal is checked on both ends, since ZeroMQ itself says nothing about it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flowbot_worker.curve import KeyPair, create_key, load_key_pair

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.cli.run import reconfig
from flowbot.record_json import build_json

from ..support import finished_builds, step_log, wait_for

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1", public_key={w1!r}), Worker("w2", secret="s2", public_key={w2!r})],
    schedulers=[ForceScheduler("force", builders=["b"])],
    builders=[Builder("b", workers=["w1"], steps=[Shell("echo built on $FLOWBOT_WORKER", name="say")])],
    curve_key={curve_key!r},
)
"""


class Keys:
    """Key pairs made as a user makes them: the master's in its directory, the workers' elsewhere."""

    def __init__(self, tmp_path: Path):
        self.master_dir = tmp_path / "master"
        self.worker_dir = tmp_path / "keys"
        create_key(self.master_dir, "master")
        self.master = load_key_pair(self.master_dir / "master.key_secret")

    def worker(self, name: str) -> KeyPair:
        create_key(self.worker_dir, name)
        return load_key_pair(self.worker_dir / f"{name}.key_secret")

    def env(self, name: str, master_key: str | None = None) -> dict[str, str]:
        """The environment that makes ``flowbot-worker`` encrypt with key pair ``name``."""
        return {
            "FLOWBOT_WORKER_MASTER_KEY": master_key or str(self.master_dir / "master.key"),
            "FLOWBOT_WORKER_KEY_FILE": str(self.worker_dir / f"{name}.key_secret"),
        }

    def pipeline(self, w1: str | None, w2: str | None, curve: bool = True) -> str:
        return PIPELINE.format(w1=w1, w2=w2, curve_key="master.key_secret" if curve else None)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def _connected(master, name: str) -> bool:
    return any(w["name"] == name and w["connected"] for w in master.client.workers())


def test_a_declared_worker_builds_over_the_encrypted_link(keys, master_factory, worker_factory):
    # Given a master with a key pair, and w1 declared with its public key
    w1 = keys.worker("w1")
    master = master_factory(keys.pipeline(w1.public, keys.worker("w2").public))
    assert "(encrypted: CURVE)" in master.log()

    # When w1 connects holding that key, and a build is forced
    worker_factory(master, "w1", "s1", env=keys.env("w1"))
    master.client.force("b")

    # Then the build runs on it
    (build,) = finished_builds(master.client, 1)
    assert (build["result"], build["worker"]) == ("SUCCESS", "w1")
    assert "built on w1" in step_log(master.client, build["id"], 0)


def test_a_worker_with_an_undeclared_key_is_refused_and_gets_no_build(keys, master_factory, worker_factory):
    # Given an encrypted master, and a build waiting for w1
    master = master_factory(keys.pipeline(keys.worker("w1").public, keys.worker("w2").public))
    master.client.force("b")

    # When a worker calling itself w1, with w1's secret but a key of its own, connects
    intruder = keys.worker("intruder")
    stranger = worker_factory(master, "w1", "s1", wait=False, env=keys.env("intruder"))

    # Then the handshake refuses it, and both sides say why
    wait_for(lambda: "refused this worker's CURVE key" in stranger.log(), 20, "the worker to say it was refused")
    assert f"public_key={intruder.public!r}" in stranger.log()
    wait_for(
        lambda: (
            f"refused a connection with CURVE key {intruder.public}: no worker in the pipeline has it" in master.log()
        ),
        10,
        "the master to log the refused key",
    )
    # And the build does not run on it
    time.sleep(1.0)
    assert not _connected(master, "w1")
    assert master.client.builds() == []

    # Until the real w1 comes, which runs it
    worker_factory(master, "w1", "s1", env=keys.env("w1"))
    (build,) = finished_builds(master.client, 1)
    assert (build["result"], build["worker"]) == ("SUCCESS", "w1")


def test_a_worker_cannot_pose_as_another_with_its_own_declared_key(keys, master_factory, worker_factory):
    # Given w1 and w2 declared with their own keys
    master = master_factory(keys.pipeline(keys.worker("w1").public, keys.worker("w2").public))

    # When a process holding w2's key says hello as w1, signing with w1's secret
    w2 = load_key_pair(keys.worker_dir / "w2.key_secret")
    poser = worker_factory(master, "w1", "s1", wait=False, env=keys.env("w2"))

    # Then the master refuses that hello, and says why on both ends
    reason = f"its CURVE key {w2.public} is not the public_key the pipeline declares for it"
    wait_for(lambda: f"the master refused this worker: {reason}" in poser.log(), 20, "the worker to hear why")
    assert f"refused worker 'w1': {reason}" in master.log()
    assert not _connected(master, "w1")


@pytest.mark.parametrize(
    ("encrypted_master", "worker_keys", "said"),
    [
        (True, None, "give --master-key and --key-file"),
        (True, "wrong master key", "is --master-key the master's public key?"),
        (False, "w1", "the master does not encrypt the link"),
    ],
)
def test_a_worker_whose_handshake_fails_says_what_to_fix(
    keys, master_factory, worker_factory, encrypted_master, worker_keys, said
):
    # Given a master that encrypts the link, or one that does not
    w1 = keys.worker("w1")
    master = master_factory(keys.pipeline(w1.public if encrypted_master else None, None, curve=encrypted_master))

    # When w1 comes without keys, with a wrong master key, or with keys to a master that has none
    env = {}
    if worker_keys == "wrong master key":
        env = keys.env("w1", master_key=w1.public)
    elif worker_keys:
        env = keys.env(worker_keys)
    worker = worker_factory(master, "w1", "s1", wait=False, env=env)

    # Then it says, at once, what is wrong
    wait_for(lambda: said in worker.log(), 20, f"the worker to say {said!r}")
    assert not _connected(master, "w1")


def test_a_reconfig_that_changes_a_workers_key_drops_it_and_admits_the_new_key(keys, master_factory, worker_factory):
    # Given w1 connected with its key
    old, w2 = keys.worker("w1"), keys.worker("w2").public
    master = master_factory(keys.pipeline(old.public, w2))
    first = worker_factory(master, "w1", "s1", env=keys.env("w1"))

    # When a reconfig declares another key for w1
    new = keys.worker("w1-new")
    (master.basedir / "pipeline.py").write_text(keys.pipeline(new.public, w2))
    reconfig(master.basedir)

    # Then the worker holding the old key is dropped, and refused when it comes back
    wait_for(lambda: "the pipeline's public_key for this worker changed" in first.log(), 20, "w1 to be dropped")
    wait_for(lambda: "refused this worker's CURVE key" in first.log(), 20, "w1 to be refused on reconnecting")
    assert "worker w1 lost: its CURVE public key changed" in master.log()
    assert f"refused a connection with CURVE key {old.public}" in master.log()
    assert not _connected(master, "w1")

    # And a worker holding the new key connects and builds
    first.stop()
    worker_factory(master, "w1", "s1", env=keys.env("w1-new"))
    master.client.force("b")
    (build,) = finished_builds(master.client, 1)
    assert (build["result"], build["worker"]) == ("SUCCESS", "w1")


async def test_local_workers_of_an_encrypted_master_get_keys_and_build(keys, tmp_path):
    # Given an embedded master with a key pair, and workers without declared keys
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("echo local")])],
        curve_key=keys.master_dir / "master.key_secret",
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    try:
        # When it starts its own workers
        await master.start_local_workers()

        # Then they connect over the encrypted link, each with a key the master made for it
        connection = master.registry.connections["w1"]
        assert connection.key == master.registry.local_keys["w1"]
        assert (master.workdir / "workers" / "w1.key_secret").stat().st_mode & 0o077 == 0
        # And build
        await master.force("b")
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="b")]
        assert build["result"] == "SUCCESS"
    finally:
        await master.stop()
