"""Matrix builds end to end: a real master, real workers, one build per cell, grouped as one matrix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flowbot.client import Client

from ..support import step_log, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"

#: The README's matrix pipeline, exactly as written there.
PYTHON_BY_OS = next(
    block
    for block in re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    if "matrix=Matrix(" in block
)


def finished_matrix(client: Client, matrix_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until every cell of the matrix is complete, and return it."""

    def done() -> dict[str, Any] | None:
        matrix = client.request("GET", f"/api/matrices/{matrix_id}")
        return matrix if matrix["complete"] else None

    return wait_for(done, timeout, f"matrix {matrix_id} to complete")


def only_matrix(client: Client, builder: str) -> int:
    matrices = wait_for(lambda: client.request("GET", f"/api/matrices?builder={builder}")["matrices"])
    assert len(matrices) == 1
    return matrices[0]["id"]


def test_the_readmes_matrix_builds_each_cell_once_with_its_values_on_a_worker_that_agrees(
    master_factory, worker_factory
):
    # Given the README's python x os matrix, one linux and one mac worker
    master = master_factory(PYTHON_BY_OS)
    worker_factory(master, "penguin", "s")
    worker_factory(master, "apple", "s")

    # When it is forced once
    request_ids = master.client.force("test")

    # Then one request per cell makes one matrix, whose cells all pass
    assert len(request_ids) == 6
    matrix = finished_matrix(master.client, only_matrix(master.client, "test"))
    assert matrix["axes"] == {"python": ["3.11", "3.12", "3.13", "3.14"], "os": ["linux", "mac"]}
    assert matrix["result"] == "SUCCESS" and matrix["counts"] == {"SUCCESS": 6} and matrix["size"] == 6
    assert matrix["fail_fast"] is True
    cells = [(c["values"]["python"], c["values"]["os"]) for c in matrix["cells"]]
    assert cells == [
        ("3.11", "linux"),
        ("3.12", "linux"),
        ("3.12", "mac"),
        ("3.13", "linux"),
        ("3.13", "mac"),
        ("3.14", "linux"),
    ]
    # Each build ran its own cell, with the cell's values as properties, on a worker of its os
    worker_of = {"linux": "penguin", "mac": "apple"}
    for cell in matrix["cells"]:
        python, os_name = cell["values"]["python"], cell["values"]["os"]
        build = master.client.request("GET", f"/api/builds/{cell['build_id']}")
        assert build["matrix_id"] == matrix["id"]
        assert build["worker"] == worker_of[os_name]
        assert build["properties"]["python"] == [python, "Matrix"]
        assert f"python={python} os={os_name} on {worker_of[os_name]}" in step_log(master.client, build["id"], 0)


