"""Concurrent operations on one member never overdraw and never double-count (both backends)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import ManualClock
from ledger.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    RedeemAboveLimit,
    RefundExceedsPurchase,
)
from ledger.invariants import check_ledger
from ledger.service import LedgerService
from storage.schema import referral_rewards
from tests.conftest import Phones

RUB = 100


async def test_50_concurrent_redemptions_never_overdraw(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id
    await ledger.adjust(member_id=member_id, points=900, reason="seed", actor="test")  # 1000

    async def redeem(i: int) -> int:
        try:
            result = await ledger.purchase(
                receipt_id=f"R-{i}",
                member_id=member_id,
                amount_kopecks=1000 * RUB,
                redeem_points=100,
            )
        except RedeemAboveLimit:
            return 0
        return result.redeemed

    redeemed = await asyncio.gather(*(redeem(i) for i in range(50)))
    view = await ledger.balance(member_id)
    earned = sum(
        entry.points
        for entry in (await ledger.history(member_id, page_size=50)).entries
        if entry.kind == "earn"
    )
    assert sum(redeemed) <= 1000 + earned
    assert view.balance == 1000 + earned - sum(redeemed) and view.balance >= 0
    assert sum(1 for points in redeemed if points) >= 10  # the seeded 1000 points were used
    assert await check_ledger(ledger.engine) == []


async def test_concurrent_debits_of_the_whole_balance_succeed_once(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id

    async def take_all(i: int) -> bool:
        try:
            await ledger.adjust(member_id=member_id, points=-100, reason="x", actor=f"s{i}")
        except InsufficientPoints:
            return False
        return True

    outcomes = await asyncio.gather(*(take_all(i) for i in range(20)))
    assert outcomes.count(True) == 1
    assert (await ledger.balance(member_id)).balance == 0
    assert await check_ledger(ledger.engine) == []


async def test_same_receipt_sent_20_times_concurrently_earns_once(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id
    results = await asyncio.gather(
        *(
            ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=5000 * RUB)
            for _ in range(20)
        )
    )
    assert [r.replayed for r in results].count(False) == 1
    assert {r.to_json()["balance"] for r in results} == {200}
    assert (await ledger.balance(member_id)).balance == 200
    assert await check_ledger(ledger.engine) == []


async def test_same_receipt_for_two_members_concurrently_is_recorded_once(
    ledger: LedgerService, phones: Phones
) -> None:
    first = (await ledger.register_member(phones.next())).member.member_id
    second = (await ledger.register_member(phones.next())).member.member_id

    async def buy(member_id: int) -> str:
        try:
            await ledger.purchase(receipt_id="R-X", member_id=member_id, amount_kopecks=5000 * RUB)
        except IdempotencyConflict:
            return "conflict"
        return "ok"

    outcomes = await asyncio.gather(*(buy(m) for m in [first, second] * 5))
    total = (await ledger.balance(first)).balance + (await ledger.balance(second)).balance
    assert total == 300 and "conflict" in outcomes
    assert await check_ledger(ledger.engine) == []


async def test_concurrent_registrations_of_one_phone_make_one_member(
    ledger: LedgerService,
) -> None:
    results = await asyncio.gather(
        *(ledger.register_member("+79990001234", telegram_id=5) for _ in range(10))
    )
    assert len({r.member.member_id for r in results}) == 1
    assert sum(r.welcome_points for r in results) == 100
    assert await check_ledger(ledger.engine) == []


async def test_concurrent_refunds_never_exceed_the_purchase(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB)

    async def refund(i: int) -> bool:
        try:
            await ledger.refund(refund_id=f"RF-{i}", receipt_id="R-1", amount_kopecks=300 * RUB)
        except RefundExceedsPurchase:
            return False
        return True

    outcomes = await asyncio.gather(*(refund(i) for i in range(10)))
    assert outcomes.count(True) == 3
    assert await check_ledger(ledger.engine) == []


async def test_concurrent_purchases_earn_at_the_tier_each_one_reached(
    ledger: LedgerService, phones: Phones
) -> None:
    """Each purchase earns at the tier of the spend before it, whichever order they commit in:
    a purchase that waited for another's lock must see that other's spend (a regression: on
    PostgreSQL the spend was read in the snapshot taken before the wait)."""
    member_id = (await ledger.register_member(phones.next())).member.member_id
    results = await asyncio.gather(
        *(
            ledger.purchase(receipt_id=f"T-{i}", member_id=member_id, amount_kopecks=10_000 * RUB)
            for i in range(4)
        )
    )
    # Base 1 point per 50 RUB, silver from 10,000 RUB (per 40), gold from 30,000 (per 30).
    assert sorted(result.accrued for result in results) == [200, 250, 250, 333]
    assert (await ledger.get_member(member_id)).tier == "gold"
    assert await check_ledger(ledger.engine) == []


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_first_purchase_and_a_burn_batch_locking_in_opposite_orders_both_finish(
    ledger: LedgerService, phones: Phones, clock: ManualClock, engine: AsyncEngine
) -> None:
    """A referred member's first purchase locks the invited member, then the inviter; a burn
    batch locks both in id order. PostgreSQL breaks the deadlock by rolling one back, and that
    one runs again (storage.transactions.SyncDatabase.write)."""
    inviter = (await ledger.register_member(phones.next())).member
    invited = (
        await ledger.register_member(phones.next(), referral_code=inviter.referral_code)
    ).member
    assert inviter.member_id < invited.member_id and invited.phone is not None
    clock.advance(timedelta(days=181))  # both welcome bonuses are due to burn
    phone = invited.phone
    kept_of_phone = await ledger.db.read(lambda conn: ledger.phone_hash(conn, phone))
    async with engine.connect() as blocker:
        # The purchase waits on this row's key after locking the invited member and before
        # locking the inviter; the burn then locks the inviter and waits for the invited.
        await blocker.execute(
            referral_rewards.insert().values(
                invited_phone_hash=kept_of_phone,
                inviter_id=inviter.member_id,
                invited_id=invited.member_id,
                created_at=clock.now(),
            )
        )
        purchase = asyncio.create_task(
            ledger.purchase(
                receipt_id="R-1", member_id=invited.member_id, amount_kopecks=1000 * RUB
            )
        )
        await asyncio.sleep(0.3)
        burn = asyncio.create_task(ledger.expire_due())
        await asyncio.sleep(0.3)
        await blocker.rollback()  # the purchase goes on and locks the inviter: a deadlock
    result, burnt = await asyncio.gather(purchase, burn)
    # Whichever PostgreSQL rolled back ran again after the other: the batch burnt both
    # welcome bonuses (200) or, if the purchase went first, only the inviter's (the purchase
    # wrote off the invited member's own).
    assert result.accrued == 20 and burnt in {100, 200}
    assert (await ledger.balance(invited.member_id)).balance == 20  # the welcome bonus burnt
    assert (await ledger.balance(inviter.member_id)).balance == 200  # the referral reward
    assert await check_ledger(ledger.engine) == []
