"""storage.transactions: a dead connection before COMMIT is retried once; during COMMIT it is not
(the outcome is unknown, so the caller must decide)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.transactions import SyncDatabase


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
    dialect: Any = (db._sync or engine.sync_engine).dialect

    def commit_and_lose(_dbapi_connection: Any) -> None:
        raise _gone()

    monkeypatch.setattr(dialect, "do_commit", commit_and_lose)

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
