"""Engine creation for SQLite (embedded default) and PostgreSQL.

SQLite: the driver's own transaction handling loses updates under concurrency, so it is turned
off and every transaction starts with BEGIN IMMEDIATE (one writer at a time, no read-to-write
upgrade deadlock), in WAL mode with a busy timeout. This is SQLAlchemy's documented recipe.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, QueuePool, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.fast import raise_as_sqlalchemy

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Every engine is made with hide_parameters: an error's text (logged) never carries the values
# of a statement, which may be a phone, a name or a message to a member.
READ_ONLY = "loyalty_read_only"
NO_SNAPSHOT = "loyalty_no_snapshot"  # with READ_ONLY: a single statement, no BEGIN needed
SQLITE_POOL_SIZE = 4
PG_POOL_RECYCLE_S = 1800


def is_sqlite(url: str) -> bool:
    """True for SQLite URLs."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An AsyncEngine with the settings each backend needs to keep the ledger correct."""
    if is_sqlite(url):
        return _create_sqlite_engine(url)
    # No pre-ping (a round trip before every transaction). After PostgreSQL restarts, the first
    # statement on each old connection fails; SQLAlchemy then drops the whole pool, so that is
    # one failure, not one per connection. The ledger (storage.transactions) retries that one;
    # elsewhere it is one error answer, and the outbox and the jobs try again on their own.
    # No overflow: a connection beyond pool_size is closed as soon as it is returned while the
    # pool is full, so a steady load above pool_size opened and closed connections all the time,
    # each a new PostgreSQL backend (docs/BENCHMARKS.md, "Figures that were in the code").
    # Above pool_size, work waits for a connection instead. No code here
    # holds one connection while asking for another (each `async with engine.begin()` block
    # passes its connection on; the scheduler's leader keeps one for the process's life), so
    # the wait ends; keep it that way.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=PG_POOL_RECYCLE_S,
        hide_parameters=True,
    )


def _create_sqlite_engine(url: str) -> AsyncEngine:
    database = sqlite_file(url)
    if database:
        make_private(Path(database))
    # Few connections: SQLite has one writer at a time, and every extra waiting writer
    # polls in its busy handler (sleeps of up to 100 ms) instead of queueing in order.
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=0,
        hide_parameters=True,
    )
    install_sqlite_listeners(engine.sync_engine)
    return engine


def make_private(database: Path) -> None:
    """Personal data, readable by its owner only: the database's directory 0700 when made
    here, and the file 0600 before SQLite opens it (SQLite gives the -wal and -shm files the
    database file's mode). A file readable by others before is made private."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return  # an empty file is an empty database
    except FileExistsError:
        pass
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(OSError):  # gone meanwhile, or someone else's
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    parsed = make_url(url)
    database = parsed.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    return database


def create_sync_sqlite_engine(
    url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, for_readers: bool = False
) -> Engine:
    """A synchronous engine on the same SQLite file, with the same pragmas and locking: one
    connection for the ledger's writer thread, or (for_readers) two for each thread that reads,
    never waiting for one (storage.transactions)."""
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = create_sync_engine(
        sync_url,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        poolclass=QueuePool,
        pool_size=2 if for_readers else 1,
        max_overflow=-1 if for_readers else 0,
        hide_parameters=True,
    )
    install_sqlite_listeners(engine, busy_timeout_ms)
    return engine


def install_sqlite_listeners(
    sync_engine: Engine, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> None:
    """WAL, busy timeout, foreign keys, secure delete; BEGIN IMMEDIATE for every transaction
    that may write."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # What is deleted or overwritten is zeroed, not left in free space: an erased member's
        # data leaves no copy in the file (the WAL is emptied by SyncDatabase.checkpoint).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads through `readonly(engine)` take no lock (WAL gives them a snapshot); every
        # other transaction may write, so it takes the write lock up front.
        # The driver's cursor directly: this runs before every transaction, and a statement
        # through SQLAlchemy's execution machinery costs more than SQLite takes to begin.
        options = conn.get_execution_options()
        if options.get(NO_SNAPSHOT):
            return  # one read statement, which is its own snapshot
        statement = "BEGIN" if options.get(READ_ONLY) else "BEGIN IMMEDIATE"
        try:
            cursor = conn.connection.dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
        except Exception as error:  # e.g. "database is locked": as SQLAlchemy would raise it
            raise_as_sqlalchemy(conn, error, statement, ())


def readonly(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool for transactions that only read. On SQLite they start with a
    plain BEGIN and never wait for a writer; never write through it (a deferred transaction
    that upgrades to writing can fail with "database is locked")."""
    return engine.execution_options(**{READ_ONLY: True})
