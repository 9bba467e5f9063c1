"""Statements of the ledger's hot paths, compiled once and run on the driver itself.

The statements are ordinary SQLAlchemy Core constructs, written once; `Fast` compiles each for
the connection's dialect and the parameter names it is given (once), and runs it straight on the
driver: sqlite3's cursor, or asyncpg's connection (from inside `AsyncConnection.run_sync`, as
SQLAlchemy's own asyncpg adapter does). The bind and result processors of the column types are
SQLAlchemy's own (e.g. UTC datetimes), so values go in and come out exactly as through
`Connection.execute`.

Why: through `Connection.execute` every statement costs 40-150 microseconds of Python (execution
context, events, result metadata, the asyncpg adapter); SQLite runs the same statement in a
few, and a purchase is seven statements. Measured with bench/ledger.py and bench/api.py (see
docs/BENCHMARKS.md).

What stays SQLAlchemy's: the transaction (begun and committed by the engine: BEGIN IMMEDIATE
on SQLite, asyncpg's transaction on PostgreSQL), the connection pool, and error handling: a
driver error is handed to `Connection._handle_dbapi_exception`, so an integrity error arrives as
`sqlalchemy.exc.IntegrityError` and a dead connection is invalidated exactly as for any other
statement.
"""

from __future__ import annotations

import functools
import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.util import await_only

Processor = Callable[[Any], Any] | None
_LATER = "loyalty_fast_later"  # in Connection.info: the writes deferred to `flush`
_PLACEHOLDER = re.compile(r"\$(\d+)")
_COMBINED: dict[tuple[_Compiled, ...], str] = {}  # keeps its keys alive: no reused ids
_DRIVERS = frozenset({"pysqlite", "aiosqlite", "asyncpg"})  # the ones run directly


class Rows:
    """What a statement returned: the few methods of SQLAlchemy's Result the ledger uses."""

    __slots__ = ("_rows", "rowcount")  # rowcount: -1 where the driver does not tell

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def all(self) -> list[Any]:
        return self._rows

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        if not self._rows:
            return None
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _Compiled:
    __slots__ = ("binders", "defaults", "names", "readers", "returns_rows", "row_type", "sql")

    def __init__(self, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup or [])
        # Values of the statement's own literals (status == "active", coalesce(..., 0), ...);
        # a named parameter has none and must be given.
        literals = {name for bind, name in compiled.bind_names.items() if not bind.required}
        values = compiled.construct_params(_check=False)
        self.defaults: dict[str, Any] = {name: values[name] for name in literals}
        processors = compiled._bind_processors
        self.binders: list[Processor] = [processors.get(name) for name in self.names]
        columns = compiled._result_columns or []
        self.returns_rows = bool(columns)
        self.row_type: Any = namedtuple("FastRow", [c[0] for c in columns], rename=True)  # type: ignore[misc]
        self.readers: list[Processor] = [
            c[3]._cached_result_processor(dialect, None) for c in columns
        ]

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            values = [
                params[name] if name in params else self.defaults[name] for name in self.names
            ]
        except KeyError as missing:
            raise TypeError(f"a value is required for the parameter {missing}") from None
        return tuple(
            binder(value) if binder is not None else value
            for value, binder in zip(values, self.binders, strict=True)
        )

    def row(self, values: Sequence[Any]) -> Any:
        return self.row_type._make(
            reader(value) if reader is not None else value
            for reader, value in zip(self.readers, values, strict=True)
        )


