"""One transaction as one synchronous function.

The ledger's operations and queries are written as plain functions of a SQLAlchemy
`Connection`, and this class runs each in its own transaction:

* SQLite (a file): writes through a synchronous pysqlite engine on the same file, with the
  same pragmas and BEGIN IMMEDIATE, right on the event loop's thread when the write lock can
  be had at once and nothing waits on the writer thread (a purchase takes a few hundred
  microseconds; the hop to a thread and back cost more than that), else on one dedicated
  writer thread, where they queue in order and wait for the lock without blocking the loop
  (another process writing; a long batch of a scheduled job, `write(..., long=True)`).
  Either way a whole operation is one transaction, not one thread hop per statement as
  through aiosqlite.
  Reads run right on the event loop's thread, on their own connection, in a plain BEGIN (a WAL
  snapshot: a reader never waits for the writer). The ledger's reads are indexed lookups of one
  member, which take less than a hop to another thread and back. Their busy timeout is short
  (READ_BUSY_TIMEOUT_MS), so a database that another process keeps locked in some unusual way
  gives an error rather than a frozen bot.
* PostgreSQL (and in-memory SQLite): the async engine's own sync engine, inside one
  `greenlet_spawn` per transaction (connect, begin, the function, commit, return to the pool),
  which drives the same function over asyncpg as `AsyncConnection.run_sync` does. Through
  AsyncConnection it took five spawns (connect, begin, run_sync, commit, close).

Connections are kept, not checked out of the pool per transaction: the writer thread holds one,
and each thread that reads holds one for snapshot reads and one for single statements. A pool
checkout and return (with its reset) cost more Python than a whole indexed read.

Threads and the GIL: the writer gives up the GIL inside every SQLite call and then has to get
it back from the event loop's thread, which hands it over only every "switch interval" (5 ms by
default): a transaction of several statements waits that long for each while the loop is busy,
so the application lowers the interval with `share_the_gil_quickly()`. It is process-wide, so
the application sets it, not this class.

(What each of these choices gained: docs/BENCHMARKS.md, "Figures that were in the code".)

A transaction whose connection turns out to be dead (a restarted server) is run once more on a
fresh connection; nothing of the failed attempt was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from storage.engine import (
    NO_SNAPSHOT,
    READ_ONLY,
    create_sync_sqlite_engine,
    is_sqlite,
    readonly,
    sqlite_file,
)
from storage.fast import deferring, run_deferred_before_any_statement

T = TypeVar("T")
log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.0002
READ_BUSY_TIMEOUT_MS = 2_000
CONFLICT_ATTEMPTS = 5  # a write PostgreSQL rolled back to break a deadlock runs again


def share_the_gil_quickly() -> None:
    """Let threads that wait for the GIL get it within 0.2 ms instead of 5 ms (see above)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


