"""Statements of the ledger's hot paths, compiled once and run on the DBAPI cursor.

The statements are ordinary SQLAlchemy Core constructs, written once; `Fast` compiles each for
the connection's dialect and the parameter names it is given (once), and runs it on the DBAPI
cursor of the connection: sqlite3's, or SQLAlchemy's asyncpg adapter's (which keeps its own
prepared statements and begins the transaction as for any statement). Values go in and come
out through the column types' own bind and result processors, so they are exactly what
`Connection.execute` gives (e.g. UTC datetimes).

Why: `Connection.execute` builds an execution context, fires events and builds result metadata
for every statement, which costs several times what SQLite needs to run an indexed statement,
and a purchase is several statements (docs/BENCHMARKS.md, "Figures that were in the code").

What stays SQLAlchemy's: the transaction (begun and committed by the engine: BEGIN IMMEDIATE
on SQLite, the adapter's transaction on PostgreSQL), the connection pool, and error handling:
a driver error arrives as SQLAlchemy's exception (`sqlalchemy.exc.IntegrityError`, ...), and a
dead connection is invalidated with the whole pool, as for any other statement.

Only public interfaces are used (PEP 249 cursors, `compile()`, `TypeEngine.dialect_impl()`
and its processors, `DBAPIError.instance`, `Dialect.is_disconnect`), so a patch release of
SQLAlchemy cannot break this module unnoticed.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from sqlalchemy import Connection, event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any] | None
_LATER = "loyalty_fast_later"  # in Connection.info: the writes `later` deferred
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


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).result_processor(dialect, None)


class _Compiled:
    __slots__ = ("binders", "defaults", "names", "readers", "returns_rows", "row_type", "sql")

    def __init__(self, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup or [])
        binds = compiled.binds  # name -> BindParameter
        # Values of the statement's own literals (status == "active", coalesce(..., 0), ...);
        # a named parameter has none and must be given.
        values = compiled.construct_params(_check=False)
        self.defaults: dict[str, Any] = {
            name: values[name] for name in self.names if not binds[name].required
        }
        self.binders: list[Processor] = [
            _bind_processor(binds[name].type, dialect) for name in self.names
        ]
        # What comes back: a SELECT's columns, or an INSERT's or UPDATE's RETURNING.
        columns = list(statement.exported_columns)  # type: ignore[attr-defined]
        self.returns_rows = bool(columns)
        self.row_type: Any = namedtuple(  # type: ignore[misc]
            "FastRow", [column.key for column in columns], rename=True
        )
        self.readers: list[Processor] = [
            _result_processor(column.type, dialect) for column in columns
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
        _run_deferred(conn)
        args = compiled.args(params)
        records, rowcount = _execute(conn, compiled.sql, args, compiled.returns_rows)
        return Rows([compiled.row(record) for record in records], rowcount)

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set (no rows come back)."""
        if not rows:
            return
        compiled = self._for(conn, tuple(rows[0]))
        _run_deferred(conn)
        args = [compiled.args(params) for params in rows]
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(compiled.sql, args)
            finally:
                cursor.close()
        except BaseException as error:
            raise_as_sqlalchemy(conn, error, compiled.sql, args)


def _execute(
    conn: Connection, sql: str, args: tuple[Any, ...], returns_rows: bool
) -> tuple[Sequence[Any], int]:
    try:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, args)
            return (cursor.fetchall() if returns_rows else []), cursor.rowcount
        finally:
            cursor.close()
    except BaseException as error:
        raise_as_sqlalchemy(conn, error, sql, args)


