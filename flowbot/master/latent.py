"""Workers on demand: when to start an instance, when it is up, and when it goes.

Each worker with a launcher has up to ``max_instances`` instances, each in one of the states of
:class:`InstanceState`; no instance, no state. After every assignment pass the dispatcher says which
requests still wait (:meth:`LatentWorkers.balance`): those that an instance already starting will
serve claim it, the others start new ones up to the limit, and starting instances nobody waits for
any more (a request cancelled, a build stopped) are stopped at once, so no start outlives its reason.

Every wait has a timeout: a start that does not connect within ``start_timeout`` fails (the
instance is removed, the worker backs off, the request waits); an instance idle for
``idle_timeout`` goes; a stop, a list of instances, each has its bound. Whatever fails to go is
found again by the sweep, which lists the instances labelled with this master and removes those it
does not own, as it does once at start for what a killed master left behind.

The component is told what happens (connected, lost, a build started or ended) and tells back
through three callables, so it can be tested with no master, sockets or processes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import zmq
from prometheus_client import Histogram
from zmq.utils import z85

from ..defaults import (
    INSTANCE_BACKOFF,
    INSTANCE_BACKOFF_MAX,
    INSTANCE_CREDENTIAL_TTL,
    INSTANCE_POLL,
    INSTANCE_STOP_TIMEOUT,
    INSTANCE_SWEEP,
    INSTANCE_UNUSED_TIMEOUT,
)
from ..errors import LaunchError
from ..launchers.base import Dial, Instance, Launcher
from ..workers import Worker
from .tasks import Spawn

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the time-to-connect histogram's buckets: a process connects in a second, a pod
#: whose image is pulled in minutes.
CONNECT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class InstanceState(StrEnum):
    """Where an instance is in its life (an instance not started has no state: it is not there)."""

    #: The launcher is starting it, or it runs and its worker has not connected yet.
    STARTING = "starting"
    #: Its worker is connected and takes builds.
    CONNECTED = "connected"
    #: It is being stopped and removed.
    STOPPING = "stopping"


@dataclass(frozen=True)
class InstanceView:
    """What the API, the CLI and the panel show of an instance."""

    name: str
    worker: str
    kind: str
    state: InstanceState
    since: float
    builds: int
    reason: str


@dataclass(eq=False)
class _Slot:
    instance: Instance
    launcher: Launcher  # the one that started it: a redefined worker's may be another
    token: str
    state: InstanceState = InstanceState.STARTING
    since: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    session: str | None = None  # the worker process that used the credential first: the only one it admits
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    timer: asyncio.TimerHandle | None = None
    builds: int = 0  # builds it was given
    running: int = 0  # builds it runs now
    draining: bool = False  # its worker left the pipeline: it goes once its builds end
    resuming: bool = False  # left by a killed master: its worker comes back with its build, for no request
    reason: str = ""


@dataclass(eq=False)
class _Pool:
    """The instances of one worker definition, by slot number (from 1)."""

    definition: Worker
    slots: dict[int, _Slot] = field(default_factory=dict)
    failures: int = 0  # failed starts in a row
    retry_at: float = 0.0  # no start before this (monotonic), after failures

    def room(self) -> int:
        """How many more instances may start now."""
        if time.monotonic() < self.retry_at:
            return 0
        return max(0, self.definition.max_instances - len(self.slots))

    def free_slot(self) -> int:
        return next(n for n in range(1, len(self.slots) + 2) if n not in self.slots)


class LatentWorkers:
    """The instances of the pipeline's workers that have a launcher.

    Args:
        master: the id that labels this master's instances (stable across its restarts).
        endpoint: where instances dial the master, unless their worker says otherwise.
        specs: the registry's table of instances it admits, by name: an instance is in it while it
            may connect, with its credential as secret.
        keys: the registry's table of CURVE public keys it admits for workers the master started.
        credential_key: the master's key that each start's credential is derived from (with the
            start's nonce, a label of the instance), so a master started again can take up the
            instances whose builds it takes up.
        master_key: the master's CURVE public key, when the link is encrypted (then each instance
            gets a key pair of its own, for that start only).
        drop: called with an instance's name and a reason when it is stopped: disconnect it if
            it is connected, and forget it.
        wake: called when an instance may take builds, or one may be started again: run an
            assignment pass.
        paused: whether a worker is paused: its instances take no new builds, and none starts.
        spawn: runs a coroutine as a task that logs its failure (the master's).
    """

    def __init__(
        self,
        *,
        master: str,
        endpoint: Callable[[], str],
        specs: dict[str, Worker],
        keys: dict[str, str],
        credential_key: Callable[[], bytes],
        master_key: Callable[[], str | None],
        drop: Callable[[str, str], None],
        wake: Callable[[], None],
        spawn: Spawn,
        paused: Callable[[str], bool] = lambda name: False,
        sweep_interval: float = INSTANCE_SWEEP,
    ):
        self.master = master
        self.endpoint = endpoint
        self.specs = specs
        self.keys = keys
        self.credential_key = credential_key
        self.master_key = master_key
        self.drop = drop
        self.wake = wake
        self.spawn = spawn
        self.paused = paused
        self.sweep_interval = sweep_interval
        self.pools: dict[str, _Pool] = {}
        self._draining: list[_Pool] = []  # pools of workers the pipeline no longer has
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._wake_timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        #: Starts asked of a launcher, starts that failed, by worker; seconds each start took to connect.
        self.starts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.connect_seconds = Histogram(
            "flowbot_instance_connect_seconds",
            "Seconds from an instance's start to its worker's connection, by worker.",
            ["worker"],
            buckets=CONNECT_BUCKETS,
            registry=None,  # /metrics collects it
        )

    # -- the pipeline's definitions -----------------------------------------------------------

    def use(self, workers: Iterable[Worker]) -> None:
        """Take the pipeline's workers (at start and at each reconfigure). Instances of a worker
        that is gone finish their builds and go; those of one redefined keep running, and new
        ones start with the new definition."""
        wanted = {w.name: w for w in workers if w.launcher is not None}
        for pool in list(self._draining):  # a worker back in the pipeline takes its instances back
            name = pool.definition.name
            if name in wanted and name not in self.pools:
                self._draining.remove(pool)
                self.pools[name] = pool
                for slot in pool.slots.values():
                    slot.draining = False
        for name, pool in list(self.pools.items()):
            if name not in wanted:
                del self.pools[name]
                self._draining.append(pool)
                for slot in list(pool.slots.values()):
                    slot.draining = True
                    if slot.state is InstanceState.STARTING or slot.running == 0:
                        self._stop(pool, slot, f"worker {name} is no longer in the pipeline")
        for name, definition in wanted.items():
            pool = self.pools.get(name)
            if pool is None:
                self.pools[name] = _Pool(definition)
            else:
                pool.definition = definition

    # -- what the dispatcher asks -------------------------------------------------------------

    def expand(self, names: Sequence[str]) -> Sequence[str]:
        """``names`` (a builder's workers) with each worker that has a launcher replaced by its
        instances that take builds now."""
        if not self.pools:
            return names
        expanded: list[str] = []
        for name in names:
            pool = self.pools.get(name)
            if pool is None:
                expanded.append(name)
                continue
            if self.paused(name):
                continue
            once = pool.definition.idle_timeout == 0
            expanded += [
                s.instance.name
                for s in pool.slots.values()
                if s.state is InstanceState.CONNECTED and not s.draining and not (once and s.builds)
            ]
        return expanded

    def balance(self, waiting: Iterable[Sequence[str]]) -> None:
        """Start and stop instances for the requests that still wait, each given by its builder's
        worker names: a request is served by an instance of one of them already starting, else
        starts one where there is room; starting instances no request needs are stopped."""
        if not self.pools:
            return
        coming = {
            name: [s for s in pool.slots.values() if s.state is InstanceState.STARTING and not s.resuming]
            for name, pool in self.pools.items()
        }
        unclaimed = {name: len(slots) for name, slots in coming.items()}
        wanted: Counter[str] = Counter()
        for names in waiting:
            latent = [n for n in names if n in self.pools and not self.paused(n)]
            if not latent:
                continue
            claimed = next((n for n in latent if unclaimed[n] > 0), None)
            if claimed is not None:
                unclaimed[claimed] -= 1
                continue
            room = next((n for n in latent if self.pools[n].room() > wanted[n]), None)
            if room is not None:
                wanted[room] += 1
        for name, pool in self.pools.items():
            for _ in range(wanted[name]):
                self._start(pool)
            # The newest starts go first: the oldest are the nearest to connecting.
            for slot in sorted(coming[name], key=lambda s: s.started, reverse=True)[: unclaimed[name]]:
                self._stop(pool, slot, "no build waits for it any more")

    # -- what the registry and the builds tell ------------------------------------------------

    def connected(self, name: str) -> None:
        """The worker of instance ``name`` connected (nothing happens for other workers)."""
        found = self._find(name)
        if found is None:
            return
        pool, slot = found
        if slot.state is not InstanceState.STARTING:
            return
        waited = time.monotonic() - slot.started
        slot.state, slot.since, slot.reason = InstanceState.CONNECTED, time.time(), ""
        slot.connected.set()
        pool.failures = 0
        self.connect_seconds.labels(pool.definition.name).observe(waited)
        log.info("instance %s connected %.1f s after its start", name, waited)
        self._idle(pool, slot)
        self.wake()

    def lost(self, name: str) -> None:
        """The worker of instance ``name`` was lost: the instance is stopped and removed."""
        found = self._find(name)
        if found is not None:
            self._stop(*found, "its worker was lost")

    def build_started(self, name: str) -> None:
        found = self._find(name)
        if found is not None:
            slot = found[1]
            slot.builds += 1
            slot.running += 1
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None

    def build_ended(self, name: str) -> None:
        found = self._find(name)
        if found is None:
            return
        pool, slot = found
        slot.running = max(0, slot.running - 1)
        if slot.running:
            return
        if slot.draining:
            self._stop(pool, slot, f"worker {pool.definition.name} is no longer in the pipeline")
        elif pool.definition.idle_timeout == 0:
            self._stop(pool, slot, "it ran its build (idle_timeout=0)")
        else:
            self._idle(pool, slot)

    # -- life and death of instances ----------------------------------------------------------

    def _start(self, pool: _Pool) -> None:
        definition = pool.definition
        slot_no = pool.free_slot()
        instance = Instance(definition.instance_name(slot_no), definition.name, self.master, secrets.token_hex(8))
        slot = pool.slots[slot_no] = self._slot(definition, instance)
        self.starts[definition.name] += 1
        log.info("starting %s %s for worker %s", slot.launcher.kind, instance.name, definition.name)
        slot.task = self._spawn(self._run_start(pool, slot), f"start {instance.name}")

    def _slot(self, definition: Worker, instance: Instance) -> _Slot:
        """A slot for ``instance``, admitted by the registry with the credential of its start (and
        its CURVE key on an encrypted link)."""
        slot = _Slot(instance, definition.launcher, self._derive("credential", instance).hex())
        self.specs[instance.name] = Worker(
            instance.name, slot.token, max_builds=definition.max_builds, properties=definition.properties
        )
        if self.master_key() is not None:
            self.keys[instance.name] = zmq.curve_public(self._curve_secret(instance)).decode()
        return slot

    def _derive(self, purpose: str, instance: Instance) -> bytes:
        message = f"{purpose}\n{instance.master}\n{instance.name}\n{instance.start}".encode()
        return hmac.digest(self.credential_key(), message, "sha256")

    def _curve_secret(self, instance: Instance) -> bytes:
        return z85.encode(self._derive("curve", instance))

    def _dial(self, definition: Worker, slot: _Slot) -> Dial:
        """What the instance needs to connect: where, its credential, and a CURVE key pair of its
        own when the link is encrypted."""
        environment = {}
        master_key = self.master_key()
        if master_key is not None:
            secret = self._curve_secret(slot.instance).decode()
            environment = {"FLOWBOT_WORKER_MASTER_KEY": master_key, "FLOWBOT_WORKER_KEY": secret}
        endpoint = definition.master_endpoint or self.endpoint()
        return Dial(endpoint, slot.instance.name, slot.token, environment)

    def claim(self, name: str, session: str) -> str | None:
        """Whether the worker process of ``session`` may connect as instance ``name``: None if it may,
        else why not. A credential is good for one worker process (it may reconnect), and only
        within :data:`~flowbot.defaults.INSTANCE_CREDENTIAL_TTL` of its start if it was never used."""
        found = self._find(name)
        if found is None or found[1].state is InstanceState.STOPPING:
            return f"instance {name} is not starting or running"
        slot = found[1]
        if slot.session is None:
            if time.monotonic() - slot.started > INSTANCE_CREDENTIAL_TTL:
                return f"its credential was not used within {INSTANCE_CREDENTIAL_TTL:g} s of its start; it has expired"
            slot.session = session
        elif slot.session != session:
            return "its credential was used already, by another worker process"
        return None

    async def _run_start(self, pool: _Pool, slot: _Slot) -> None:
        definition, instance = pool.definition, slot.instance
        dial = self._dial(definition, slot)
        try:
            async with asyncio.timeout(definition.start_timeout):
                await slot.launcher.start(instance, dial)
                await self._connection(slot)
        except TimeoutError:
            reason = f"its worker did not connect within {definition.start_timeout:g} s (start_timeout)"
        except LaunchError as exc:
            reason = str(exc)
        except Exception as exc:  # a launcher's client fails in its own ways: each is a failed start
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            slot.task = None
            return
        slot.task = None
        await self._failed(pool, slot, reason)

    async def _connection(self, slot: _Slot) -> None:
        """Wait for the instance's worker to connect; fail as soon as the instance has exited."""
        while not slot.connected.is_set():
            try:
                async with asyncio.timeout(INSTANCE_POLL):
                    await slot.connected.wait()
            except TimeoutError:
                if not await slot.launcher.alive(slot.instance):
                    raise LaunchError("it exited before its worker connected") from None

    async def _failed(self, pool: _Pool, slot: _Slot, reason: str) -> None:
        name = pool.definition.name
        self.failures[name] += 1
        pool.failures += 1
        delay = min(INSTANCE_BACKOFF_MAX, INSTANCE_BACKOFF * 2 ** (pool.failures - 1))
        pool.retry_at = time.monotonic() + delay
        try:
            async with asyncio.timeout(INSTANCE_POLL * 5):
                output = (await slot.launcher.logs(slot.instance)).strip()
        except Exception:  # what it printed is a help to the reader, not needed
            output = ""
        if output:
            reason += "; it printed:\n" + "\n".join(output.splitlines()[-10:])
        log.warning(
            "%s %s of worker %s failed to start: %s; next start in %g s or later",
            slot.launcher.kind,
            slot.instance.name,
            name,
            reason,
            delay,
        )
        self._stop(pool, slot, f"start failed: {reason}")
        self._wake_after(delay)

    def _idle(self, pool: _Pool, slot: _Slot) -> None:
        """Arm the idle timer of a connected instance that runs nothing."""
        timeout = pool.definition.idle_timeout
        if timeout < 0 or slot.running or slot.state is not InstanceState.CONNECTED:
            return
        if timeout == 0:
            timeout = INSTANCE_UNUSED_TIMEOUT
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer = asyncio.get_running_loop().call_later(
            timeout, self._stop_idle, pool, slot, f"idle for {timeout:g} s (idle_timeout)"
        )

    def _stop_idle(self, pool: _Pool, slot: _Slot, reason: str) -> None:
        slot.timer = None
        if not slot.running:
            self._stop(pool, slot, reason)

    def _stop(self, pool: _Pool, slot: _Slot, reason: str) -> None:
        """Stop ``slot``'s instance and remove it; its slot is free once it is gone."""
        if slot.state is InstanceState.STOPPING:
            return
        slot.state, slot.since, slot.reason = InstanceState.STOPPING, time.time(), reason
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        log.info("stopping %s %s: %s", slot.launcher.kind, slot.instance.name, reason)
        self.specs.pop(slot.instance.name, None)
        self.keys.pop(slot.instance.name, None)
        self.drop(slot.instance.name, reason)
        starting, slot.task = slot.task, None
        if starting is not None and starting is not asyncio.current_task():
            starting.cancel()
        slot.task = self._spawn(self._remove(pool, slot, starting), f"stop {slot.instance.name}")

    async def _remove(self, pool: _Pool, slot: _Slot, starting: asyncio.Task | None) -> None:
        try:
            if starting is not None and starting is not asyncio.current_task():
                await asyncio.wait([starting])
            async with asyncio.timeout(INSTANCE_STOP_TIMEOUT):
                await slot.launcher.stop(slot.instance)
        except Exception as exc:
            # The sweep finds it again (it is labelled with this master) and tries once more.
            log.warning("could not remove %s %s: %s; will try again", slot.launcher.kind, slot.instance.name, exc)
        finally:
            for number, other in list(pool.slots.items()):
                if other is slot:
                    del pool.slots[number]
            if not pool.slots and pool in self._draining:
                self._draining.remove(pool)
            self._changed.set()
            self.wake()

    def _wake_after(self, delay: float) -> None:
        """Wake the dispatcher once a back-off has passed, so waiting requests start instances again."""
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        self._wake_timer = asyncio.get_running_loop().call_later(delay, self.wake)

    # -- the master's start and stop; the sweep -----------------------------------------------

    async def start(self, held: Collection[str] = (), window: float = 0.0) -> None:
        """Take up the instances a previous run of this master left whose workers run ``held``
        builds (if they come back within ``window`` seconds), remove the others, then sweep regularly."""
        if held:
            for launcher in self._launchers():
                try:
                    async with asyncio.timeout(INSTANCE_STOP_TIMEOUT):
                        found = await launcher.instances(self.master)
                except Exception as exc:
                    log.warning("could not list the %ss of this master: %s", launcher.kind, exc)
                    continue
                for instance in found:
                    if instance.name in held:
                        self._take_up(instance, window)
        removed = await self.sweep()
        if removed:
            log.warning("removed %d instance(s) that a previous run of this master left behind", removed)
        self._sweeper = self._spawn(self._sweep_loop(), "instance sweep")

    def _take_up(self, instance: Instance, window: float) -> None:
        """Hold ``instance`` for its worker to come back with the build it runs."""
        pool = self.pools.get(instance.worker)
        number = instance.name.removeprefix(f"{instance.worker}-")
        if pool is None or not number.isdigit() or int(number) in pool.slots or not instance.start:
            return  # the sweep removes it
        slot = pool.slots[int(number)] = self._slot(pool.definition, instance)
        slot.reason, slot.resuming = "taken up after the master restarted", True
        log.info("waiting %g s for instance %s to come back with its build", window, instance.name)
        slot.task = self._spawn(self._come_back(pool, slot, window), f"take up {instance.name}")

    async def _come_back(self, pool: _Pool, slot: _Slot, window: float) -> None:
        try:
            async with asyncio.timeout(window):
                await slot.connected.wait()
        except TimeoutError:
            slot.task = None
            self._stop(pool, slot, f"its worker did not come back within {window:g} s of the restart")

    async def sweep(self) -> int:
        """Remove the instances labelled with this master that it does not own; how many there were."""
        owned = {s.instance.name for p in self._all_pools() for s in p.slots.values()}
        removed = 0
        for launcher in self._launchers():
            try:
                async with asyncio.timeout(INSTANCE_STOP_TIMEOUT):
                    found = await launcher.instances(self.master)
                    strays = [i for i in found if i.name not in owned]
                    for instance in strays:
                        log.info("removing %s %s: this master does not own it", launcher.kind, instance.name)
                    results = await asyncio.gather(*(launcher.stop(i) for i in strays), return_exceptions=True)
            except Exception as exc:
                log.warning("could not list or remove the %ss of this master: %s", launcher.kind, exc)
                continue
            for instance, result in zip(strays, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("could not remove %s %s: %s", launcher.kind, instance.name, result)
                else:
                    removed += 1
        return removed

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            await self.sweep()

    async def stop(self) -> None:
        """Stop every instance and wait (bounded) until they are gone; close the launchers."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        for pool in self._all_pools():
            for slot in list(pool.slots.values()):
                self._stop(pool, slot, "the master is shutting down")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=INSTANCE_STOP_TIMEOUT + 1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for launcher in self._launchers():
            try:
                await launcher.close()
            except Exception as exc:
                log.warning("could not close the %s launcher: %s", launcher.kind, exc)

    async def settled(self, timeout: float | None = None) -> None:
        """Wait until no instance is left (for tests and benchmarks).

        Raises:
            TimeoutError: some are still there after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while any(p.slots for p in self._all_pools()):
                self._changed.clear()
                await self._changed.wait()

    # -- what there is ------------------------------------------------------------------------

    def views(self) -> list[InstanceView]:
        """Every instance there is, by worker and name."""
        return sorted(
            (
                InstanceView(
                    s.instance.name,
                    p.definition.name,
                    s.launcher.kind,
                    s.state,
                    s.since,
                    s.builds,
                    s.reason,
                )
                for p in self._all_pools()
                for s in p.slots.values()
            ),
            key=lambda v: (v.worker, v.name),
        )

    def _find(self, name: str) -> tuple[_Pool, _Slot] | None:
        for pool in self._all_pools():
            for slot in pool.slots.values():
                if slot.instance.name == name:
                    return pool, slot
        return None

    def _all_pools(self) -> list[_Pool]:
        return [*self.pools.values(), *self._draining]

    def _launchers(self) -> list[Launcher]:
        """One launcher per place instances run (two that list the same instances count once)."""
        seen: dict[Hashable, Launcher] = {}
        for pool in self._all_pools():
            for launcher in (pool.definition.launcher, *(s.launcher for s in pool.slots.values())):
                seen.setdefault(launcher.scope, launcher)
        return list(seen.values())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        task = self.spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
