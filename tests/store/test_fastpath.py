"""The hot path's statements run on the driver's cursor store what SQLAlchemy's own execution does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flowbot.store import schema as t
from flowbot.store import statements as sql


@pytest.fixture
def conn():
    engine = sa.create_engine("sqlite://")
    t.metadata.create_all(engine)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def rows(conn: sa.Connection, table: sa.Table) -> list[tuple]:
    return [tuple(row) for row in conn.execute(sa.select(table).order_by(table.c.id))]


def test_an_insert_stores_what_sqlalchemy_stores_defaults_and_conversions_included(conn):
    # Given a buildset's values that leave columns to their defaults and need converting (JSON)
    values = {"scheduler": "all", "properties": {"a": ["x", 1]}, "submitted_at": 2, "parent_build_id": None}

    # When it is inserted on the fast path and by SQLAlchemy
    first = sql.INSERT_BUILDSET.insert(conn, {**values, "pull_request_id": None})
    second = conn.execute(t.buildsets.insert(), values).inserted_primary_key[0]

    # Then both rows are alike but for their ids
    one, two = rows(conn, t.buildsets)
    assert (one[0], two[0]) == (first, second)
    assert one[1:] == two[1:] == ("all", "", {"a": ["x", 1]}, 2.0, None, None, None, None)


def test_an_update_with_constants_stores_what_sqlalchemy_stores(conn):
    # Given two buildsets, each with a failed and a successful request
    for buildset in (1, 2):
        conn.execute(t.buildsets.insert(), {"id": buildset, "scheduler": "s", "properties": {}, "submitted_at": 0})
        for result in (0, 2):
            conn.execute(
                t.buildrequests.insert(),
                {"buildset_id": buildset, "builder": "b", "submitted_at": 0, "complete_at": 1, "result": result},
            )

    # When one is completed on the fast path and the other by SQLAlchemy (a CASE of constants)
    assert sql.COMPLETE_BUILDSET.run(conn, {"p_id": 1, "p_at": 5.0}).rowcount == 1
    conn.execute(sql.COMPLETE_BUILDSET.statement, {"p_id": 2, "p_at": 5.0})

    # Then both are complete with the worst of their requests' results
    assert [row[5:7] for row in rows(conn, t.buildsets)] == [(5.0, 2), (5.0, 2)]


def test_a_value_neither_given_nor_defaulted_is_missing(conn):
    with pytest.raises(KeyError, match="p_at"):
        sql.COMPLETE_BUILDSET.run(conn, {"p_id": 1})
