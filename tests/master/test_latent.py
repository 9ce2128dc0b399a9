"""The life of workers started on demand, without processes: a launcher that records what it is asked,
and the registry's and the builds' news told by hand."""

from __future__ import annotations

import asyncio

import pytest

from flowbot import Worker
from flowbot.launchers import Dial, Instance, Launcher
from flowbot.master import latent as latent_module
from flowbot.master.latent import InstanceState, LatentWorkers
from flowbot.master.tasks import Tasks

from ..support import wait_for_async

MASTER = "m" * 16


class RecordingLauncher(Launcher):
    """Starts nothing; keeps what it was asked, can be told to hang, fail, or let instances die."""

    kind = "test instance"

    def __init__(self) -> None:
        self.running: dict[str, Instance] = {}
        self.dials: dict[str, Dial] = {}
        self.stopped: list[str] = []
        self.hang = False  # start never returns
        self.fail: str | None = None  # start raises this
        self.fail_stop = False
        self.dead: set[str] = set()  # started, then exited

    async def start(self, instance: Instance, dial: Dial) -> None:
        self.running[instance.name] = instance  # made before it runs, as a container is
        self.dials[instance.name] = dial
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise RuntimeError(self.fail)

    async def alive(self, instance: Instance) -> bool:
        return instance.name in self.running and instance.name not in self.dead

    async def stop(self, instance: Instance) -> None:
        if self.fail_stop:
            raise RuntimeError("the daemon is away")
        self.running.pop(instance.name, None)
        self.stopped.append(instance.name)

    async def instances(self, master: str) -> list[Instance]:
        return [i for i in self.running.values() if i.master == master]

    async def logs(self, instance: Instance) -> str:
        return "worker: cannot reach the master\n"


class Harness:
    """A LatentWorkers with its callables recorded."""

    def __init__(self, *workers: Worker):
        self.specs: dict[str, Worker] = {}
        self.dropped: list[str] = []
        self.wakes = 0
        self.paused: set[str] = set()
        self.latent = LatentWorkers(
            master=MASTER,
            endpoint=lambda: "tcp://127.0.0.1:5555",
            specs=self.specs,
            keys={},
            credential_key=lambda: b"k" * 32,
            master_key=lambda: None,
            drop=lambda name, reason: self.dropped.append(name),
            wake=self._wake,
            spawn=Tasks().spawn,
            paused=lambda name: name in self.paused,
        )
        self.latent.use(workers)

    def _wake(self) -> None:
        self.wakes += 1

    def states(self) -> dict[str, InstanceState]:
        return {v.name: v.state for v in self.latent.views()}

    async def connect(self, name: str) -> None:
        launcher = self.latent.pools[name.rsplit("-", 1)[0]].definition.launcher
        await wait_for_async(lambda: name in launcher.running, 5, f"{name} to be started")
        self.latent.connected(name)


@pytest.fixture
async def launcher():
    return RecordingLauncher()


async def test_each_waiting_request_starts_one_instance_up_to_max_instances(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, max_instances=2))

    # Three requests wait for d: two instances start (the limit), with a credential each
    h.latent.balance([["d"], ["d"], ["d"]])
    assert h.states() == {"d-1": InstanceState.STARTING, "d-2": InstanceState.STARTING}
    await wait_for_async(lambda: len(launcher.running) == 2, 5, "two starts")
    assert h.specs["d-1"].secret != h.specs["d-2"].secret
    assert launcher.dials["d-1"].secret == h.specs["d-1"].secret
    assert launcher.dials["d-1"].endpoint == "tcp://127.0.0.1:5555"
    labels = launcher.running["d-1"].labels
    assert labels == {
        "flowbot-master": MASTER,
        "flowbot-worker": "d",
        "flowbot-instance": "d-1",
        "flowbot-start": labels["flowbot-start"],  # a nonce per start
    }
    assert len({launcher.running[n].labels["flowbot-start"] for n in ("d-1", "d-2")}) == 2

    # The same requests still waiting start nothing more: the instances starting are theirs
    h.latent.balance([["d"], ["d"], ["d"]])
    assert len(h.states()) == 2
    assert h.latent.starts["d"] == 2

    # Connected, an instance takes builds in place of its worker's name; the others stay as they are
    await h.connect("d-1")
    assert h.states()["d-1"] == InstanceState.CONNECTED
    assert h.latent.expand(["static", "d"]) == ["static", "d-1"]
    assert h.wakes >= 1
    await h.latent.stop()


async def test_with_idle_timeout_0_an_instance_runs_one_build_and_is_removed(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, idle_timeout=0))
    h.latent.balance([["d"]])
    await h.connect("d-1")

    h.latent.build_started("d-1")
    assert h.latent.expand(["d"]) == []  # its one build is taken: nothing more goes to it
    h.latent.build_ended("d-1")

    await wait_for_async(lambda: not h.states(), 5, "the instance to go")
    assert launcher.stopped == ["d-1"]
    assert h.dropped == ["d-1"]
    assert "d-1" not in h.specs  # its credential is no longer accepted
    await h.latent.stop()


