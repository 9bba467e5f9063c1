"""storage.fast runs Core statements on the driver: same values, same errors, same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import fast
from storage.fast import Fast, later
from storage.schema import members, operations
from storage.transactions import SyncDatabase

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
INSERT = Fast(members.insert().returning(members.c.id))
BY_ID = Fast(select(members).where(members.c.id == bindparam("member_id")))
ACTIVE_BY_CARD = Fast(
    select(members.c.id, members.c.created_at).where(
        members.c.card_number == bindparam("card"), members.c.status == "active"
    )
)


def _member(card: str) -> dict[str, object]:
    return {
        "card_number": card,
        "referral_code": f"ref{card}",
        "phone": f"+7999{card[-7:]}",
        "language": "ru",
        "timezone": "Europe/Moscow",
        "created_at": MOMENT,
        "consent_at": MOMENT,
    }


async def test_values_come_back_as_through_sqlalchemy(engine: AsyncEngine) -> None:
    db = SyncDatabase(engine)

    def work(conn: Connection) -> tuple[object, object]:
        member_id = INSERT(conn, _member("100000000009")).scalar_one()
        fast = BY_ID(conn, {"member_id": member_id}).one()
        usual = conn.execute(select(members).where(members.c.id == member_id)).one()
        return fast, usual

    fast, usual = await db.write(work)
    assert tuple(fast) == tuple(usual)
    assert fast.created_at == MOMENT and fast.created_at.tzinfo is not None  # type: ignore[attr-defined]
    # The statement's own literal (status == "active") is bound too.
    found = await db.read(lambda conn: ACTIVE_BY_CARD(conn, {"card": "100000000009"}).all())
    assert [(row.id, row.created_at) for row in found] == [(fast.id, MOMENT)]  # type: ignore[attr-defined]
    db.close()


async def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    db = SyncDatabase(engine)
    await db.write(lambda conn: INSERT(conn, _member("200000000008")))

    def duplicate(conn: Connection) -> None:
        INSERT(conn, _member("300000000007"))  # fine on its own
        INSERT(conn, _member("200000000008"))  # the same card number again

    with pytest.raises(IntegrityError):
        await db.write(duplicate)
    # The whole transaction was rolled back, and the connection still works.
    cards = await db.read(lambda conn: conn.execute(select(members.c.card_number)).scalars().all())
    assert list(cards) == ["200000000008"]
    db.close()


async def test_a_fast_statement_first_in_a_transaction_is_inside_it(engine: AsyncEngine) -> None:
    """On PostgreSQL SQLAlchemy's adapter begins lazily; a Fast statement that comes first must
    still be rolled back with the transaction."""
    db = SyncDatabase(engine)

    def insert_then_fail(conn: Connection) -> None:
        INSERT(conn, _member("400000000006"))
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        await db.write(insert_then_fail)
    count = await db.read(lambda conn: len(conn.execute(select(members.c.id)).all()))
    assert count == 0
    db.close()


async def test_a_missing_parameter_is_an_error_not_a_null(engine: AsyncEngine) -> None:
    db = SyncDatabase(engine)
    with pytest.raises(TypeError, match="member_id"):
        await db.read(lambda conn: BY_ID(conn, {"memberid": 1}).all())  # misspelt
    db.close()


RENAME = Fast(
    update(members)
    .where(members.c.id == bindparam("member_id"))
    .values(first_name=bindparam("name"))
)
NOTE_OPERATION = Fast(operations.insert())


async def _with_member(engine: AsyncEngine, card: str) -> tuple[SyncDatabase, int]:
    db = SyncDatabase(engine)
    member_id: int = await db.write(lambda conn: INSERT(conn, _member(card)).scalar_one())
    return db, member_id


def _operation(key: str, member_id: int) -> dict[str, object]:
    return {
        "key": key,
        "kind": "adjust",
        "member_id": member_id,
        "request_hash": "h",
        "result": "{}",
        "actor": None,
        "created_at": MOMENT,
    }


async def test_deferred_writes_land_with_the_transaction_in_one_statement_on_postgresql(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, member_id = await _with_member(engine, "500000000005")
    sent: list[str] = []
    real_execute = fast._execute

    def spy(
        conn: Connection, sql: str, args: tuple[object, ...], returns_rows: bool
    ) -> tuple[Sequence[object], int]:
        sent.append(sql)
        return real_execute(conn, sql, args, returns_rows)

    monkeypatch.setattr(fast, "_execute", spy)

    def work(conn: Connection) -> None:
        later(conn, RENAME, {"member_id": member_id, "name": "Anna"})
        later(conn, NOTE_OPERATION, _operation("deferred:1", member_id))

    await db.write(work)
    if engine.dialect.name == "postgresql":
        assert len(sent) == 1 and sent[0].startswith("WITH w0 AS (UPDATE members")
    row = await db.read(lambda conn: BY_ID(conn, {"member_id": member_id}).one())
    keys = await db.read(lambda conn: conn.execute(select(operations.c.key)).scalars().all())
    assert row.first_name == "Anna" and list(keys) == ["deferred:1"]
    db.close()


async def test_deferred_writes_to_one_table_run_one_by_one_in_order(engine: AsyncEngine) -> None:
    db, member_id = await _with_member(engine, "600000000003")

    def rename_twice(conn: Connection) -> None:
        later(conn, RENAME, {"member_id": member_id, "name": "first"})
        later(conn, RENAME, {"member_id": member_id, "name": "second"})

    await db.write(rename_twice)
    row = await db.read(lambda conn: BY_ID(conn, {"member_id": member_id}).one())
    assert row.first_name == "second"
    db.close()


async def test_a_deferred_write_that_fails_rolls_back_the_whole_transaction(
    engine: AsyncEngine,
) -> None:
    db, member_id = await _with_member(engine, "700000000001")
    await db.write(lambda conn: NOTE_OPERATION(conn, _operation("taken", member_id)))

    def clash(conn: Connection) -> None:
        RENAME(conn, {"member_id": member_id, "name": "at once"})
        # Two tables: one combined statement on PostgreSQL, which fails on the existing key.
        later(conn, RENAME, {"member_id": member_id, "name": "later"})
        later(conn, NOTE_OPERATION, _operation("taken", member_id))

    with pytest.raises(IntegrityError):
        await db.write(clash)
    row = await db.read(lambda conn: BY_ID(conn, {"member_id": member_id}).one())
    assert row.first_name is None
    db.close()


async def test_deferred_writes_of_a_failed_transaction_never_run_later(engine: AsyncEngine) -> None:
    db, member_id = await _with_member(engine, "800000000009")

    def defer_then_fail(conn: Connection) -> None:
        later(conn, RENAME, {"member_id": member_id, "name": "ghost"})
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        await db.write(defer_then_fail)
    await db.write(lambda conn: later(conn, NOTE_OPERATION, _operation("next", member_id)))
    row = await db.read(lambda conn: BY_ID(conn, {"member_id": member_id}).one())
    assert row.first_name is None
    db.close()


async def test_a_deferred_write_outside_a_flushing_transaction_runs_at_once(
    engine: AsyncEngine,
) -> None:
    """Only SyncDatabase.write flushes; in any other transaction `later` must not defer."""
    db, member_id = await _with_member(engine, "900000000007")
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: later(sync, RENAME, {"member_id": member_id, "name": "at once"})
        )
    row = await db.read(lambda conn: BY_ID(conn, {"member_id": member_id}).one())
    assert row.first_name == "at once"
    db.close()


async def test_a_read_after_a_deferred_write_in_the_same_transaction_sees_it(
    engine: AsyncEngine,
) -> None:
    """Nothing for a caller to remember: a statement that comes after a deferred write, through
    Fast or through Connection.execute, runs after it."""
    db, member_id = await _with_member(engine, "110000000006")

    def rename_then_read(conn: Connection) -> tuple[object, object]:
        later(conn, RENAME, {"member_id": member_id, "name": "Anna"})
        through_fast = BY_ID(conn, {"member_id": member_id}).one().first_name
        later(conn, RENAME, {"member_id": member_id, "name": "Boris"})
        through_core = conn.execute(
            select(members.c.first_name).where(members.c.id == member_id)
        ).scalar_one()
        return through_fast, through_core

    assert await db.write(rename_then_read) == ("Anna", "Boris")
    db.close()


@pytest.mark.parametrize("backend", ["postgresql"])  # a server restart: PostgreSQL's alone
async def test_after_postgresql_drops_every_connection_the_next_write_succeeds(
    engine: AsyncEngine,
) -> None:
    """A restarted server: the first statement on an old connection fails, the whole pool is
    dropped, and the write runs again on a fresh connection (storage.engine: no pre-ping)."""
    db, member_id = await _with_member(engine, "120000000004")
    # Several pooled connections, all held at once, then given back.
    held = [await engine.connect() for _ in range(3)]
    for conn in held:
        await conn.execute(select(1))
    for conn in held:
        await conn.close()
    async with engine.connect() as admin:
        pid = (await admin.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await admin.execute(
            text(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> :pid"
            ),
            {"pid": pid},
        )
        await admin.invalidate()  # this one too: every pooled connection is now dead
    name = await db.write(
        lambda conn: (
            RENAME(conn, {"member_id": member_id, "name": "back"}),
            BY_ID(conn, {"member_id": member_id}).one().first_name,
        )[1]
    )
    assert name == "back"
    db.close()
