"""A broadcast's gift points (PRODUCT.md: "credited to a recipient when their message is sent,
as a lot that burns after `gift_days`, once per member"): on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ledger.clock import ManualClock
from ledger.errors import IdempotencyConflict
from ledger.invariants import check_ledger
from ledger.service import LedgerService
from storage.schema import entries, lots, operations, outbox
from tests.conftest import Phones
from usecases.privacy import Privacy, erase_member


async def new_member(ledger: LedgerService, phones: Phones) -> int:
    return (await ledger.register_member(phones.next())).member.member_id


async def counts(ledger: LedgerService) -> tuple[int, ...]:
    """Rows of entries, lots, operations and the outbox (notices): what an operation writes."""
    async with ledger.engine.connect() as conn:
        return tuple(
            [
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                for table in (entries, lots, operations, outbox)
            ]
        )


async def assert_consistent(ledger: LedgerService) -> None:
    violations = await check_ledger(ledger.engine)
    assert violations == [], "\n".join(map(str, violations))


async def test_five_concurrent_credits_of_one_gift_credit_it_once(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)
    before = await counts(ledger)
    results = await asyncio.gather(
        *(ledger.credit_gift(member_id, 7, 50, 3, actor="broadcast:7") for _ in range(5))
    )
    assert sorted(result.replayed for result in results) == [False, True, True, True, True]
    expires_at = clock.now() + timedelta(days=3)
    assert {(result.points, result.expires_at) for result in results} == {(50, expires_at)}
    # One entry, one lot, one operation; no notice: the broadcast's message tells the member.
    assert await counts(ledger) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3])
    assert (await ledger.balance(member_id)).balance == 100 + 50
    again = await ledger.credit_gift(member_id, 7, 50, 3)
    assert (again.points, again.expires_at, again.replayed) == (50, expires_at, True)
    newest = (await ledger.history(member_id)).entries[0]
    assert (newest.kind, newest.points, newest.reference) == ("gift", 50, "7")
    assert newest.actor == "broadcast:7" and newest.reversible
    await assert_consistent(ledger)


async def test_gift_points_burn_after_their_days_and_are_spent_first(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)
    gift = await ledger.credit_gift(member_id, 1, 40, 2)
    view = await ledger.balance(member_id)
    assert view.balance == 140
    assert view.nearest_burn is not None
    assert (view.nearest_burn.points, view.nearest_burn.burns_at) == (40, gift.expires_at)
    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    assert await ledger.expire_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await ledger.expire_due() == 40
    assert (await ledger.balance(member_id)).balance == 100  # the welcome bonus lives on
    burnt = (await ledger.history(member_id)).entries[0]
    assert (burnt.kind, burnt.points) == ("expiry", -40)
    assert await ledger.expire_due() == 0
    await assert_consistent(ledger)


async def test_the_same_gift_key_with_other_points_is_a_conflict_and_changes_nothing(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.credit_gift(member_id, 3, 25, 14)
    before = await counts(ledger)
    with pytest.raises(IdempotencyConflict):
        await ledger.credit_gift(member_id, 3, 26, 14)
    with pytest.raises(IdempotencyConflict):
        await ledger.credit_gift(member_id, 3, 25, 15)
    assert await counts(ledger) == before
    assert (await ledger.balance(member_id)).balance == 125
    # Another broadcast is another gift.
    assert (await ledger.credit_gift(member_id, 4, 10, 14)).points == 10
    assert (await ledger.balance(member_id)).balance == 135
    await assert_consistent(ledger)


async def test_a_member_who_erased_their_data_gets_no_gift(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    await erase_member(Privacy(ledger), member_id)
    before = await counts(ledger)
    result = await ledger.credit_gift(member_id, 5, 50, 7)
    assert (result.points, result.expires_at, result.replayed) == (0, None, False)
    after = await counts(ledger)
    assert after[:2] == before[:2] and after[3] == before[3]  # no entry, no lot, no notice
    assert (await ledger.balance(member_id)).balance == 100
    again = await ledger.credit_gift(member_id, 5, 50, 7)
    assert (again.points, again.replayed) == (0, True)
    await assert_consistent(ledger)


@pytest.mark.parametrize(("points", "days"), [(0, 14), (-5, 14), (10, 0), (10, -1)])
async def test_a_gift_of_no_points_or_no_days_is_refused_and_changes_nothing(
    ledger: LedgerService, phones: Phones, points: int, days: int
) -> None:
    member_id = await new_member(ledger, phones)
    before = await counts(ledger)
    with pytest.raises(ValueError):
        await ledger.credit_gift(member_id, 1, points, days)
    assert await counts(ledger) == before


async def test_gifted_members_are_those_whose_gift_from_that_broadcast_is_settled(
    ledger: LedgerService, phones: Phones
) -> None:
    first, second, third = [await new_member(ledger, phones) for _ in range(3)]
    await ledger.credit_gift(first, 1, 10, 7)
    await ledger.credit_gift(second, 1, 10, 7)
    await ledger.credit_gift(third, 12, 10, 7)  # broadcast 12's key starts like broadcast 1's
    assert await ledger.gifted_members(1) == {first, second}
    assert await ledger.gifted_members(12) == {third}
    assert await ledger.gifted_members(2) == set()
    assert await ledger.gifted_members(1, among=[second, third]) == {second}
    assert await ledger.gifted_members(1, among=[]) == set()


async def test_support_can_reverse_a_gift(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.credit_gift(member_id, 1, 30, 7)
    gift = (await ledger.history(member_id)).entries[0]
    await ledger.reverse_entry(entry_id=gift.entry_id, reason="sent by mistake", actor="tg:1")
    assert (await ledger.balance(member_id)).balance == 100
    await assert_consistent(ledger)