def test_fail_fast_cancels_the_cells_waiting_and_stops_those_running(master_factory, worker_factory, tmp_path):
    # Given a fail-fast matrix on two workers: the first cell fails once the second is running (long)
    started = tmp_path / "slow-started"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, Matrix
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
            schedulers=[ForceScheduler("force", builders=["test"])],
            builders=[
                Builder("test", workers=["w1", "w2"], steps=[
                    Shell(Interpolate("case %(prop:job)s in "
                                      "fail) until [ -e {started} ]; do sleep 0.1; done; exit 1;; "
                                      "slow) touch {started}; sleep 120;; esac")),
                ], matrix=Matrix(axes={{"job": ["fail", "slow", "a", "b", "c"]}}, fail_fast=True)),
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")

    # When it is forced
    master.client.force("test")

    # Then the failing cell fails, the running one is stopped, and the waiting ones never start
    matrix = finished_matrix(master.client, only_matrix(master.client, "test"))
    results = {c["values"]["job"]: c["result"] for c in matrix["cells"]}
    assert results == {"fail": "FAILURE", "slow": "CANCELLED", "a": "CANCELLED", "b": "CANCELLED", "c": "CANCELLED"}
    assert [c["build_id"] is None for c in matrix["cells"]] == [False, False, True, True, True]
    assert matrix["result"] == "CANCELLED"
    slow = master.client.request("GET", f"/api/builds/{matrix['cells'][1]['build_id']}")
    assert "fail_fast: matrix cell job=fail ended FAILURE" in slow["summary"]


def test_without_fail_fast_every_cell_runs_and_the_matrix_takes_the_worst_result(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, Matrix
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["test"])],
            builders=[
                Builder("test", workers=["w1"], steps=[Shell(Interpolate("test %(prop:n)s != 2"), name="check")],
                        matrix=Matrix(axes={"n": [1, 2, 3]})),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    master.client.force("test")

    matrix = finished_matrix(master.client, only_matrix(master.client, "test"))
    assert [(c["values"]["n"], c["result"]) for c in matrix["cells"]] == [
        (1, "SUCCESS"),
        (2, "FAILURE"),
        (3, "SUCCESS"),
    ]
    assert matrix["result"] == "FAILURE" and matrix["counts"] == {"SUCCESS": 2, "FAILURE": 1}


def test_a_matrix_of_500_cells_builds_every_cell(master_factory, worker_factory):
    # Given a 25 x 20 matrix of cheap cells and four workers
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Matrix
        pipeline = Pipeline(
            workers=[Worker(f"w{n}", secret="s") for n in range(4)],
            schedulers=[ForceScheduler("force", builders=["wide"])],
            builders=[
                Builder("wide", workers=[f"w{n}" for n in range(4)], steps=[Shell("exit 0", name="cheap")],
                        matrix=Matrix(axes={"a": [f"a{i}" for i in range(25)], "b": list(range(20))})),
            ],
        )
    """)
    for n in range(4):
        worker_factory(master, f"w{n}", "s")

    # When it is forced
    assert len(master.client.force("wide")) == 500

    # Then all 500 cells build, each once, and the matrix passes
    matrix = finished_matrix(master.client, only_matrix(master.client, "wide"), timeout=600)
    assert matrix["size"] == 500 and matrix["counts"] == {"SUCCESS": 500} and matrix["result"] == "SUCCESS"
    assert len({(c["values"]["a"], c["values"]["b"]) for c in matrix["cells"]}) == 500
    assert len({c["build_id"] for c in matrix["cells"]}) == 500
    # (a worker the loaded machine left silent past the liveness window has its build rerun: RETRY)
    results = [b["result"] for b in master.client.builds(builder="wide", limit=1000)]
    assert results.count("SUCCESS") == 500 and set(results) <= {"SUCCESS", "RETRY"}


def test_a_cells_rebuild_builds_that_cell_alone(master_factory, worker_factory):
    master = master_factory(PYTHON_BY_OS)
    worker_factory(master, "penguin", "s")
    worker_factory(master, "apple", "s")
    master.client.force("test")
    first = finished_matrix(master.client, only_matrix(master.client, "test"))
    cell = next(c for c in first["cells"] if c["values"] == {"python": "3.12", "os": "mac"})

    # When one cell's build is rebuilt
    master.client.request("POST", f"/api/builds/{cell['build_id']}/rebuild", {})

    # Then a matrix of that one cell builds it again, on a mac worker
    newest = wait_for(lambda: (m := master.client.request("GET", "/api/matrices")["matrices"]) and len(m) == 2 and m)
    again = finished_matrix(master.client, newest[0]["id"])
    assert [c["values"] for c in again["cells"]] == [{"python": "3.12", "os": "mac"}]
    build = master.client.request("GET", f"/api/builds/{again['cells'][0]['build_id']}")
    assert build["worker"] == "apple" and build["properties"]["rebuild_of"][0] == cell["build_id"]


def test_a_dependent_of_a_matrix_builds_once_when_every_cell_has_passed(master_factory, worker_factory):
    # Given a deploy that follows a matrix, and a matrix whose cells pass unless forced with fail=yes
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Dependent, Interpolate, Matrix,
                             StringParameter)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                ForceScheduler("force", builders=["test"], params=[StringParameter("fail", default="no")]),
                Dependent("after", upstream="test", builders=["deploy"]),
            ],
            builders=[
                Builder("test", workers=["w1"], collapse_requests=False, matrix=Matrix(axes={"n": [1, 2, 3]}),
                        steps=[Shell(Interpolate("[ %(prop:fail)s-%(prop:n)s != yes-3 ]"), name="check")]),
                Builder("deploy", workers=["w1"], steps=[Shell(Interpolate("echo n=%(prop:n:-none)s"), name="go")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # When the matrix passes, then fails
    master.client.force("test")
    passed = finished_matrix(master.client, only_matrix(master.client, "test"))
    deploys = wait_for(lambda: [b for b in master.client.builds(builder="deploy") if b["result"]])
    master.client.force("test", properties={"fail": "yes"})
    failed = wait_for(
        lambda: (m := master.client.request("GET", "/api/matrices?builder=test")["matrices"]) and len(m) == 2 and m
    )
    failed = finished_matrix(master.client, failed[0]["id"])

    # Then the deploy ran once, after the matrix that passed, with no cell's values
    assert passed["result"] == "SUCCESS" and failed["result"] == "FAILURE"
    requests = master.client.request("GET", "/api/buildrequests")["buildrequests"]
    assert [r["builder"] for r in requests].count("deploy") == 1  # none waits, either
    builds = master.client.builds(builder="deploy")
    assert len(deploys) == 1 and len(builds) == 1
    assert "n=none" in step_log(master.client, builds[0]["id"], 0)


def test_cells_for_an_offline_worker_wait_saying_so_while_the_others_build(master_factory, worker_factory):
    # Given the README's matrix with only the linux worker connected
    master = master_factory(PYTHON_BY_OS)
    worker_factory(master, "penguin", "s")
    master.client.force("test")
    matrix_id = only_matrix(master.client, "test")

    # Then the linux cells build, and the mac ones wait, saying for whom
    def linux_done() -> dict[str, Any] | None:
        matrix = master.client.request("GET", f"/api/matrices/{matrix_id}")
        return matrix if matrix["counts"] == {"SUCCESS": 4, "PENDING": 2} else None

    matrix = wait_for(linux_done, 60, "the linux cells")
    assert {c["values"]["os"] for c in matrix["cells"] if c["result"] is None} == {"mac"}
    waiting = master.client.request("GET", "/api/buildrequests", query={"pending": "true"})["buildrequests"]
    assert sorted((r["cell"]["python"], r["waiting"]) for r in waiting) == [
        ("3.12", "apple is offline"),
        ("3.13", "apple is offline"),
    ]
    assert {r["matrix_id"] for r in waiting} == {matrix_id}

    # When the mac worker connects, the rest build on it
    worker_factory(master, "apple", "s")
    assert finished_matrix(master.client, matrix_id)["counts"] == {"SUCCESS": 6}


def test_each_cell_has_a_commit_status_of_its_own(master_factory, worker_factory, http_recorder):
    # Given a matrix whose os=mac cell fails, reported to a GitHub stand-in
    github = http_recorder()
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, GitHubStatusPush, Interpolate, Matrix
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[AnyBranchScheduler("on-change", builders=["test"])],
            builders=[Builder("test", workers=["w1"], steps=[Shell(Interpolate("[ %(prop:os)s != mac ]"))],
                              matrix=Matrix(axes={{"os": ["linux", "mac"]}}))],
            reporters=[GitHubStatusPush("token", base_url={github.url!r}, mode="failing")],
        )
    """)
    worker_factory(master, "w1", "s")

    # When a change is built
    master.client.sendchange(branch="main", revision="c0ffee", repository="https://github.com/octo/widgets.git")

    # Then the failing cell's status is named after it
    statuses = wait_for(lambda: github.requests, 60, "a status")
    finished_matrix(master.client, only_matrix(master.client, "test"))
    assert [(r["json"]["context"], r["json"]["state"]) for r in statuses] == [("flowbot/test (os=mac)", "failure")]
