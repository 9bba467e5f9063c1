"""storage.fast runs Core statements on the driver: same values, same errors, same transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.fast import Fast
from storage.schema import members
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
