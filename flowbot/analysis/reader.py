"""Reading a store for the analysis modules: one connection pool, queries into DataFrames, and the
filters every answer shares (a builder, a branch, results, a span of time), checked.

:class:`Reader` is what the answer modules (:mod:`.answers`, :mod:`.flaky`, :mod:`.culprits`,
:mod:`.search`, :mod:`.replay`, :mod:`.build_report`) and :mod:`.frames` are given;
:class:`~flowbot.analysis.History` is the front door people use, and keeps these helpers out of sight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..errors import NotFound, StoreError
from ..store import schema as t
from .dtypes import TimeLike, epoch, result_codes

_b, _r = t.builds.c, t.buildrequests.c

#: The dtype of an empty column of each SQL type, as its values come when there are some.
_DTYPES = {int: "int64", float: "float64", str: "str", bool: "bool"}


def _dtype(kind: sa.types.TypeEngine) -> str:
    try:
        return _DTYPES.get(kind.python_type, "object")
    except NotImplementedError:  # a type SQLAlchemy cannot tell (an expression's, say)
        return "object"


class Reader:
    """The store in the database at ``db_url`` (a SQLAlchemy URL), read only.

    Raises:
        StoreError: nothing at ``db_url`` holds a flowbot store.
    """

    def __init__(self, db_url: str):
        try:
            url = sa.make_url(db_url)
        except sa.exc.ArgumentError:
            raise StoreError(f"not a database URL: {db_url!r}") from None
        if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
            # Connecting would create an empty file and hide the typo.
            raise StoreError(f"no SQLite database at {url.database!r}")
        self.url = db_url
        self.engine = sa.create_engine(url)
        try:
            tables = set(sa.inspect(self.engine).get_table_names())
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot read {url.render_as_string()}: {getattr(exc, 'orig', None) or exc}") from None
        if "builds" not in tables:
            self.engine.dispose()
            raise StoreError(f"{url.render_as_string()} holds no flowbot store (no builds table)")
        self.dialect = self.engine.dialect.name
        #: The database's tables, to tell an older schema from a current one.
        self.tables = tables
        #: When a build's request was submitted: the build's own copy, or in a store from before
        #: builds kept one, the request's (queries then join it: :meth:`with_requests`).
        built_columns = {column["name"] for column in sa.inspect(self.engine).get_columns("builds")}
        self.submitted_at = _b.submitted_at if "submitted_at" in built_columns else _r.submitted_at
        #: The pull request a build built (none in a store from before builds kept one).
        self.pull_request_id = (
            _b.pull_request_id if "pull_request_id" in built_columns else sa.cast(sa.null(), sa.Integer)
        )
        #: A log chunk's compressed text; in a store from before chunks were compressed, none.
        chunk_columns = {column["name"] for column in sa.inspect(self.engine).get_columns("log_chunks")}
        self.compressed = t.log_chunks.c.compressed if "compressed" in chunk_columns else sa.null()
        #: Which build of its request a build is, and how many times a step ran (1 in an older store).
        self.attempt = _b.attempt if "attempt" in built_columns else sa.literal(1)
        step_columns = {column["name"] for column in sa.inspect(self.engine).get_columns("steps")}
        self.step_attempts = t.steps.c.attempts if "attempts" in step_columns else sa.literal(1)

    def close(self) -> None:
        """Let go of the database's connections."""
        self.engine.dispose()

    # -- reading ----------------------------------------------------------------------------------

    def read(self, query: sa.Executable) -> pd.DataFrame:
        """Run ``query`` and return its rows as a DataFrame (columns named as the query labels them).

        SQLAlchemy builds and runs the query; the rows are then taken straight from the DBAPI
        cursor into pandas, which on a million rows takes a third less time than ``pandas.read_sql``
        spends going through SQLAlchemy's row objects. That skips SQLAlchemy's conversion of values, so
        it suits columns of numbers and text, which the drivers return as they are; JSON columns
        go through :meth:`read_converted`. No rows give an empty frame typed by the query's columns
        (``int64`` for an integer column...), so that an answer about nothing has a full one's dtypes.
        """
        with self.engine.connect() as conn:
            result = conn.execute(query)
            columns = list(result.keys())
            rows = result.cursor.fetchall()
        if rows:
            return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
        types = [column.type for column in query.selected_columns]
        return pd.DataFrame({name: pd.Series(dtype=_dtype(kind)) for name, kind in zip(columns, types, strict=True)})

    def read_converted(self, query: sa.Executable) -> pd.DataFrame:
        """Like :meth:`read`, with every value converted by its column's SQLAlchemy type (JSON, say)."""
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def with_requests(self, query: sa.Select) -> sa.Select:
        """``query`` of builds, joined to their requests when :attr:`submitted_at` is read from them."""
        return query if self.submitted_at is _b.submitted_at else query.join(t.buildrequests, _r.id == _b.request_id)

    def require(self, table: str) -> None:
        """Fail clearly on a database whose schema predates ``table``."""
        if table not in self.tables:
            raise StoreError(f"the database has no {table} table yet: start a master on it once to upgrade it")

    def check_builder(self, builder: str | None) -> None:
        """Raise :class:`NotFound` when ``builder`` has no builds (a typo, most often)."""
        self._check_known(_b.builder, builder, "builder")

    def check_worker(self, worker: str | None) -> None:
        """Raise :class:`NotFound` when ``worker`` ran no builds."""
        self._check_known(_b.worker, worker, "worker")

    def _check_known(self, column: sa.Column, value: str | None, what: str) -> None:
        if value is None:
            return
        with self.engine.connect() as conn:
            if conn.execute(sa.select(_b.id).where(column == value).limit(1)).first() is not None:
                return
            known = ", ".join(conn.execute(sa.select(column).distinct().order_by(column)).scalars()) or "none yet"
        raise NotFound(f"no builds of {what} {value!r} in the history ({what}s: {known})")

    def build_filter(
        self,
        query: sa.Select,
        *,
        builder: str | None = None,
        branch: str | None = None,
        result: Any = None,
        since: TimeLike = None,
        until: TimeLike = None,
    ) -> sa.Select:
        """``query`` narrowed to builds of ``builder`` (checked), ``branch``, ``result``, started in [since, until)."""
        self.check_builder(builder)
        if builder is not None:
            query = query.where(_b.builder == builder)
        if branch is not None:
            query = query.where(_b.branch == branch)
        codes = result_codes(result)
        if codes is not None:
            query = query.where(_b.result.in_(codes))
        start, end = epoch(since, "since"), epoch(until, "until")
        if start is not None:
            query = query.where(_b.started_at >= start)
        if end is not None:
            query = query.where(_b.started_at < end)
        return query

    def selected_builds(self, **filters: Any) -> sa.Select | None:
        """The ids of the builds that :meth:`build_filter`'s ``filters`` select; None when there are none.

        Steps and test results are filtered with ``build_id IN (...)`` rather than through their
        join with builds: the databases then find the few builds first (by their indexes) and
        only those builds' rows, instead of walking millions of rows and joining each.
        """
        if all(value is None for value in filters.values()):
            return None
        return self.build_filter(sa.select(_b.id), **filters)
