"""Reading a query's result a column at a time, so that a million builds reach pandas in seconds.

Read row by row, a database driver hands Python a tuple and an object per value, and pandas then
turns the tuples back into columns. Here the database packs each column into one value (one
aggregate over all the rows, in C) and numpy unpacks it with no Python object per number:

- SQLite joins a column's numbers into one text (``group_concat``), which numpy parses. Times go
  as whole multiples of 2**-22 s, the resolution a double has for any time after 2004: SQLite
  writes integers quickly, and numpy reads them ten times faster than decimals.
- PostgreSQL sends each column as an array (``array_agg``) in its binary form, numbers 4 or 8
  bytes each, which numpy reads as they are.
- Text comes as a JSON array (SQLite) or an array of text (PostgreSQL), so no character needs
  escaping by hand and a missing value stays distinct from an empty one.

All columns come from one statement, so they are one snapshot of a database a master is writing.
Only the drivers the store uses are involved: a second SQLite library in a process that runs a
master would break the file locks SQLite relies on. A column larger than a database allows in one
value (1 GB: tens of millions of rows) is read row by row instead.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from psycopg.abc import Buffer

from ..errors import StoreError

#: Times travel from SQLite as whole multiples of this fraction of a second.
TIME_STEP = 2.0**-22
#: Stands for a missing time or a missing code among SQLite's integers (no time rounds to it).
MISSING = np.iinfo(np.int64).min


class Kind(enum.Enum):
    """What a column holds, which decides how it travels."""

    #: Whole numbers that are never missing (ids, build numbers): ``int64``.
    INT = "int"
    #: Small whole numbers that may be missing (result codes): ``int64``, missing as -1.
    CODE = "code"
    #: Epoch seconds that may be missing: ``float64``, missing as NaN.
    TIME = "time"
    #: Text that may be missing: strings, missing as NaN.
    TEXT = "text"


def read_columns(conn: sa.Connection, query: sa.Select, kinds: dict[str, Kind]) -> dict[str, np.ndarray]:
    """The columns of ``query`` named in ``kinds`` (its labels), as arrays; text as objects, missing as None.

    Rows come in the order the database reads them, which need not be any ``ORDER BY``'s.
    ``pandas.DataFrame`` makes a frame of the result, with string columns for text.
    """
    rows = query.subquery("rows")
    by_row = sa.select(*(rows.c[name] for name in kinds))
    if conn.dialect.name == "postgresql" and conn.dialect.driver != "psycopg":
        return _read_rows(conn, by_row, kinds)  # the binary arrays below need psycopg 3
    packed = sa.select(sa.func.count(), *(_pack(conn.dialect.name, rows.c[name], kind) for name, kind in kinds.items()))
    try:
        n, *values = _fetch(conn, packed)
    except _TooLarge:
        return _read_rows(conn, by_row, kinds)
    return {
        name: _unpack(conn.dialect.name, value, kind, n)
        for (name, kind), value in zip(kinds.items(), values, strict=True)
    }


def _pack(dialect: str, column: sa.ColumnElement, kind: Kind) -> sa.ColumnElement:
    """The aggregate that carries ``column`` in one value."""
    if kind is Kind.CODE:
        column = sa.func.coalesce(column, -1)
    if dialect == "postgresql":
        if kind is Kind.TIME:
            column = sa.func.coalesce(column, sa.literal_column("'NaN'::float8"))
        return sa.func.array_agg(column)
    if kind is Kind.TEXT:
        return sa.func.json_group_array(column)
    if kind is Kind.TIME:
        column = sa.func.coalesce(sa.cast(column * (1 / TIME_STEP), sa.Integer), MISSING)
    return sa.func.group_concat(column)


class _TooLarge(Exception):
    """A column does not fit in one value (the databases' limit is 1 GB)."""


def _fetch(conn: sa.Connection, statement: sa.Select) -> tuple[Any, ...]:
    """The one row of ``statement``, as the driver gives it: SQLAlchemy would walk its lists again."""
    if conn.dialect.name != "postgresql":
        try:
            return conn.execute(statement).cursor.fetchone()
        except sa.exc.DataError:  # "string or blob too big"; the transaction goes on
            raise _TooLarge from None
    # Binary results: arrays of numbers come as their bytes (see _unpack), text arrays as lists.
    compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
    driver = conn.connection.driver_connection
    with driver.cursor(binary=True) as cursor:
        for oid in _NUMBERS:
            cursor.adapters.register_loader(oid, _ArrayBytes)
        try:
            with driver.transaction():  # a savepoint: a failure leaves the transaction and its snapshot
                cursor.execute(str(compiled), compiled.params)
        except psycopg.errors.ProgramLimitExceeded:
            raise _TooLarge from None
        return cursor.fetchone()


class _ArrayBytes(psycopg.adapt.Loader):
    """A PostgreSQL array of numbers as it comes (binary), for numpy to read."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


#: The oids of PostgreSQL's arrays of int4, int8 and float8, read as bytes; and the numbers in them.
_NUMBERS = (1007, 1016, 1022)
_ELEMENTS = {23: ">i4", 20: ">i8", 701: ">f8"}


def _unpack(dialect: str, packed: Any, kind: Kind, n: int) -> np.ndarray:
    """The values of one column from what :func:`_pack` made of it."""
    if kind is Kind.TEXT:
        texts = np.empty(n, dtype=object)  # filled in place: np.array would make a list of lists 2-D
        texts[:] = json.loads(packed) if dialect == "sqlite" else (packed or [])
        return texts
    dtype = np.float64 if kind is Kind.TIME else np.int64
    if not n:
        return np.empty(0, dtype=dtype)
    if dialect == "postgresql":
        # Header: dimensions, has-nulls, element type, then length and lower bound; then for each
        # element its length (4 bytes) and its bytes. No element is null (see _pack), so they align.
        ndim, _, element = np.frombuffer(packed, ">i4", 3)
        item = np.dtype([("length", ">i4"), ("value", _ELEMENTS[element])])
        numbers = np.frombuffer(packed, item, offset=12 + 8 * ndim)["value"].astype(dtype)
    else:
        numbers = np.fromstring(packed, dtype=np.int64, sep=",")
        if kind is Kind.TIME:
            times = numbers * TIME_STEP
            times[numbers == MISSING] = np.nan
            numbers = times
    if len(numbers) != n:
        raise StoreError(f"read {len(numbers)} values of a column of {n} rows")
    return numbers


def _read_rows(conn: sa.Connection, query: sa.Select, kinds: dict[str, Kind]) -> dict[str, np.ndarray]:
    """The slow way, a row at a time, for results too large to pack."""
    rows = conn.execute(query).all()
    columns = zip(*rows, strict=True) if rows else ([] for _ in kinds)
    read = {}
    for (name, kind), values in zip(kinds.items(), columns, strict=True):
        if kind is Kind.TEXT:
            read[name] = np.empty(len(rows), dtype=object)
            read[name][:] = values
        elif kind is Kind.TIME:
            read[name] = np.array(values, dtype=np.float64)  # None becomes NaN
        else:
            read[name] = np.array([-1 if value is None else value for value in values], dtype=np.int64)
    return read
