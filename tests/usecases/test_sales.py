"""A sale, its receipt and its audit record are one transaction: none stands without the
others."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.service import LedgerService
from staff.audit import AuditLog
from staff.sales import ConfirmationService
from storage.schema import audit_log, outbox, purchases
from tests.conftest import Phones
from usecases.sales import Purchase, Sales, record_purchase, record_refund

RUB = 100


async def _refuse_audit_records(engine: AsyncEngine) -> None:
    """From now on the database refuses every new audit record."""
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@pytest.fixture
async def no_audit_trigger(ledger: LedgerService) -> object:
    yield None
    async with ledger.engine.begin() as conn:  # PostgreSQL's database is reused by the next test
        await conn.execute(
            text("DROP TRIGGER IF EXISTS refuse_audit ON audit_log")
            if ledger.engine.dialect.name == "postgresql"
            else text("DROP TRIGGER IF EXISTS refuse_audit")
        )
        if ledger.engine.dialect.name == "postgresql":
            await conn.execute(text("DROP FUNCTION IF EXISTS refuse_audit()"))


async def test_a_sale_whose_audit_record_cannot_be_written_is_not_recorded_at_all(
    ledger: LedgerService, phones: Phones, no_audit_trigger: object
) -> None:
    sales = Sales(ledger=ledger, confirmations=ConfirmationService(ledger.engine, ledger.clock))
    member = (await ledger.register_member(phones.next(), telegram_id=901)).member
    await _refuse_audit_records(ledger.engine)
    with pytest.raises(Exception, match="audit refused"):
        await record_purchase(
            sales,
            "api:till-1",
            Purchase(receipt_id="R-1", amount=1500 * RUB, member_id=member.member_id),
        )
    assert await _count(ledger.engine, purchases) == 0
    assert await _count(ledger.engine, outbox) == 0  # no receipt of a sale that is not there
    assert (await ledger.balance(member.member_id)).balance == 100


async def test_a_sale_and_a_refund_write_one_audit_record_each_also_when_retried(
    ledger: LedgerService, phones: Phones
) -> None:
    sales = Sales(ledger=ledger, confirmations=ConfirmationService(ledger.engine, ledger.clock))
    member = (await ledger.register_member(phones.next(), telegram_id=902)).member
    sale = Purchase(receipt_id="R-2", amount=2000 * RUB, member_id=member.member_id, redeem=30)
    answers = []
    for _ in range(2):  # the second is a retry: the same answer, nothing new written
        bought = await record_purchase(sales, "api:till-1", sale)
        refunded = await record_refund(
            sales, "api:till-1", refund_id="RF-2", receipt_id="R-2", amount=500 * RUB
        )
        answers.append((bought, refunded))
    first, again = answers
    assert (again[0].replayed, again[1].replayed) == (True, True)
    assert replace(again[0], replayed=False) == first[0]
    assert replace(again[1], replayed=False) == first[1]
    records = [
        (r.action, r.actor, r.target, r.details.get("receipt_id"))
        for r in reversed(await AuditLog(ledger.engine, ledger.clock).recent())
    ]
    target = f"member:{member.member_id}"
    assert records == [
        ("cashier.purchase", "api:till-1", target, "R-2"),
        ("cashier.refund", "api:till-1", target, "R-2"),
    ]
    assert await _count(ledger.engine, audit_log) == 2
