"""A matrix in the web page, in a real browser against a real master: the grid of its cells'
results by axis values, each cell linked to its build and the build back to its matrix, live as
cells end, and the builder's page listing its matrices."""

from __future__ import annotations

from .test_matrix import finished_matrix, only_matrix
from .test_web import expect, page  # noqa: F401 (fixtures)

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, Matrix
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["test"])],
    builders=[
        Builder("test", workers=["w1"], steps=[
            Shell(Interpolate("[ %(prop:python)s-%(prop:os)s != 3.12-mac ]"), name="check"),
        ], matrix=Matrix(axes={"python": ["3.11", "3.12"], "os": ["linux", "mac", "windows"]},
                         exclude=[{"python": "3.11", "os": "windows"}])),
    ],
)
"""


def test_the_matrix_page_shows_a_grid_of_results_linked_to_builds(master_factory, worker_factory, page, expect):  # noqa: F811
    # Given a python x os matrix whose 3.12/mac cell fails, built
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    master.client.force("test")
    matrix_id = only_matrix(master.client, "test")
    matrix = finished_matrix(master.client, matrix_id)

    # When the matrix's page is opened
    page.goto(f"{master.url}/#/matrices/{matrix_id}")

    # Then it shows a row per python, a column per os, and each cell's result
    expect(page.locator("#matrix-result")).to_have_text("FAILURE")
    expect(page.locator("table.matrix-table thead th")).to_have_text(["python", "os=linux", "os=mac", "os=windows"])
    rows = page.locator("table.matrix-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("th")).to_have_text("3.11")
    expect(rows.nth(0).locator("td").nth(0).locator(".cell")).to_have_attribute("data-result", "SUCCESS")
    expect(rows.nth(0).locator("td").nth(2)).to_have_text("")  # excluded
    expect(rows.nth(1).locator("td").nth(1).locator(".cell")).to_have_attribute("data-result", "FAILURE")
    expect(page.locator("main")).to_contain_text("5 cells: 4 success, 1 failure")

    # And a cell links to its build, whose page links back to the matrix
    failed = next(c for c in matrix["cells"] if c["values"] == {"python": "3.12", "os": "mac"})
    rows.nth(1).locator("td").nth(1).locator("a.cell").click()
    expect(page.locator("#build-result")).to_have_text("FAILURE")
    assert page.url.endswith(f"#/builds/{failed['build_id']}")
    expect(page.locator("dl.facts")).to_contain_text("python=3.12, os=mac")
    page.locator("dl.facts a.matrix-link").click()
    expect(page.locator("table.matrix-table")).to_be_visible()

    # And the builder's page lists its matrices
    page.goto(f"{master.url}/#/builders/test")
    expect(page.locator(f'ul.matrices a[data-matrix="{matrix_id}"]')).to_be_visible()
    expect(page.locator("main")).to_contain_text("5 cells: python (2) \u00d7 os (3)")


def test_the_matrix_page_follows_cells_as_they_end(master_factory, worker_factory, page, expect):  # noqa: F811
    # Given the matrix page open while its cells wait for a worker
    master = master_factory(PIPELINE)
    master.client.force("test")
    matrix_id = only_matrix(master.client, "test")
    page.goto(f"{master.url}/#/matrices/{matrix_id}")
    expect(page.locator("table.matrix-table .cell[data-result=pending]")).to_have_count(5)

    # When a worker connects and builds them
    worker_factory(master, "w1", "s")

    # Then the page shows each cell's result without a reload
    expect(page.locator("#matrix-result")).to_have_text("FAILURE", timeout=60_000)
    expect(page.locator("table.matrix-table .cell[data-result=SUCCESS]")).to_have_count(4)
