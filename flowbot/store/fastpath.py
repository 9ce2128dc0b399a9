"""The build hot path's statements, compiled once per database and run on the DBAPI cursor.

SQLAlchemy Core spends ten to twenty microseconds of Python on each ``execute`` of even a cached
statement (building an execution context, a result object, parameter dictionaries), which for
the dozen statements of every build is more than the database takes to run them. These few
statements are compiled by SQLAlchemy once per dialect (so the SQL, the parameter style, the
column defaults and the value conversions, JSON included, are exactly what SQLAlchemy would use)
and then handed straight to the driver's cursor, inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

#: A position of a statement with no value given and none of its own.
_MISSING = object()


class _Compiled:
    """One statement as one dialect runs it.

    SQLAlchemy's ``construct_params`` walks every bind of the statement on each call; here that
    walk happens once, leaving per call a read of each value and its type conversion (for the
    positional styles of SQLite and others; a merge of dictionaries for named ones).
    """

    def __init__(self, compiled: sa.sql.compiler.Compiled, dialect: sa.Dialect, defaults: dict[str, Any]):
        self.sql = compiled.string
        binds = compiled.bind_names  # BindParameter -> the name the SQL uses
        if any(bind.callable is not None or bind.expanding for bind in binds):
            raise TypeError(f"not a hot-path statement (computed or expanding binds): {self.sql}")
        #: The caller's key for each name (anonymous binds have generated names).
        self.names = {bind.key: name for bind, name in binds.items()}
        #: What the statement gives itself: literal values, and the constant column defaults.
        self.fixed = {name: bind.value for bind, name in binds.items() if not bind.required}
        self.fixed.update((self.names[key], value) for key, value in defaults.items() if key in self.names)
        self.order = list(compiled.positiontup) if dialect.paramstyle in ("qmark", "numeric", "format") else None
        self.processors = [
            (name, processor)
            for bind, name in binds.items()
            if (processor := bind.type._cached_bind_processor(dialect)) is not None
        ]
        self.returns_id = bool(getattr(compiled, "implicit_returning", None) or compiled.returning)
        # For a positional style, each position read straight from the caller's values: the
        # caller's key (None for a name it cannot give), what stands in when it gives none, and
        # the conversion. A name neither given nor fixed is missing (a KeyError, as SQLAlchemy's).
        self.slots = None if self.order is None else [self._slot(name) for name in self.order]

    def _slot(self, name: str) -> tuple[str | None, str, Any, Callable[[Any], Any] | None]:
        key = next((key for key, named in self.names.items() if named == name), None)
        fixed = self.fixed.get(name, _MISSING)
        processor = dict(self.processors).get(name)
        if key is None and fixed is not _MISSING and processor is not None:  # a constant: converted once
            return None, name, processor(fixed), None
        return key, name, fixed, processor

    def parameters(self, values: dict[str, Any]) -> Any:
        if self.slots is not None:
            get = values.get
            row = []
            for key, name, fixed, processor in self.slots:
                value = fixed if key is None else get(key, fixed)
                if value is _MISSING:
                    raise KeyError(name)
                row.append(value if processor is None else processor(value))
            return tuple(row)
        names = self.names
        params = self.fixed.copy()
        for key, value in values.items():
            name = names.get(key)
            if name is not None:
                params[name] = value
        for name, processor in self.processors:
            params[name] = processor(params[name])
        return params


class Statement:
    """A statement of the hot path.

    Args:
        statement: an INSERT, UPDATE, DELETE or SELECT built with SQLAlchemy Core.
        keys: for an INSERT, the columns every call gives (the others get their defaults).
    """

    def __init__(self, statement: sa.Executable, keys: Sequence[str] | None = None):
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        # Column defaults are applied by SQLAlchemy's execution, which this path skips: apply the
        # (constant) defaults of an INSERT's table here.
        table = getattr(statement, "table", None)
        self.defaults = {
            column.key: column.default.arg
            for column in (table.columns if keys is not None and table is not None else ())
            if column.default is not None and column.default.is_scalar
        }
        self._by_dialect: dict[str, _Compiled] = {}

    def _for(self, conn: sa.Connection) -> _Compiled:
        dialect = conn.dialect
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _Compiled(
                self.statement.compile(dialect=dialect, column_keys=self.keys), dialect, self.defaults
            )
        return compiled

    def run(self, conn: sa.Connection, values: dict[str, Any]) -> Any:
        """Execute once; returns the DBAPI cursor (for ``rowcount`` or rows)."""
        compiled = self._for(conn)
        cursor = conn.connection.cursor()
        cursor.execute(compiled.sql, compiled.parameters(values))
        return cursor

    def insert(self, conn: sa.Connection, values: dict[str, Any]) -> int:
        """Execute an INSERT; returns the new row's id."""
        compiled = self._for(conn)
        cursor = conn.connection.cursor()
        cursor.execute(compiled.sql, compiled.parameters(values))
        return cursor.fetchone()[0] if compiled.returns_id else cursor.lastrowid

    def run_many(self, conn: sa.Connection, rows: Iterable[dict[str, Any]]) -> None:
        """Execute once per row (an INSERT of many rows, say)."""
        compiled = self._for(conn)
        conn.connection.cursor().executemany(compiled.sql, [compiled.parameters(row) for row in rows])
