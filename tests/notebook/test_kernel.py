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
        "print([b.result.name for b in await master.store.builds.query()], sorted(master.registry.connections))",
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


def run_cell(client: BlockingKernelClient, code: str, timeout: float = 60) -> tuple[dict, list[dict]]:
    """Run a cell; its reply's content and the messages it sent to the notebook (outputs, displays, errors)."""
    sent: list[dict] = []
    reply = client.execute_interactive(code, timeout=timeout, output_hook=sent.append)
    return reply["content"], sent


def test_running_a_pipeline_cell_again_shows_what_changes_then_applies_it(kernel):
    # Given a kernel running a master with a pipeline cell
    _, client = kernel
    execute(client, SETUP)

    # When a cell hands the master another pipeline as a dry run, then for real
    cell = """
pipeline = Pipeline(
    workers=[Worker("w1", secret="k"), Worker("w2", secret="k")],
    schedulers=[ForceScheduler("force", builders=["b"])],
    builders=[Builder("b", workers=["w1"], steps=[Shell("echo built again", name="again")])],
    master=master,{dry_run}
)
"""
    reply, dry = run_cell(client, cell.format(dry_run=" dry_run=True,"))
    assert reply["status"] == "ok"
    reply, real = run_cell(client, cell.format(dry_run="") + "await master.wait_idle(timeout=30)")
    assert reply["status"] == "ok"

    # Then each shows, in the cell, what changes field by field; the dry run applies nothing
    (shown,) = [m["content"]["data"]["text/html"] for m in dry if m["msg_type"] == "display_data"]
    assert "not applied (dry run)" in shown and "workers" in shown and "again" in shown
    displays = [m for m in real if m["msg_type"] in ("display_data", "update_display_data")]
    assert [m["msg_type"] for m in displays] == ["display_data", "update_display_data"]
    assert "applying" in displays[0]["content"]["data"]["text/html"]
    assert "applied" in displays[1]["content"]["data"]["text/plain"]
    printed = execute(client, "print(master.pipeline.builders[0].step_names)")
    assert printed.strip() == "['again']"


def test_a_mistake_in_a_pipeline_cell_is_named_by_the_cell(kernel):
    _, client = kernel
    execute(client, "from flowbot import Builder, Pipeline, Shell, Worker")
    reply, _ = run_cell(
        client,
        'Pipeline(\n    workers=[Worker("w1", secret="k")],\n'
        '    builders=[Builder("b", workers=["nobody"], steps=[Shell("true")])],\n)',
    )
    assert reply["status"] == "error" and reply["ename"] == "ConfigErrors"
    assert reply["evalue"].startswith("cell In[2]:3: builder 'b' names worker 'nobody'"), reply["evalue"]
    assert "ipykernel_" not in reply["evalue"]