class Fast:
    """One Core statement (with `bindparam()`s or insert/update columns given as parameters)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def _for(self, conn: Connection, keys: tuple[str, ...]) -> _Compiled:
        dialect = conn.dialect
        compiled = self._compiled.get((dialect.driver, keys))
        if compiled is None:
            if dialect.driver not in _DRIVERS:
                raise NotImplementedError(
                    f"storage.fast runs on {sorted(_DRIVERS)}, not on {dialect.driver}"
                )
            compiled = _Compiled(self.statement, dialect, keys)
            self._compiled[(dialect.driver, keys)] = compiled
        return compiled

    def __call__(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Rows:
        """Run once with these parameters (inside the connection's transaction)."""
        params = params or {}
        compiled = self._for(conn, tuple(params))
        args = compiled.args(params)
        try:
            if conn.dialect.driver == "asyncpg":
                records: Sequence[Any]
                records, rowcount = _asyncpg_fetch(conn, compiled.sql, args)
            else:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(compiled.sql, args)
                    records = cursor.fetchall() if compiled.returns_rows else []
                    rowcount = cursor.rowcount
                finally:
                    cursor.close()
        except BaseException as error:
            _raise_as_sqlalchemy(conn, error, compiled.sql, args)
        return Rows([compiled.row(record) for record in records], rowcount)

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set (no rows come back)."""
        if not rows:
            return
        compiled = self._for(conn, tuple(rows[0]))
        args = [compiled.args(params) for params in rows]
        try:
            if conn.dialect.driver == "asyncpg":
                driver = _asyncpg_connection(conn)
                await_only(driver.executemany(compiled.sql, args))
            else:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.executemany(compiled.sql, args)
                finally:
                    cursor.close()
        except BaseException as error:
            _raise_as_sqlalchemy(conn, error, compiled.sql, args)


def later(conn: Connection, statement: Fast, params: Mapping[str, Any]) -> None:
    """Run a write whose rows are not needed: on PostgreSQL, inside a transaction that will
    `flush` (storage.transactions.SyncDatabase.write), at its end, in one statement with the
    other deferred writes (one round trip instead of one each); anywhere else at once. Use it
    only for the last write to its table in the transaction: nothing in the transaction may
    read what it writes before the flush."""
    pending = conn.info.get(_LATER) if conn.dialect.driver == "asyncpg" else None
    if pending is None:
        statement(conn, params)
        return
    pending.append((statement, params))


def _shift(placeholder: re.Match[str], by: int) -> str:
    return f"${int(placeholder.group(1)) + by}"


def will_flush(conn: Connection) -> None:
    """The caller will `flush` this transaction before its COMMIT: `later` may defer writes.
    (Drops anything a transaction that failed before its flush left behind.)"""
    conn.info[_LATER] = []


def flush(conn: Connection) -> None:
    """Run the deferred writes: as data-modifying CTEs of one statement on PostgreSQL, which
    runs each exactly once. Writes to the same table more than once run one by one instead
    (two changes of one row in one statement would be undefined)."""
    pending: list[tuple[Fast, Mapping[str, Any]]] = conn.info.pop(_LATER, None) or []
    tables = [getattr(statement.statement, "table", None) for statement, _ in pending]
    if len(pending) < 2 or None in tables or len(set(tables)) < len(tables):
        for statement, params in pending:
            statement(conn, params)
        return
    parts = [statement._for(conn, tuple(params)) for statement, params in pending]
    key = tuple(parts)
    sql = _COMBINED.get(key)
    if sql is None:
        ctes, offset = [], 0
        for i, part in enumerate(parts):
            shifted = _PLACEHOLDER.sub(functools.partial(_shift, by=offset), part.sql)
            ctes.append(f"w{i} AS ({shifted})")
            offset += len(part.names)
        sql = _COMBINED[key] = f"WITH {', '.join(ctes)} SELECT 1"
    args = tuple(
        value
        for part, (_, params) in zip(parts, pending, strict=True)
        for value in part.args(params)
    )
    try:
        _asyncpg_fetch(conn, sql, args)
    except BaseException as error:
        _raise_as_sqlalchemy(conn, error, sql, args)


def _asyncpg_connection(conn: Connection) -> Any:
    """asyncpg's connection, inside the transaction SQLAlchemy's adapter keeps on it."""
    adapted = conn.connection.dbapi_connection
    if adapted._transaction is None:  # type: ignore[union-attr]
        # The adapter begins lazily, on its first statement; ours may come first.
        await_only(adapted._start_transaction())  # type: ignore[union-attr]
    return adapted._connection  # type: ignore[union-attr]


def _asyncpg_fetch(conn: Connection, sql: str, args: tuple[Any, ...]) -> tuple[list[Any], int]:
    """Rows through asyncpg's own cache of prepared statements; the row count is not known
    (-1) unless rows come back."""
    records = await_only(_asyncpg_connection(conn).fetch(sql, *args))
    return records, len(records) if records else -1


def _raise_as_sqlalchemy(conn: Connection, error: BaseException, sql: str, args: Any) -> None:
    """Raise a driver error as Connection.execute would (wrapped, connection invalidated on a
    disconnect), and invalidate the connection when a statement was interrupted (cancelled,
    KeyboardInterrupt) as it does; anything else goes up unchanged."""
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.driver == "asyncpg" and isinstance(error, Exception):
        try:
            dbapi._handle_exception(error)  # type: ignore[union-attr]  # asyncpg -> DBAPI error
        except Exception as translated:
            error = translated
    interrupted = not isinstance(error, Exception)
    if not interrupted and not isinstance(error, conn.dialect.loaded_dbapi.Error):
        raise error
    conn._handle_dbapi_exception(error, sql, args, None, None)  # always raises
    raise AssertionError("unreachable")