class SyncDatabase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        run_deferred_before_any_statement(engine.sync_engine)
        url = engine.url.render_as_string(hide_password=False)
        self._sync: Engine | None = None
        self._inline: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._sync_reader: Engine | None = None
        self._async_reader = readonly(engine)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._on_thread = 0  # writes queued or running on the writer thread
        if is_sqlite(url) and sqlite_file(url) is not None:
            self._sync = create_sync_sqlite_engine(url)
            # For writes on the loop's thread: never waits for the lock (see _run_inline); a
            # connection per thread that writes, as for readers.
            self._inline = create_sync_sqlite_engine(url, busy_timeout_ms=0, for_readers=True)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
            self._sync_reader = create_sync_sqlite_engine(
                url, busy_timeout_ms=READ_BUSY_TIMEOUT_MS, for_readers=True
            ).execution_options(**{READ_ONLY: True})
            self._single_reader = self._sync_reader.execution_options(**{NO_SNAPSHOT: True})
        self._kept = threading.local()  # this thread's connections (SQLite file only)
        self._all_kept: list[Connection] = []
        self._kept_lock = threading.Lock()

    async def read(self, query: Callable[[Connection], T], *, single: bool = False) -> T:
        """Run `query` in a read-only transaction (never write through it).

        single: the query is one statement, which SQLite runs as its own snapshot without
        BEGIN and COMMIT around it."""
        try:
            return await self._read_once(query, single)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return await self._read_once(query, single)  # a read is always safe to repeat

    async def _read_once(self, query: Callable[[Connection], T], single: bool) -> T:
        if self._sync_reader is not None:
            # On the loop's thread (see above), on a connection this thread keeps.
            conn = self._kept_connection("single" if single else "snapshot")
            with _kept_transaction(conn):
                return query(conn)
        # PostgreSQL: one statement needs no transaction around it (no BEGIN/COMMIT trips).
        engine = (self._autocommit if single else self._async_reader).sync_engine

        def in_greenlet() -> T:
            with engine.connect() as conn:  # rolled back when it goes back to the pool
                return query(conn)

        return await greenlet_spawn(in_greenlet)  # type: ignore[no-any-return]

    async def write(self, work: Callable[[Connection], T], *, long: bool = False) -> T:
        """Run `work` in one transaction: committed if it returns, rolled back if it raises.

        long: the work may take long (a batch of a scheduled job): on SQLite it always goes to
        the writer thread, never on the event loop's thread (see _run_inline).

        A connection found dead before COMMIT was sent gets one more try on a fresh one. One
        that dies during COMMIT is not retried: whether it committed is unknown, and the error
        goes to the caller (operations from outside carry an idempotency key, so their retry
        gets the first result back if it did commit). A transaction PostgreSQL rolled back to
        break a deadlock runs again, up to CONFLICT_ATTEMPTS times in all: `work` must be safe
        to run again after a rollback (it is a function of what it reads).

        Cancelling the caller does not stop a SQLite write already on the writer thread: it
        runs to its end and commits. On PostgreSQL the transaction is rolled back."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            committing = [False]
            try:
                if not long and self._on_thread == 0 and self._sync is not None:
                    done, result = self._run_inline(work, committing)
                    if done:
                        await asyncio.sleep(0)  # a loop of writes still lets others run
                        return result  # type: ignore[return-value]
                return await self._run_once(work, committing)
            except DBAPIError as exc:
                if _lost_a_conflict(exc) and attempt < CONFLICT_ATTEMPTS:
                    # PostgreSQL rolled the whole transaction back: nothing of it stands.
                    await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
                    continue
                if not exc.connection_invalidated or committing[0]:
                    raise
                return await self._run_once(work, [False])
        raise AssertionError("unreachable")

    def _run_inline(
        self, work: Callable[[Connection], T], committing: list[bool]
    ) -> tuple[bool, T | None]:
        """A SQLite write right here on the event loop's thread, when nothing waits on the
        writer thread and no other process holds the write lock: (True, result); else
        (False, None), and nothing was done.

        A hop to the writer thread and back costs more than the purchase itself. The loop is
        blocked meanwhile, as for the inline reads (long work is sent to the thread). BEGIN
        IMMEDIATE does not wait here (busy timeout 0): if another process writes, the thread
        waits instead. Nothing else on this thread can start a write in between: the work is
        synchronous. SQLite's automatic checkpoint (every 1,000 WAL pages) runs in some of
        these COMMITs, which makes those few slower."""
        conn = self._kept_connection("inline")
        try:
            transaction = conn.begin()  # BEGIN IMMEDIATE: the write lock, or "locked" at once
        except OperationalError as error:
            _end_what_is_left(conn)
            if not _locked(error):
                raise
            return False, None
        try:
            with transaction:
                result = _and_flush(conn, work)
                committing[0] = True  # leaving the block sends COMMIT
        except BaseException:
            _end_what_is_left(conn)
            raise
        return True, result

    async def _run_once(self, work: Callable[[Connection], T], committing: list[bool]) -> T:
        if self._sync is not None and self._thread is not None:

            def transaction() -> T:
                conn = self._kept_connection("writer")
                with _kept_transaction(conn):
                    result = _and_flush(conn, work)
                    committing[0] = True  # leaving the block sends COMMIT
                    return result

            # Counted until the job itself ends, not until its caller stops waiting (a caller
            # cancelled while the job waits for another process's lock): a write that comes
            # later must queue behind it, not run inline before it.
            loop = asyncio.get_running_loop()
            job = self._thread.submit(transaction)
            self._on_thread += 1
            job.add_done_callback(functools.partial(_tell_loop, loop, self._thread_job_done))
            return await asyncio.wrap_future(job)
        sync_engine = self.engine.sync_engine

        def in_greenlet() -> T:
            with sync_engine.begin() as conn:
                result = _and_flush(conn, work)
                committing[0] = True
                return result

        return await greenlet_spawn(in_greenlet)  # type: ignore[no-any-return]

    async def checkpoint(self) -> None:
        """On a SQLite file: copy the WAL into the database and empty it, so that the pages
        written before (an erased member's data, say) leave no copy there. It runs on the
        writer thread after the writes queued before it, and waits (the busy timeout) for
        readers of other processes to move on (if they do not, it says so in the log; the
        next checkpoint copies and empties the WAL). Nothing to do elsewhere."""
        if self._sync is None or self._thread is None:
            return

        def truncate() -> bool:
            conn = self._kept_connection("writer")
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:  # outside a transaction, as SQLite requires
                busy, _pages, _copied = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cursor.close()
            return busy == 0

        loop = asyncio.get_running_loop()
        job = self._thread.submit(truncate)
        self._on_thread += 1  # writes wait behind it, as behind any job on the thread
        job.add_done_callback(functools.partial(_tell_loop, loop, self._thread_job_done))
        if not await asyncio.wrap_future(job):
            log.warning("the WAL could not be emptied: another process kept reading it")

    def _thread_job_done(self) -> None:
        self._on_thread -= 1

    def _kept_connection(self, role: str) -> Connection:
        """The connection this thread keeps for `role` (opened on first use). One that was
        invalidated reconnects on its next `begin()`, as SQLAlchemy's Connection does."""
        conn: Connection | None = getattr(self._kept, role, None)
        if conn is None:
            engine = {
                "writer": self._sync,
                "inline": self._inline,
                "snapshot": self._sync_reader,
            }.get(role, self._single_reader)
            assert engine is not None
            conn = engine.connect()
            setattr(self._kept, role, conn)
            with self._kept_lock:
                self._all_kept.append(conn)
        return conn

    def close(self) -> None:
        """Close the SQLite connections and stop the threads (waits for running transactions)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        with self._kept_lock:
            kept, self._all_kept = self._all_kept, []
            self._kept = threading.local()
        for conn in kept:
            conn.close()
        for engine in (self._sync, self._inline, self._sync_reader):
            if engine is not None:
                engine.dispose()


def _tell_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], None], _job: object) -> None:
    """From the writer thread: run `callback` on the loop (unless it has closed meanwhile)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _locked(error: OperationalError) -> bool:
    """SQLite's "database is locked": another connection holds the write lock."""
    return "locked" in str(error.orig).lower() or "busy" in str(error.orig).lower()


def _lost_a_conflict(error: DBAPIError) -> bool:
    """PostgreSQL chose this transaction to break a deadlock (two transactions locking the
    same members in opposite orders: a first purchase locks the invited member, then the
    inviter; a burn batch locks in id order), or could not serialize it."""
    return getattr(error.orig, "sqlstate", None) in {"40P01", "40001"}


def _and_flush(conn: Connection, work: Callable[[Connection], T]) -> T:
    """`work`, with the writes it deferred (storage.fast.later) run by its end."""
    with deferring(conn):
        return work(conn)


@contextlib.contextmanager
def _kept_transaction(conn: Connection) -> Iterator[None]:
    """`conn.begin()` on a kept SQLite connection, and after a failure whatever SQLite still
    has open (a COMMIT that failed leaves its transaction open, and SQLAlchemy then considers
    it over) rolled back, or the connection given up. A pooled connection would get this from
    the pool's reset; a kept one would otherwise hold the write lock until its next
    transaction."""
    try:
        with conn.begin():
            yield
    except BaseException:
        _end_what_is_left(conn)
        raise


def _end_what_is_left(conn: Connection) -> None:
    if conn.invalidated or conn.closed:
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is None or not getattr(dbapi, "in_transaction", False):
        return
    try:
        dbapi.rollback()
    except Exception:
        conn.invalidate()
