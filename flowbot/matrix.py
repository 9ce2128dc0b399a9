"""Matrix builds: one builder run once per combination of axis values, grouped as one unit.

``Builder("test", ..., matrix=Matrix(axes={"python": ["3.12", "3.13"], "os": ["linux", "mac"]}))``
makes every request of the builder a matrix of four *cells*, one build each. A cell's values are
properties of its build (``%(prop:python)s``), and it runs only on a worker whose properties agree
with it: a worker declaring ``properties={"os": "mac"}`` takes the ``os=mac`` cells alone, one
declaring no ``os`` takes any. The matrix is a setting of the builder rather than a factory of many
builders so that its cells share one name, one queue, one page and one history, and a scheduler,
a reporter or a retention rule names it once.

Cells come in the order of the axes (the first varies slowest); ``exclude`` drops the cells that
match all of an entry's values, then ``include`` adds whole cells (values outside the axes are
allowed there: ``{"python": "3.14", "os": "linux"}``). There is no cap on the number of cells.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .fields import ANYTHING, FLAG, TEXT, Kind, checked, list_of, mapping, refuse
from .records import BuildsetSpec

#: What an axis value may be: text or a number, as a property holds it.
VALUE = Kind(
    "a string or a number",
    lambda value: isinstance(value, (str, int, float)) and not isinstance(value, bool),
    plural="strings or numbers",
)

Cell = dict[str, Any]


class Matrix:
    """A builder's matrix: its axes, the cells left out and added, and whether a failure stops the rest.

    Args:
        axes: ``{name: [values]}``, each axis with at least one value.
        exclude: partial cells (``{"python": "3.11", "os": "mac"}``): every cell that has all of an
            entry's values is left out. Names and values must be the axes'.
        include: whole cells to add (one value for each axis, any value), after ``exclude``.
        fail_fast: when a cell fails (FAILURE or EXCEPTION), cancel the cells of the same matrix
            still waiting and stop those running.

    Raises:
        ConfigError: an empty axis, an exclude naming an unknown axis or value, an include that is
            not one value per axis, or no cell left.
    """

    @checked(
        axes=mapping(TEXT, list_of(VALUE), "a dict of axis names to lists of values"),
        exclude=list_of(mapping(TEXT, ANYTHING, "a dict of axis names to values")),
        include=list_of(mapping(TEXT, ANYTHING, "a dict of axis names to values")),
        fail_fast=FLAG,
    )
    def __init__(
        self,
        axes: Mapping[str, Iterable[Any]],
        *,
        exclude: Iterable[Mapping[str, Any]] = (),
        include: Iterable[Mapping[str, Any]] = (),
        fail_fast: bool = False,
    ):
        self.axes = {name: list(values) for name, values in axes.items()}
        self.exclude = [dict(entry) for entry in exclude]
        self.include = [dict(entry) for entry in include]
        self.fail_fast = fail_fast
        if not self.axes:
            raise refuse(self, "axes", "needs at least one axis")
        for name, values in self.axes.items():
            if not values:
                raise refuse(self, "axes", f"axis {name!r} has no values")
            if len(set(map(repr, values))) != len(values):
                raise refuse(self, "axes", f"axis {name!r} lists a value twice: {values!r}")
        for entry in self.exclude:
            self._check_exclude(entry)
        for entry in self.include:
            self._check_include(entry)
        self.cells = self._cells()
        if not self.cells:
            raise refuse(self, "exclude", "leaves no cell to build")

    def _check_exclude(self, entry: Cell) -> None:
        if not entry:
            raise refuse(self, "exclude", "an empty exclude {} would leave out every cell")
        for name, value in entry.items():
            if name not in self.axes:
                raise refuse(self, "exclude", f"exclude {entry!r} names axis {name!r}; the axes are {list(self.axes)}")
            if value not in self.axes[name]:
                raise refuse(
                    self, "exclude", f"exclude {entry!r}: {value!r} is not a value of axis {name!r} {self.axes[name]!r}"
                )

    def _check_include(self, entry: Cell) -> None:
        unknown = [name for name in entry if name not in self.axes]
        missing = [name for name in self.axes if name not in entry]
        if unknown or missing:
            said = [f"names no axis {', '.join(map(repr, unknown))}"] if unknown else []
            said += [f"gives no value for {', '.join(map(repr, missing))}"] if missing else []
            raise refuse(
                self,
                "include",
                f"include {entry!r} {' and '.join(said)}; an include is a whole cell, one value per axis",
            )
        for name, value in entry.items():
            if not VALUE.test(value):
                raise refuse(self, "include", f"include {entry!r}: the value of {name!r} must be a string or a number")

    def _cells(self) -> list[Cell]:
        cells = [dict(zip(self.axes, values, strict=True)) for values in itertools.product(*self.axes.values())]
        cells = [cell for cell in cells if not any(_has(cell, entry) for entry in self.exclude)]
        for entry in self.include:
            cell = {name: entry[name] for name in self.axes}
            if cell not in cells:
                cells.append(cell)
        return cells

    @property
    def values(self) -> dict[str, list[Any]]:
        """Each axis's values in order, with those only an include brings at the end."""
        return {name: list(dict.fromkeys(cell[name] for cell in self.cells)) for name in self.axes}

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[Cell]:
        return iter(self.cells)

    def __repr__(self) -> str:
        return f"Matrix({', '.join(f'{n}={len(v)}' for n, v in self.axes.items())}, cells={len(self.cells)})"


def fits(cell: Mapping[str, Any], worker_properties: Mapping[str, Any]) -> bool:
    """Whether a worker with these properties may run ``cell``: it agrees on every axis it declares."""
    return all(worker_properties[name] == value for name, value in cell.items() if name in worker_properties)


def label(cell: Mapping[str, Any]) -> str:
    """A cell as people read it: ``python=3.12, os=mac``."""
    return ", ".join(f"{name}={value}" for name, value in cell.items())


def with_cells(spec: BuildsetSpec | None, matrices: Mapping[str, Matrix]) -> BuildsetSpec | None:
    """``spec`` with the cells of each of its builders that has a matrix (``matrices``, by builder),
    leaving the cells a spec already names (the one cell a rebuild repeats) as they are."""
    if spec is None:
        return None
    wanted = {b: tuple(matrices[b].cells) for b in spec.builders if b in matrices and b not in spec.cells}
    if not wanted:
        return spec
    return dataclasses.replace(spec, cells={**spec.cells, **wanted})


def _has(cell: Cell, entry: Cell) -> bool:
    return all(cell.get(name) == value for name, value in entry.items())