def later(conn: Connection, statement: Fast, params: Mapping[str, Any]) -> None:
    """Run a write whose rows are not needed, now or a little later: inside `deferring` on
    PostgreSQL it waits for the next statement on the connection or the end of the block,
    whichever comes first, and then runs in one statement with the other writes waiting (one
    round trip instead of one each). Whatever runs after it through Fast or
    `Connection.execute` sees it (not `exec_driver_sql` or a raw cursor, which SQLAlchemy's
    before_execute event does not see; the ledger uses neither). Anywhere else it runs now."""
    pending = conn.info.get(_LATER) if conn.dialect.driver == "asyncpg" else None
    if pending is None:
        statement(conn, params)
        return
    pending.append((statement, params))


@contextlib.contextmanager
def deferring(conn: Connection) -> Iterator[None]:
    """A transaction's work in which `later` may defer writes: those still waiting at the end
    of the block run then; if the block raises, they are dropped with the transaction."""
    if conn.dialect.driver != "asyncpg":
        yield
        return
    info = conn.info  # kept: the connection may be invalidated by the time the block ends
    pending: list[tuple[Fast, Mapping[str, Any]]] = []
    info[_LATER] = pending
    try:
        yield
        _run_deferred(conn)
    finally:
        if info.get(_LATER) is pending:
            del info[_LATER]


def run_deferred_before_any_statement(engine: Engine) -> None:
    """Make every statement SQLAlchemy runs on this engine's connections first run the writes
    deferred there (`later`), as Fast's own statements do."""
    if engine.dialect.driver == "asyncpg" and not event.contains(
        engine, "before_execute", _before_execute
    ):
        event.listen(engine, "before_execute", _before_execute)


def _before_execute(conn: Connection, *_args: Any) -> None:
    _run_deferred(conn)


def _shift(placeholder: re.Match[str], by: int) -> str:
    return f"${int(placeholder.group(1)) + by}"


def _run_deferred(conn: Connection) -> None:
    """Run the writes `later` deferred, if any: as data-modifying CTEs of one statement on
    PostgreSQL, which runs each exactly once. Writes to the same table more than once run one
    by one instead (two changes of one row in one statement would be undefined)."""
    if conn.dialect.driver != "asyncpg":
        return
    pending: list[tuple[Fast, Mapping[str, Any]]] | None = conn.info.get(_LATER)
    if not pending:
        return
    waiting = pending[:]
    pending.clear()
    tables = [getattr(statement.statement, "table", None) for statement, _ in waiting]
    if len(waiting) < 2 or None in tables or len(set(tables)) < len(tables):
        for statement, params in waiting:
            statement(conn, params)
        return
    parts = [statement._for(conn, tuple(params)) for statement, params in waiting]
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
        for part, (_, params) in zip(parts, waiting, strict=True)
        for value in part.args(params)
    )
    _execute(conn, sql, args, returns_rows=False)


def raise_as_sqlalchemy(conn: Connection, error: BaseException, sql: str, args: Any) -> NoReturn:
    """Raise an error of a statement run on the DBAPI cursor as `Connection.execute` would:
    a DBAPI error wrapped in SQLAlchemy's class for it; on a dead connection, the connection
    and the pool invalidated; on an interrupted statement (cancelled, KeyboardInterrupt), the
    connection invalidated, its state being unknown. Anything else goes up unchanged."""
    dialect = conn.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    if not isinstance(error, Exception):
        if not conn.closed:
            conn.invalidate()
        raise error
    if not isinstance(error, dbapi_error):
        raise error
    dead = dialect.is_disconnect(error, conn.connection.dbapi_connection, None)
    if dead:
        # SQLAlchemy's handling of a dead connection (this one and every other connection the
        # pool opened before it invalidated, so that a retry gets a new one) has no public
        # entry but a statement, and on a dead connection every statement fails the same way.
        try:
            conn.exec_driver_sql("SELECT 1")
        except DBAPIError as handled:
            dead = handled.connection_invalidated
        else:  # the connection was alive after all
            dead = False
    raise DBAPIError.instance(
        sql,
        args,
        error,
        dbapi_error,
        hide_parameters=conn.engine.hide_parameters,
        connection_invalidated=dead,
        dialect=dialect,
    ) from error
