"""Reading a build's test results as people look at them: failures first, with their messages.

These run on the store's thread with a connection it gives them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..junit import SHOWN_ORDER
from . import schema as t


def counts(conn: sa.Connection, build_id: int) -> dict[str, int]:
    """How many tests of the build ended each way (``{"failed": 3, "passed": 120}``)."""
    r = t.test_results.c
    query = sa.select(r.outcome, sa.func.count()).where(r.build_id == build_id).group_by(r.outcome)
    return {outcome: n for outcome, n in conn.execute(query)}


def results(conn: sa.Connection, build_id: int, outcomes: list[str] | None, limit: int) -> list[dict[str, Any]]:
    """The build's test results (of ``outcomes``, or all), failures first, each with its step."""
    r, s = t.test_results.c, t.steps.c
    rank = sa.case({str(o): i for i, o in enumerate(SHOWN_ORDER)}, value=r.outcome, else_=len(SHOWN_ORDER))
    query = (
        sa.select(
            r.suite, r.classname, r.name, r.outcome, r.duration, r.message, r.file, r.line,
            s.number.label("step"), s.name.label("step_name"),
        )
        .join(t.steps, s.id == r.step_id)
        .where(r.build_id == build_id)
        .order_by(rank, r.id)
        .limit(limit)
    )  # fmt: skip
    if outcomes:
        query = query.where(r.outcome.in_(outcomes))
    return [row._asdict() for row in conn.execute(query)]
