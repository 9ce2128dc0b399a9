"""Reading a build's test results as people look at them: failures first, with their messages.

These run on the store's thread with a connection it gives them.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..junit import SHOWN_ORDER, Outcome, TestCase
from ..records import ReportedTest
from . import schema as t

#: The columns of a test case, in the order :class:`~flowbot.junit.TestCase` takes them.
_CASE = tuple(
    t.test_results.c[name] for name in ("suite", "classname", "name", "outcome", "duration", "message", "file", "line")
)


def counts(conn: sa.Connection, build_id: int) -> dict[str, int]:
    """How many tests of the build ended each way (``{"failed": 3, "passed": 120}``)."""
    r = t.test_results.c
    query = sa.select(r.outcome, sa.func.count()).where(r.build_id == build_id).group_by(r.outcome)
    return {outcome: n for outcome, n in conn.execute(query)}


def results(conn: sa.Connection, build_id: int, outcomes: list[str] | None, limit: int) -> list[ReportedTest]:
    """The build's test results (of ``outcomes``, or all), failures first, each with its step."""
    r, s = t.test_results.c, t.steps.c
    rank = sa.case({str(o): i for i, o in enumerate(SHOWN_ORDER)}, value=r.outcome, else_=len(SHOWN_ORDER))
    query = (
        sa.select(*_CASE, s.number.label("step"), s.name.label("step_name"))
        .join(t.steps, s.id == r.step_id)
        .where(r.build_id == build_id)
        .order_by(rank, r.id)
        .limit(limit)
    )
    if outcomes:
        query = query.where(r.outcome.in_(outcomes))
    return [ReportedTest(_case(row), step=row.step, step_name=row.step_name) for row in conn.execute(query)]


def failed(conn: sa.Connection, build_id: int, limit: int) -> list[TestCase]:
    """The build's tests that failed or erred, in the order its steps reported them (``limit`` at most)."""
    r = t.test_results.c
    query = (
        sa.select(*_CASE)
        .where(r.build_id == build_id, r.outcome.in_([str(Outcome.FAILED), str(Outcome.ERROR)]))
        .order_by(r.id)
        .limit(limit)
    )
    return [_case(row) for row in conn.execute(query)]


def _case(row: sa.Row) -> TestCase:
    """A test case from a row of the :data:`_CASE` columns."""
    suite, classname, name, outcome, duration, message, file, line = row[: len(_CASE)]
    return TestCase(suite, classname, name, Outcome(outcome), duration, message, file or "", line)
