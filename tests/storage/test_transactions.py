"""storage.transactions: a dead connection before COMMIT is retried once; during COMMIT it is not
(the outcome is unknown, so the caller must decide)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine
from storage.transactions import SyncDatabase
from tests.conftest import sqlite_url


def _gone() -> DBAPIError:
    return DBAPIError("SELECT 1", None, Exception("server closed the connection"), False, True)


async def test_a_connection_lost_before_commit_is_retried_once(engine: AsyncEngine) -> None:
    db = SyncDatabase(engine)
    calls: list[int] = []

    def work(conn: Connection) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise _gone()
        return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

    assert await db.write(work) == 42
    assert len(calls) == 2
    db.close()


async def test_a_connection_lost_during_commit_is_not_retried(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = SyncDatabase(engine)
    calls: list[int] = []

    def commit_and_lose(_dbapi_connection: Any) -> None:
        raise _gone()

    # SQLite writes on the loop's thread (db._inline) or on the writer thread (db._sync).
    for sync in {db._inline, db._sync, engine.sync_engine} - {None}:
        monkeypatch.setattr(sync.dialect, "do_commit", commit_and_lose)  # type: ignore[union-attr]

    def work(conn: Connection) -> None:
        calls.append(1)
        conn.execute(text("SELECT 1"))

    with pytest.raises(DBAPIError) as raised:
        await db.write(work)
    assert raised.value.connection_invalidated
    assert len(calls) == 1  # not run a second time: it may have committed
    monkeypatch.undo()
    db.close()


async def test_a_kept_connection_that_was_invalidated_reconnects(engine: AsyncEngine) -> None:
    """The writer and the readers keep their connections between transactions (SQLite file);
    one that was invalidated (a disconnect) opens a new one on its next transaction."""
    db = SyncDatabase(engine)

    def break_connection(conn: Connection) -> None:
        conn.execute(text("SELECT 1"))
        conn.invalidate()
        raise _gone()

    with pytest.raises(DBAPIError):
        await db.write(break_connection)
    assert await db.write(lambda conn: conn.execute(text("SELECT 2")).scalar_one()) == 2
    with pytest.raises(DBAPIError):
        await db.read(break_connection)
    assert await db.read(lambda conn: conn.execute(text("SELECT 3")).scalar_one()) == 3
    assert await db.read(lambda conn: conn.execute(text("SELECT 4")).scalar_one(), single=True) == 4
    db.close()


async def test_a_failed_commit_leaves_no_transaction_open_on_the_kept_writer(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A COMMIT that fails (here: a deferred foreign key) must not leave SQLite's transaction,
    and with it the write lock, open on the writer's kept connection. (SQLite only: the kept
    writer is SQLite's, and PostgreSQL's foreign keys here are not deferrable.)"""
    path = tmp_path / "loyalty.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(sqlite_url(path))
    db = SyncDatabase(engine)

    def orphan_lot(conn: Connection) -> None:
        conn.execute(text("PRAGMA defer_foreign_keys = ON"))
        conn.execute(
            text(
                "INSERT INTO lots (member_id, entry_id, points, remaining, status, available_at,"
                " expires_at, created_at) VALUES (424242, 424242, 1, 1, 'active',"
                " '2026-01-01 00:00:00.000000', '2027-01-01 00:00:00.000000',"
                " '2026-01-01 00:00:00.000000')"
            )
        )

    with pytest.raises(IntegrityError):
        await db.write(orphan_lot)
    # Another connection can take the write lock at once, and the writer writes again.
    other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await db.write(lambda conn: conn.execute(text("SELECT 5")).scalar_one()) == 5
    count = await db.read(lambda conn: conn.execute(text("SELECT count(*) FROM lots")).scalar())
    assert count == 0
    db.close()
    await engine.dispose()


@pytest.fixture
async def sqlite_file_db(
    tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[tuple[Path, SyncDatabase]]:
    """A migrated SQLite file and a SyncDatabase on it."""
    path = tmp_path / "loyalty.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(sqlite_url(path))
    db = SyncDatabase(engine)
    yield path, db
    db.close()
    await engine.dispose()


async def test_a_write_waits_on_the_writer_thread_while_another_process_holds_the_lock(
    sqlite_file_db: tuple[Path, SyncDatabase],
) -> None:
    """SQLite writes run on the event loop's thread when they can take the write lock at once
    (no hop to the writer thread); when another process holds it, the write goes to the
    writer thread, which waits for it (the loop is never blocked waiting), and the next
    write runs on the loop's thread again."""
    path, db = sqlite_file_db
    threads: list[str] = []

    def where(conn: Connection) -> int:
        threads.append(threading.current_thread().name)
        return int(conn.execute(text("SELECT count(*) FROM members")).scalar_one())

    assert await db.write(where) == 0
    other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes
    waiting = asyncio.ensure_future(db.write(where))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # it waits on the writer thread; the loop runs on
    other.execute("ROLLBACK")
    other.close()
    assert await waiting == 0
    assert await db.write(where) == 0
    assert threads[0] == threads[2] == threading.current_thread().name  # the loop's thread
    assert threads[1].startswith("ledger-writer")
    assert await db.write(where, long=True) == 0  # a long one always on the writer thread
    assert threads[3].startswith("ledger-writer")


async def test_a_later_write_does_not_overtake_one_whose_caller_gave_up_waiting(
    sqlite_file_db: tuple[Path, SyncDatabase],
) -> None:
    """A write waits on the writer thread for another process's lock; its caller is cancelled
    (a timeout), but the write still runs when the lock comes free: a write sent after it
    must queue behind it, not run inline first (a refund before its purchase)."""
    path, db = sqlite_file_db
    order: list[str] = []

    def write(name: str) -> Any:
        def work(conn: Connection) -> None:
            order.append(name)

        return work

    other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    first = asyncio.ensure_future(db.write(write("first")))
    await asyncio.sleep(0.1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    other.execute("ROLLBACK")
    other.close()
    await db.write(write("second"))
    assert order == ["first", "second"]
