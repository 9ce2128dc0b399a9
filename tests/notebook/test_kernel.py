"""A master with local workers inside a real Jupyter kernel, interrupted or killed as users do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.manager import start_new_kernel

SETUP = """
import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="k"), Worker("w2", secret="k")],
    schedulers=[ForceScheduler("force", builders=["b"])],
    builders=[Builder("b", workers=["w1", "w2"], steps=[Shell("echo built")])],
)
master = flowbot.Master(pipeline, db="sqlite:///k.sqlite")
await master.start()
await master.start_local_workers()
print(" ".join(str(p.pid) for p in master.local_workers.processes.values()))
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A real ipykernel in ``tmp_path``; shut down (killed) at teardown."""
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    yield manager, client
    client.stop_channels()
    if manager.is_alive():
        manager.shutdown_kernel(now=True)


def execute(client: BlockingKernelClient, code: str, timeout: float = 60) -> str:
    """Run a cell that must succeed; what it printed."""
    printed: list[str] = []
    reply = client.execute_interactive(
        code,
        timeout=timeout,
        output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed)


def test_interrupting_a_cell_leaves_the_local_workers_running(kernel):
    # Given a kernel running a master with two local workers, busy in a long cell
    manager, client = kernel
    printed = execute(client, SETUP)
    pids = [int(pid) for pid in printed.split()]
    msg_id = client.execute('import time\nprint("sleeping", flush=True)\ntime.sleep(60)')
    while client.get_iopub_msg(timeout=30)["content"].get("text") != "sleeping\n":
        pass

    # When the user interrupts it (Jupyter signals the kernel's whole process group)
    manager.interrupt_kernel()
    reply = client.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"

    # Then the workers still run, and the next cell's build runs on them
    printed = execute(
        client,
        'await master.force("b")\nawait master.wait_idle(timeout=30)\n'
        'print([b["result"] for b in await master.store.builds()], sorted(master.registry.connections))',
    )
    assert printed.strip() == "['SUCCESS'] ['w1', 'w2']"
    assert all(_running(pid) for pid in pids)


def test_a_killed_kernel_leaves_no_worker_processes_behind(kernel):
    # Given a kernel running a master with two local workers
    manager, client = kernel
    printed = execute(client, SETUP)
    pids = [int(pid) for pid in printed.split()]
    assert len(pids) == 2 and all(_running(pid) for pid in pids)

    # When it is killed outright
    manager.shutdown_kernel(now=True)

    # Then its workers notice and go away on their own
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