async def test_a_start_that_never_connects_fails_at_start_timeout_and_leaves_nothing(launcher, monkeypatch) -> None:
    monkeypatch.setattr(latent_module, "INSTANCE_BACKOFF", 0.5)
    h = Harness(Worker("d", launcher=launcher, start_timeout=0.3))

    h.latent.balance([["d"]])
    await wait_for_async(lambda: not h.states(), 5, "the failed start to be removed")

    assert launcher.stopped == ["d-1"]
    assert not launcher.running
    assert h.latent.failures["d"] == 1
    # It backs off: the request still waiting starts nothing for now ...
    h.latent.balance([["d"]])
    assert not h.states()
    # ... and the dispatcher is woken when it may start again
    wakes = h.wakes
    await wait_for_async(lambda: h.wakes > wakes, 5, "the wake after the back-off")
    h.latent.balance([["d"]])
    assert h.states() == {"d-1": InstanceState.STARTING}
    await h.latent.stop()


async def test_an_instance_that_exits_before_connecting_fails_without_waiting_for_start_timeout(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, start_timeout=60))
    h.latent.balance([["d"]])
    await wait_for_async(lambda: "d-1" in launcher.running, 5, "the start")

    launcher.dead.add("d-1")

    await wait_for_async(lambda: not h.states(), 5, "the failed start to be removed")
    assert h.latent.failures["d"] == 1
    assert launcher.stopped == ["d-1"]
    await h.latent.stop()


async def test_a_launcher_that_fails_says_why_and_its_start_is_removed(launcher, caplog) -> None:
    launcher.fail = "image flowbot-worker:none not found"
    h = Harness(Worker("d", launcher=launcher))

    h.latent.balance([["d"]])

    await wait_for_async(lambda: not h.states(), 5, "the failed start to be removed")
    assert "image flowbot-worker:none not found" in caplog.text
    assert "cannot reach the master" in caplog.text  # what it printed, for whoever reads the log
    assert launcher.stopped == ["d-1"]
    await h.latent.stop()


async def test_a_request_no_longer_waiting_stops_the_start_made_for_it(launcher) -> None:
    launcher.hang = True
    h = Harness(Worker("d", launcher=launcher, max_instances=3))
    h.latent.balance([["d"], ["d"]])
    await wait_for_async(lambda: len(launcher.running) == 2, 5, "two starts under way")

    # One of the two requests is cancelled (or its build stopped): one start is stopped, mid-way
    h.latent.balance([["d"]])
    await wait_for_async(lambda: len(h.states()) == 1, 5, "one start to be stopped")
    assert len(launcher.stopped) == 1
    assert len(launcher.running) == 1

    # The other is cancelled too: nothing is left
    h.latent.balance([])
    await wait_for_async(lambda: not h.states(), 5, "the other start to be stopped")
    assert not launcher.running
    assert h.latent.failures["d"] == 0  # a start nobody needs is no failure
    await h.latent.stop()


async def test_an_idle_instance_goes_after_idle_timeout_and_a_build_holds_it(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, idle_timeout=0.3))
    h.latent.balance([["d"]])
    await h.connect("d-1")

    h.latent.build_started("d-1")
    await asyncio.sleep(0.5)
    assert h.states() == {"d-1": InstanceState.CONNECTED}  # busy: the idle timer does not run
    h.latent.build_ended("d-1")
    assert h.latent.expand(["d"]) == ["d-1"]  # it takes another build meanwhile

    await wait_for_async(lambda: not h.states(), 5, "the idle instance to go")
    assert launcher.stopped == ["d-1"]
    await h.latent.stop()


async def test_with_a_negative_idle_timeout_an_instance_stays_until_the_master_stops(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, idle_timeout=-1))
    h.latent.balance([["d"]])
    await h.connect("d-1")
    h.latent.build_started("d-1")
    h.latent.build_ended("d-1")
    await asyncio.sleep(0.3)
    assert h.states() == {"d-1": InstanceState.CONNECTED}

    await h.latent.stop()
    assert launcher.stopped == ["d-1"]


async def test_an_instance_whose_worker_is_lost_is_removed(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, idle_timeout=-1))
    h.latent.balance([["d"]])
    await h.connect("d-1")

    h.latent.lost("d-1")

    await wait_for_async(lambda: not h.states(), 5, "the instance to go")
    assert launcher.stopped == ["d-1"]
    await h.latent.stop()


async def test_the_start_removes_instances_of_this_master_left_behind_and_no_others(launcher) -> None:
    mine = Instance("d-1", "d", MASTER)
    gone = Instance("old-1", "old", MASTER)  # a worker the pipeline no longer has
    other = Instance("d-1", "d", "another master")
    for instance in (mine, gone, other):
        launcher.running[f"{instance.master}/{instance.name}"] = instance
    h = Harness(Worker("d", launcher=launcher))

    await h.latent.start()

    assert sorted(launcher.stopped) == ["d-1", "old-1"]
    await h.latent.stop()


