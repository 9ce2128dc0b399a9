"""Reading a query a column at a time (``flowbot/analysis/columns.py``), on both databases."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from flowbot.analysis.columns import TIME_STEP, Kind, read_columns

KINDS = {"id": Kind.INT, "label": Kind.TEXT, "code": Kind.CODE, "at": Kind.TIME}
ROWS = [
    (1, "main", 0, 1_704_067_200.123456),
    (2, "", None, None),  # empty text is not missing text; a running build has no result or end yet
    (3, None, 2, 1_704_067_260.000001),
    (4, 'a, "quoted" [list]\nnull\\x1f\x1f', 6, 1_100_000_000.5),
    (5, "NULL", 1, 2**40 + 0.25),
    (6, "ünïcødé ✓", 4, 1_000.000_000_1),  # before 2004: the only times read to 2**-22 s, not exactly
]


@pytest.fixture
def things(db_url: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sa.create_engine(db_url)
    table = sa.Table(
        "things",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("code", sa.Integer),
        sa.Column("at", sa.Float),
    )
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(KINDS, row, strict=True)) for row in ROWS])
    yield engine, table
    engine.dispose()


def test_columns_keep_every_value_missing_or_not(things):
    engine, table = things
    with engine.connect() as conn:
        columns = read_columns(conn, sa.select(table), KINDS)
    order = np.argsort(columns["id"])
    assert columns["id"][order].tolist() == [1, 2, 3, 4, 5, 6]
    assert columns["id"].dtype == np.int64 and columns["code"].dtype == np.int64
    assert columns["label"][order].tolist() == [row[1] for row in ROWS]
    assert columns["code"][order].tolist() == [0, -1, 2, 6, 1, 4]
    at = columns["at"][order]
    assert at.dtype == np.float64 and math.isnan(at[1])
    assert [at[i] for i in (0, 2, 3, 4)] == [ROWS[i][3] for i in (0, 2, 3, 4)]  # exactly
    assert abs(at[5] - ROWS[5][3]) < TIME_STEP


def test_columns_of_a_filtered_relabelled_query_and_of_no_rows(things):
    engine, table = things
    query = sa.select(table.c.id.label("n"), table.c.label.label("text")).where(table.c.code >= 2)
    kinds = {"text": Kind.TEXT, "n": Kind.INT}
    with engine.connect() as conn:
        columns = read_columns(conn, query, kinds)
        none = read_columns(conn, query.where(table.c.id > 100), kinds)
    assert sorted(zip(columns["n"].tolist(), columns["text"], strict=True)) == [
        (3, None),
        (4, ROWS[3][1]),
        (6, ROWS[5][1]),
    ]
    assert list(columns) == ["text", "n"]
    assert {name: (len(values), values.dtype.kind) for name, values in none.items()} == {
        "text": (0, "O"),
        "n": (0, "i"),
    }


def test_a_result_too_large_to_pack_is_read_row_by_row(tmp_path):
    # Given a database read with no text allowed longer than 200 bytes (SQLite's own limit is 1 GB)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'small.sqlite'}")
    table = sa.Table("things", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("label", sa.Text))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "label": None if i == 3 else f"label {i}"} for i in range(20)])
    engine.dispose()
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 200))
    # When its columns are read, Then they come back whole all the same
    with engine.connect() as conn:
        columns = read_columns(conn, sa.select(table), {"id": Kind.INT, "label": Kind.TEXT})
    assert columns["id"].tolist() == list(range(20))
    assert columns["label"].tolist() == [None if i == 3 else f"label {i}" for i in range(20)]
    engine.dispose()
