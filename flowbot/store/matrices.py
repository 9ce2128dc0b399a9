"""A builder's matrix in a buildset: its row, the requests of its cells, and reading it back.

A matrix is stored once (its axes in order, so a grid can be drawn without guessing), and each cell
is a build request that names it and carries the cell's ``{axis: value}``; the cells' builds are
the builds of those requests. See :mod:`flowbot.matrix` for what a matrix is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..errors import NotFound
from ..records import MATRIX_SOURCE
from ..results import Result, worst
from . import schema as t
from .access import Access


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """One cell: its values, its request, and its latest build (if one started)."""

    values: dict[str, Any]
    request_id: int
    #: The request's result once complete (CANCELLED for a cell fail_fast cancelled before it ran).
    result: Result | None
    build_id: int | None = None
    build_number: int | None = None
    #: The latest build's result (None while it runs, or when none started).
    build_result: Result | None = None

    def to_json(self) -> dict[str, Any]:
        result = self.result if self.result is not None else self.build_result
        return {
            "values": self.values,
            "request_id": self.request_id,
            "result": result.name if result is not None else None,
            "complete": self.result is not None,
            "build_id": self.build_id,
            "number": self.build_number,
        }


@dataclass(frozen=True, slots=True)
class MatrixView:
    """A matrix with its cells in order."""

    id: int
    buildset_id: int
    builder: str
    #: ``{axis: [values]}`` in the order the grid shows them.
    axes: dict[str, list[Any]]
    submitted_at: float
    cells: tuple[MatrixCell, ...]

    @property
    def complete(self) -> bool:
        return all(cell.result is not None for cell in self.cells)

    @property
    def result(self) -> Result | None:
        """The worst of the cells' results once every cell is complete."""
        if not self.complete:
            return None
        return worst(*(cell.result for cell in self.cells if cell.result is not None))

    def counts(self) -> dict[str, int]:
        """How many cells ended with each result, and how many are still pending or running."""
        counts: dict[str, int] = {}
        for cell in self.cells:
            key = cell.result.name if cell.result is not None else "PENDING"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_json(self, *, cells: bool = True) -> dict[str, Any]:
        result = self.result
        out: dict[str, Any] = {
            "id": self.id,
            "buildset_id": self.buildset_id,
            "builder": self.builder,
            "axes": self.axes,
            "submitted_at": self.submitted_at,
            "complete": self.complete,
            "result": result.name if result is not None else None,
            "counts": self.counts(),
            "size": len(self.cells),
        }
        if cells:
            out["cells"] = [cell.to_json() for cell in self.cells]
        return out


class Matrices:
    """The ``matrices`` table, and the cells (requests) and builds of each matrix."""

    def __init__(self, db: Access):
        self._db = db

    async def query(self, *, builder: str | None = None, limit: int = 50) -> list[MatrixView]:
        """The newest matrices (of ``builder``), newest first, with their cells."""
        return await self._db.read(lambda conn: read_matrices(conn, matrix_ids(conn, builder=builder, limit=limit)))

    async def get(self, matrix_id: int) -> MatrixView:
        """One matrix with its cells.

        Raises:
            NotFound: there is no such matrix.
        """
        found = await self._db.read(lambda conn: read_matrices(conn, [matrix_id]))
        if not found:
            raise NotFound(f"no matrix {matrix_id}")
        return found[0]

    async def of_build(self, build_id: int) -> int | None:
        """The id of the matrix a build is a cell of, if it is one."""
        return await self._db.read(lambda conn: matrix_of_build(conn, build_id))


def with_cell(properties: dict[str, tuple[Any, str]], cell: dict[str, Any] | None) -> dict[str, tuple[Any, str]]:
    """A request's properties: its buildset's, and its cell's values as properties of their own."""
    if not cell:
        return properties
    return {**properties, **{name: (value, MATRIX_SOURCE) for name, value in cell.items()}}


def insert_matrix(
    conn: sa.Connection, buildset_id: int, builder: str, cells: tuple[dict[str, Any], ...] | None, now: float
) -> tuple[int | None, list[dict[str, Any] | None]]:
    """Store the matrix of ``builder`` in a buildset, when it has ``cells``: its id and the cells to
    request (one None, with no id, for a builder without a matrix)."""
    if not cells:
        return None, [None]
    axes: dict[str, list[Any]] = {}
    for cell in cells:
        for name, value in cell.items():
            values = axes.setdefault(name, [])
            if value not in values:
                values.append(value)
    matrix_id = conn.execute(
        t.matrices.insert().values(
            buildset_id=buildset_id, builder=builder, axes=[[n, v] for n, v in axes.items()], submitted_at=now
        )
    ).inserted_primary_key[0]
    return matrix_id, list(cells)


def read_matrices(conn: sa.Connection, ids: list[int]) -> list[MatrixView]:
    """The matrices ``ids``, in that order, each with its cells and their latest builds."""
    if not ids:
        return []
    m, r, b = t.matrices.c, t.buildrequests.c, t.builds.c
    rows = {row.id: row for row in conn.execute(sa.select(t.matrices).where(m.id.in_(ids)))}
    latest = (
        sa.select(sa.func.max(b.id))
        .join(t.buildrequests, r.id == b.request_id)
        .where(r.matrix_id.in_(ids))
        .group_by(b.request_id)
        .scalar_subquery()
    )
    builds = {
        row.request_id: row
        for row in conn.execute(sa.select(b.id, b.request_id, b.number, b.result).where(b.id.in_(latest)))
    }
    cells: dict[int, list[MatrixCell]] = {}
    for row in conn.execute(sa.select(r.id, r.matrix_id, r.cell, r.result).where(r.matrix_id.in_(ids)).order_by(r.id)):
        build = builds.get(row.id)
        cells.setdefault(row.matrix_id, []).append(
            MatrixCell(
                values=row.cell or {},
                request_id=row.id,
                result=Result(row.result) if row.result is not None else None,
                build_id=build.id if build else None,
                build_number=build.number if build else None,
                build_result=Result(build.result) if build and build.result is not None else None,
            )
        )
    return [
        MatrixView(
            id=row.id,
            buildset_id=row.buildset_id,
            builder=row.builder,
            axes={name: list(values) for name, values in row.axes},
            submitted_at=row.submitted_at,
            cells=tuple(cells.get(row.id, ())),
        )
        for matrix_id in ids
        if (row := rows.get(matrix_id)) is not None
    ]


def matrix_passed(conn: sa.Connection, matrix_id: int) -> bool:
    """Whether every cell of the matrix is complete, with SUCCESS or WARNINGS."""
    r = t.buildrequests.c
    passed = [int(Result.SUCCESS), int(Result.WARNINGS)]
    failing = sa.exists().where(r.matrix_id == matrix_id, sa.or_(r.complete_at.is_(None), r.result.not_in(passed)))
    return not conn.execute(sa.select(failing)).scalar()


def matrix_ids(conn: sa.Connection, *, builder: str | None = None, limit: int = 50) -> list[int]:
    """The newest matrices' ids (of ``builder``, when given), newest first."""
    query = sa.select(t.matrices.c.id).order_by(t.matrices.c.id.desc()).limit(limit)
    if builder is not None:
        query = query.where(t.matrices.c.builder == builder)
    return list(conn.execute(query).scalars())


def matrix_of_build(conn: sa.Connection, build_id: int) -> int | None:
    """The matrix a build is a cell of, if any."""
    r = t.buildrequests.c
    query = sa.select(r.matrix_id).join(t.builds, t.builds.c.request_id == r.id).where(t.builds.c.id == build_id)
    return conn.execute(query).scalar()