async def test_an_instance_that_could_not_be_removed_is_removed_by_the_next_sweep(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher))
    h.latent.balance([["d"]])
    await h.connect("d-1")
    launcher.fail_stop = True
    h.latent.build_started("d-1")
    h.latent.build_ended("d-1")
    await wait_for_async(lambda: not h.states(), 5, "the slot to be freed")
    assert "d-1" in launcher.running  # the daemon was away: it is still there

    launcher.fail_stop = False
    assert await h.latent.sweep() == 1

    assert not launcher.running
    await h.latent.stop()


async def test_a_worker_removed_from_the_pipeline_lets_its_instances_finish_their_builds(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, max_instances=2, idle_timeout=-1))
    h.latent.balance([["d"], ["d"]])
    await h.connect("d-1")
    await h.connect("d-2")
    h.latent.build_started("d-1")

    h.latent.use([])

    await wait_for_async(lambda: list(h.states()) == ["d-1"], 5, "the idle instance to go")
    assert h.latent.expand(["d"]) == ["d"]  # not a worker with a launcher any more
    h.latent.build_ended("d-1")
    await wait_for_async(lambda: not h.states(), 5, "the busy instance to go after its build")
    assert sorted(launcher.stopped) == ["d-1", "d-2"]
    await h.latent.stop()


async def test_a_request_any_of_two_workers_can_run_claims_one_start_only(launcher) -> None:
    h = Harness(Worker("a", launcher=launcher), Worker("b", launcher=launcher))

    h.latent.balance([["a", "b"]])
    h.latent.balance([["a", "b"]])

    assert h.states() == {"a-1": InstanceState.STARTING}
    await h.latent.stop()


async def test_the_master_stopping_stops_instances_starting_and_connected(launcher) -> None:
    launcher.hang = True
    h = Harness(Worker("d", launcher=launcher, max_instances=2, idle_timeout=-1))
    h.latent.balance([["d"]])
    await wait_for_async(lambda: "d-1" in launcher.running, 5, "a start under way")
    launcher.hang = False
    h.latent.balance([["d"], ["d"]])
    await h.connect("d-2")

    await h.latent.stop()

    assert not h.states()
    assert sorted(launcher.stopped) == ["d-1", "d-2"]


async def test_a_credential_is_good_for_the_first_worker_process_that_uses_it_and_no_other(
    launcher, monkeypatch
) -> None:
    h = Harness(Worker("d", launcher=launcher, max_instances=2, idle_timeout=-1))
    h.latent.balance([["d"], ["d"]])
    await wait_for_async(lambda: len(launcher.running) == 2, 5, "two starts")

    assert h.latent.claim("d-1", "session-a") is None  # the instance's worker
    assert h.latent.claim("d-1", "session-a") is None  # ... reconnecting
    assert "used already, by another worker process" in h.latent.claim("d-1", "session-b")
    assert "not starting or running" in h.latent.claim("d-9", "session-a")

    # A credential nobody used within its time expires
    monkeypatch.setattr(latent_module, "INSTANCE_CREDENTIAL_TTL", 0.0)
    assert "has expired" in h.latent.claim("d-2", "session-c")
    await h.latent.stop()


async def test_a_paused_worker_starts_no_instance_and_its_instances_take_no_builds(launcher) -> None:
    h = Harness(Worker("d", launcher=launcher, max_instances=2, idle_timeout=-1))
    h.latent.balance([["d"]])
    await h.connect("d-1")

    h.paused.add("d")

    assert h.latent.expand(["d"]) == []
    h.latent.balance([["d"], ["d"]])
    assert list(h.states()) == ["d-1"]
    h.paused.clear()
    assert h.latent.expand(["d"]) == ["d-1"]
    await h.latent.stop()


async def test_a_restarted_master_takes_up_the_instances_whose_builds_it_holds_and_removes_the_others(
    launcher,
) -> None:
    # Given instances a killed master left: one running a build it holds, one that comes back too late, one idle
    left = [Instance(f"d-{n}", "d", MASTER, f"nonce{n}") for n in (1, 2, 3)]
    for instance in left:
        launcher.running[instance.name] = instance
    h = Harness(Worker("d", launcher=launcher, max_instances=3, idle_timeout=0))

    # When the master starts again, holding the builds of d-1 and d-2
    await h.latent.start({"d-1", "d-2"}, window=0.5)

    # Then it waits for those two with the credentials of their starts (no request needs them), and removes the idle one
    assert h.states() == {"d-1": InstanceState.STARTING, "d-2": InstanceState.STARTING}
    assert launcher.stopped == ["d-3"]
    twin = Harness(Worker("d", launcher=RecordingLauncher()))
    assert h.specs["d-1"].secret == twin.latent._slot(twin.latent.pools["d"].definition, left[0]).token
    h.latent.balance([])
    assert len(h.states()) == 2
    h.latent.build_started("d-1")  # taken up, before its worker is welcomed
    h.latent.connected("d-1")
    await wait_for_async(lambda: "d-2" in launcher.stopped, 5, "d-2 to be removed after the window")
    assert h.states() == {"d-1": InstanceState.CONNECTED}
    assert h.latent.failures["d"] == 0

    # ... and d-1 goes, as its worker says, once its build is done
    h.latent.build_ended("d-1")
    await wait_for_async(lambda: not h.states(), 5, "d-1 to go after its build")
    await h.latent.stop()
