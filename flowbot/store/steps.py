"""Steps of builds, the test results they reported and the files they stored on the master."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..records import ReportedTest, StepRecord, StoredArtifact
from ..results import Result
from . import schema as t
from . import statements as sql
from . import test_pages
from .access import Access, Ref

if TYPE_CHECKING:
    from ..junit import TestCase


@dataclass(frozen=True, slots=True)
class StepStart:
    """A step's start, recorded alone or with its build's start (the build's first step)."""

    number: int
    name: str
    now: float
    #: Set to the step's id when it is written.
    ref: Ref

    def write(self, conn: sa.Connection, build_id: int) -> None:
        self.ref.id = sql.INSERT_STEP.insert(
            conn,
            {
                "build_id": build_id,
                "number": self.number,
                "name": self.name,
                "started_at": self.now,
                "hidden": False,
                "summary": "",
            },
        )


@dataclass(frozen=True, slots=True)
class StepEnd:
    """A step's end, recorded alone or with its build's end (the build's last step)."""

    ref: Ref
    result: Result
    now: float
    summary: str = ""
    hidden: bool = False
    attempts: int = 1

    def write(self, conn: sa.Connection) -> None:
        sql.FINISH_STEP.run(
            conn,
            {
                "p_id": self.ref.get(),
                "p_at": self.now,
                "p_result": int(self.result),
                "p_summary": self.summary,
                "p_hidden": self.hidden,
                "p_attempts": self.attempts,
            },
        )


class Steps:
    """The ``steps``, ``test_results`` and ``artifacts`` tables."""

    def __init__(self, db: Access):
        self._db = db

    def start(self, build: Ref, number: int, name: str, now: float, step: Ref) -> asyncio.Future[None]:
        """Record a step as started; sets ``step.id``."""
        start = StepStart(number, name, now, step)
        return self._db.keep(lambda conn: start.write(conn, build.get()))

    def finish(
        self, step: Ref, result: Result, now: float, summary: str = "", *, hidden: bool = False, attempts: int = 1
    ) -> asyncio.Future[None]:
        return self.end(StepEnd(step, result, now, summary, hidden, attempts))

    def end(self, end: StepEnd) -> asyncio.Future[None]:
        """Record a step's end."""
        return self._db.keep(end.write)

    def add_test_results(self, build: Ref, step: Ref, cases: Iterable[TestCase]) -> asyncio.Future[int]:
        """Record the test cases a step reported (see :mod:`flowbot.junit`); resolves to their count.

        A name or class name too long to index is cut, and ends in "…".
        """
        rows = [
            {
                "suite": case.suite,
                "classname": _indexable(case.classname),
                "name": _indexable(case.name),
                "outcome": str(case.outcome),
                "duration": case.duration,
                "message": case.message,
                "file": case.file or None,
                "line": case.line,
            }
            for case in cases
        ]

        def op(conn: sa.Connection) -> int:
            if rows:  # an empty list would insert one row of defaults
                ids = {"build_id": build.get(), "step_id": step.get()}
                conn.execute(t.test_results.insert(), [{**ids, **row} for row in rows])
            return len(rows)

        return self._db.keep(op)

    def add_artifacts(self, build: Ref, step: Ref, files: Iterable[dict[str, Any]], now: float) -> asyncio.Future[int]:
        """Record the files a step stored on the master: ``{"path", "size", "sha256", "mtime_ns"}`` each,
        the path relative to the artifacts directory; resolves to their count."""
        rows = list(files)

        def op(conn: sa.Connection) -> int:
            if rows:
                ids = {"build_id": build.get(), "step_id": step.get(), "stored_at": now}
                conn.execute(t.artifacts.insert(), [{**ids, **row} for row in rows])
            return len(rows)

        return self._db.keep(op)

    async def failed_tests(self, build_id: int, limit: int) -> list[TestCase]:
        """The tests of a build that failed or erred, in the order its steps reported them (``limit`` at most)."""
        return await self._db.read(lambda conn: test_pages.failed(conn, build_id, limit))

    async def test_results(
        self, build_id: int, *, outcomes: list[str] | None = None, limit: int = 1000
    ) -> list[ReportedTest]:
        """A build's test results (of ``outcomes``, or all), failures first, each with its step's number and name."""
        return await self._db.read(lambda conn: test_pages.results(conn, build_id, outcomes, limit))

    async def test_counts(self, build_id: int) -> dict[str, int]:
        """How many of a build's tests ended each way (``{"failed": 3, "passed": 120}``)."""
        return await self._db.read(lambda conn: test_pages.counts(conn, build_id))

    async def artifacts(self, build_id: int, path: str | None = None) -> list[StoredArtifact]:
        """The files a build stored on the master (the one at ``path`` only, when given), in the
        order stored, each with its step's number and name and whether a later build's row names
        the same file."""
        a, s = t.artifacts.c, t.steps.c
        later = t.artifacts.alias("later").c
        newer = sa.exists().where(later.path == a.path, later.id > a.id)
        query = (
            sa.select(
                a.path, a.size, a.sha256, a.mtime_ns, a.stored_at, s.number.label("step"),
                s.name.label("step_name"), newer.label("newer"),
            )
            .join(t.steps, s.id == a.step_id)
            .where(a.build_id == build_id)
            .order_by(a.id)
        )  # fmt: skip
        if path is not None:
            query = query.where(a.path == path)
        return await self._db.read(lambda conn: [StoredArtifact(*row) for row in conn.execute(query)])


def steps_of(conn: sa.Connection, build_id: int) -> tuple[StepRecord, ...]:
    """A build's steps in order, each with the names of its logs."""
    steps = conn.execute(sa.select(t.steps).where(t.steps.c.build_id == build_id).order_by(t.steps.c.number)).all()
    names: dict[int, list[str]] = {}
    if steps:
        chunks = t.log_chunks.c
        for step_id, name in conn.execute(
            sa.select(chunks.step_id, chunks.log).distinct().where(chunks.step_id.in_([s.id for s in steps]))
        ):
            names.setdefault(step_id, []).append(name)
    return tuple(
        StepRecord(
            number=s.number,
            name=s.name,
            result=None if s.result is None else Result(s.result),
            started_at=s.started_at,
            finished_at=s.finished_at,
            summary=s.summary,
            hidden=s.hidden,
            attempts=s.attempts,
            logs=tuple(sorted(names.get(s.id, []))),
        )
        for s in steps
    )


def _indexable(text: str) -> str:
    """``text``, cut to :data:`~flowbot.store.schema.MAX_INDEXED_BYTES` (ending in "…") if it is longer."""
    data = text.encode()
    if len(data) <= t.MAX_INDEXED_BYTES:
        return text
    return data[: t.MAX_INDEXED_BYTES - len("…".encode())].decode("utf-8", "ignore") + "…"
