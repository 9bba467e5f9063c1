"""The ledger service on a real database: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from ledger import policy
from ledger.clock import ManualClock
from ledger.errors import (
    BirthdayAlreadySet,
    EntryNotReversible,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidAmount,
    InvalidPhone,
    InvalidPoints,
    InvalidReference,
    MemberNotFound,
    PointsLimit,
    PurchaseNotFound,
    ReasonRequired,
    RedeemAboveLimit,
    RefundExceedsPurchase,
)
from ledger.invariants import check_ledger
from ledger.rules import Rules
from ledger.service import LedgerService
from messaging.outbox import Outbox
from storage.schema import entries, members, operations, purchases
from storage.schema import outbox as outbox_table
from storage.schema import tickets as tickets_table
from support.tickets import TicketService
from tests.conftest import Phones
from usecases.privacy import Privacy, erase_member

RUB = 100  # kopecks


async def new_member(ledger: LedgerService, phones: Phones, **kwargs: object) -> int:
    registration = await ledger.register_member(phones.next(), **kwargs)  # type: ignore[arg-type]
    return registration.member.member_id


async def assert_consistent(ledger: LedgerService) -> None:
    violations = await check_ledger(ledger.engine)
    assert violations == [], "\n".join(map(str, violations))


async def snapshot(ledger: LedgerService) -> tuple[int, int, int, int]:
    async with ledger.engine.connect() as conn:
        counts = []
        for table in (members, entries, operations, purchases):
            counts.append((await conn.execute(select(func.count()).select_from(table))).scalar())
    return tuple(counts)  # type: ignore[return-value]


# ------------------------------------------------------------------ registration


async def test_new_member_gets_welcome_bonus_and_a_valid_card(
    ledger: LedgerService, phones: Phones
) -> None:
    registration = await ledger.register_member("8 (999) 000-00-01", telegram_id=42)
    member = registration.member
    assert registration.created and registration.welcome_points == 100
    assert member.phone == "+79990000001"
    assert member.balance == 100 and member.tier == "base"
    assert len(member.card_number) == 12 and policy.is_valid_card_number(member.card_number)
    await assert_consistent(ledger)


async def test_card_numbers_are_not_a_sequence(ledger: LedgerService, phones: Phones) -> None:
    cards = [(await ledger.register_member(phones.next())).member.card_number for _ in range(5)]
    numbers = sorted(int(card) for card in cards)
    gaps = {b - a for a, b in itertools.pairwise(numbers)}
    assert len(set(cards)) == 5 and gaps != {1} and all(gap > 10 for gap in gaps)


async def test_known_phone_is_linked_not_registered_twice(
    ledger: LedgerService, phones: Phones
) -> None:
    first = await ledger.register_member("+79990000001", telegram_id=1)
    again = await ledger.register_member("79990000001", telegram_id=2, first_name="New")
    assert not again.created and again.welcome_points == 0
    assert again.member.member_id == first.member.member_id
    assert again.member.telegram_id == 2 and again.member.balance == 100
    assert await ledger.member_by_telegram(1) is None


async def test_malformed_phone_is_refused_and_changes_nothing(ledger: LedgerService) -> None:
    before = await snapshot(ledger)
    for phone in ["12345", "hello", "", "+7999", "9" * 40]:
        with pytest.raises(InvalidPhone):
            await ledger.register_member(phone)
    assert await snapshot(ledger) == before


async def test_find_member_by_card_or_phone_in_any_format(
    ledger: LedgerService, phones: Phones
) -> None:
    member = (await ledger.register_member("+79990000007")).member
    spaced = " ".join(member.card_number[i : i + 4] for i in range(0, 12, 4))
    for customer in [member.card_number, spaced, "+79990000007", "8 999 000-00-07"]:
        assert (await ledger.find_member(customer)).member_id == member.member_id
    for unknown in ["+79990000008", "000000000000", "nobody"]:
        with pytest.raises(MemberNotFound):
            await ledger.find_member(unknown)


async def test_erased_member_is_gone_from_lookups_but_ledger_adds_up(
    ledger: LedgerService, phones: Phones
) -> None:
    member = (await ledger.register_member("+79990000009", telegram_id=9)).member
    await ledger.purchase(receipt_id="R-1", member_id=member.member_id, amount_kopecks=1000 * RUB)
    await ledger.erase_member(member.member_id)
    erased = await ledger.get_member(member.member_id)
    assert erased.phone is None and erased.first_name is None and erased.status == "erased"
    assert await ledger.member_by_telegram(9) is None
    with pytest.raises(MemberNotFound):
        await ledger.find_member("+79990000009")
    with pytest.raises(MemberNotFound):
        await ledger.find_member(member.card_number)
    assert erased.balance == 120  # the points stay in the anonymised ledger
    await assert_consistent(ledger)


async def test_erasing_scrubs_messages_to_and_about_the_member(
    ledger: LedgerService, phones: Phones
) -> None:
    """Their chat id and the texts sent to them, their requests and the answers, and
    support's news that quoted them; an unsent message is not sent any more."""
    member = (await ledger.register_member(phones.next(), telegram_id=31)).member
    other = (await ledger.register_member(phones.next(), telegram_id=32)).member
    tickets = TicketService(ledger.engine, ledger.clock)
    ticket = await tickets.open_ticket(member.member_id, "I am Anna, call me on +7 999 ...")
    await tickets.close(ticket.ticket_id, by=77, answer="Anna, your points are back")
    outbox = Outbox(ledger.engine, ledger.clock)
    for key, chat, member_id in [
        ("receipt:1", 31, member.member_id),
        (f"ticket:new:{ticket.ticket_id}:77", 77, None),  # to support, quoting the member
        ("receipt:2", 32, other.member_id),
    ]:
        await outbox.enqueue(dedup_key=key, chat_id=chat, member_id=member_id, text="Anna ...")
    await erase_member(Privacy(ledger), member.member_id)  # each package erases its own
    async with ledger.engine.connect() as conn:
        rows = {
            row.dedup_key: row
            for row in await conn.execute(select(outbox_table).order_by(outbox_table.c.id))
        }
        stored = (await conn.execute(select(tickets_table))).one()
    assert (rows["receipt:1"].text, rows["receipt:1"].chat_id) == ("", 0)
    assert rows["receipt:1"].status == "dropped"
    news = rows[f"ticket:new:{ticket.ticket_id}:77"]
    assert (news.text, news.status) == ("", "dropped")
    assert (rows["receipt:2"].text, rows["receipt:2"].chat_id) == ("Anna ...", 32)  # untouched
    assert (stored.text, stored.answer) == ("", None)


# --------------------------------------------------------------------- purchases


async def test_base_member_earns_one_point_per_50_roubles_rounded_down(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    result = await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1499 * RUB)
    assert result.accrued == 29 and result.redeemed == 0 and result.balance == 129
    assert result.tier == "base" and not result.replayed
    await assert_consistent(ledger)


async def test_points_are_earned_only_on_the_part_paid_in_money(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    result = await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=100
    )
    assert result.redeemed == 100 and result.accrued == 18  # 900 RUB paid in money / 50
    assert result.balance == 18
    await assert_consistent(ledger)


async def test_cannot_redeem_more_than_30_percent(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.adjust(member_id=member_id, points=1000, reason="test", actor="t")
    before = await snapshot(ledger)
    with pytest.raises(RedeemAboveLimit) as refused:
        await ledger.purchase(
            receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=301
        )
    assert refused.value.details["allowed"] == 300
    assert await snapshot(ledger) == before
    ok = await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=300
    )
    assert ok.redeemed == 300


async def test_cannot_redeem_more_than_the_balance(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)  # 100 points
    with pytest.raises(RedeemAboveLimit) as refused:
        await ledger.purchase(
            receipt_id="R-1", member_id=member_id, amount_kopecks=10_000 * RUB, redeem_points=101
        )
    assert refused.value.details["allowed"] == 100


async def test_same_receipt_again_returns_the_first_result(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    first = await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    again = await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    assert again.replayed and again.to_json() == first.to_json()
    assert (await ledger.balance(member_id)).balance == 110


async def test_same_receipt_with_a_different_body_is_a_conflict(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    other_id = await new_member(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    before = await snapshot(ledger)
    with pytest.raises(IdempotencyConflict):
        await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=501 * RUB)
    with pytest.raises(IdempotencyConflict):
        await ledger.purchase(receipt_id="R-1", member_id=other_id, amount_kopecks=500 * RUB)
    assert await snapshot(ledger) == before


async def test_bad_purchase_input_changes_nothing(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    before = await snapshot(ledger)
    with pytest.raises(InvalidAmount):
        await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=0)
    with pytest.raises(InvalidAmount):
        await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=-100)
    with pytest.raises(InvalidPoints):
        await ledger.purchase(
            receipt_id="R-1", member_id=member_id, amount_kopecks=100, redeem_points=-1
        )
    with pytest.raises(InvalidReference):
        await ledger.purchase(receipt_id=" ", member_id=member_id, amount_kopecks=100)
    with pytest.raises(InvalidReference):
        await ledger.purchase(receipt_id="R" * 101, member_id=member_id, amount_kopecks=100)
    # PostgreSQL cannot store NUL and nobody can store a lone surrogate; SQLite took NUL: both
    # now refuse what is not plain text, as they refuse an empty id.
    for receipt_id in ["R\x00-1", "R-\ud800", "R\n1", "R\x1b[2J"]:
        with pytest.raises(InvalidReference):
            await ledger.purchase(receipt_id=receipt_id, member_id=member_id, amount_kopecks=100)
        with pytest.raises(InvalidReference):
            await ledger.refund(refund_id=receipt_id, receipt_id="R-1", amount_kopecks=100)
    with pytest.raises(InvalidPoints, match="from 0 to 10000000"):
        await ledger.purchase(
            receipt_id="R-1", member_id=member_id, amount_kopecks=100, redeem_points=10**7 + 1
        )
    with pytest.raises(MemberNotFound):
        await ledger.purchase(receipt_id="R-1", member_id=999_999, amount_kopecks=100)
    assert await snapshot(ledger) == before


async def test_tier_rises_with_spend_and_earning_rate_follows(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    first = await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=10_000 * RUB
    )
    assert first.accrued == 200 and first.tier == "silver"  # earned at base, now silver
    second = await ledger.purchase(receipt_id="R-2", member_id=member_id, amount_kopecks=400 * RUB)
    assert second.accrued == 10  # silver: 1 per 40 RUB
    view = await ledger.balance(member_id)
    assert view.next_tier == "gold" and view.to_next_tier == (30_000 - 10_400) * RUB


async def test_tier_falls_when_purchases_leave_the_365_day_window(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=30_000 * RUB)
    assert (await ledger.get_member(member_id)).tier == "gold"
    clock.advance(timedelta(days=366))
    changes = await ledger.recompute_tiers()
    assert [(c.old_tier, c.new_tier) for c in changes] == [("gold", "base")]


# ----------------------------------------------------------------------- refunds


async def test_full_refund_reverses_earned_and_returns_redeemed_points(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)  # 100
    await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=100
    )  # -100 +18 -> 18
    refund = await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=1000 * RUB)
    assert (refund.reversed, refund.returned, refund.balance, refund.debt) == (18, 100, 100, 0)
    await assert_consistent(ledger)


async def test_partial_refunds_are_pro_rata_and_add_up_exactly(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.adjust(member_id=member_id, points=200, reason="x", actor="t")  # 300
    await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=999 * RUB, redeem_points=299
    )  # money 700 -> 14 points
    parts = [333 * RUB, 333 * RUB, 333 * RUB]
    results = [
        await ledger.refund(refund_id=f"RF-{i}", receipt_id="R-1", amount_kopecks=part)
        for i, part in enumerate(parts)
    ]
    assert sum(r.reversed for r in results) == 14
    assert sum(r.returned for r in results) == 299
    assert [r.returned for r in results] == [99, 100, 100]
    assert (await ledger.balance(member_id)).balance == 300
    await assert_consistent(ledger)


async def test_refund_larger_than_the_purchase_is_refused(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB)
    await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=600 * RUB)
    before = await snapshot(ledger)
    with pytest.raises(RefundExceedsPurchase) as refused:
        await ledger.refund(refund_id="RF-2", receipt_id="R-1", amount_kopecks=401 * RUB)
    assert refused.value.details["refundable"] == "400.00"
    with pytest.raises(PurchaseNotFound):
        await ledger.refund(refund_id="RF-3", receipt_id="R-404", amount_kopecks=1 * RUB)
    assert await snapshot(ledger) == before


async def test_refund_is_idempotent_on_refund_id(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB)
    first = await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=500 * RUB)
    again = await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=500 * RUB)
    assert again.replayed and again.to_json() == first.to_json()
    with pytest.raises(IdempotencyConflict):
        await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=400 * RUB)
    assert (await ledger.balance(member_id)).balance == 110


async def test_refund_after_points_were_spent_leaves_a_debt_paid_by_next_accruals(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)  # 100
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=5000 * RUB)  # 200
    await ledger.purchase(
        receipt_id="R-2", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=200
    )  # 100 + 16 = 116 ... spent the oldest points first
    refund = await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=5000 * RUB)
    assert refund.reversed == 100 and refund.balance == 0 and refund.debt == 100 - 116 + 100
    history = await ledger.history(member_id)
    assert history.entries[0].kind == "refund_reverse" and history.entries[0].debt == 84
    paid = await ledger.purchase(receipt_id="R-3", member_id=member_id, amount_kopecks=5000 * RUB)
    assert paid.accrued == 100 and paid.balance == 16
    assert (await ledger.balance(member_id)).debt == 0
    await assert_consistent(ledger)


# --------------------------------------------------- adjustments and reversals


async def test_support_adjusts_with_a_reason_and_cannot_overdraw(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    entry = await ledger.adjust(member_id=member_id, points=50, reason="apology", actor="staff:7")
    assert entry.kind == "adjustment" and entry.points == 50 and entry.reason == "apology"
    await ledger.adjust(member_id=member_id, points=-30, reason="typo", actor="staff:7")
    assert (await ledger.balance(member_id)).balance == 120
    with pytest.raises(InsufficientPoints):
        await ledger.adjust(member_id=member_id, points=-121, reason="x", actor="staff:7")
    with pytest.raises(ReasonRequired):
        await ledger.adjust(member_id=member_id, points=5, reason="  ", actor="staff:7")
    with pytest.raises(InvalidPoints):
        await ledger.adjust(member_id=member_id, points=0, reason="x", actor="staff:7")
    await assert_consistent(ledger)


async def test_a_member_cannot_pass_the_points_limit(
    ledger: LedgerService, phones: Phones
) -> None:
    """PostgreSQL keeps points in 32-bit columns: past 2,147,483,647 a purchase failed with a
    database error (a 500 at the till), while SQLite went on. Both now stop at
    MAX_MEMBER_POINTS with a refusal that changes nothing."""
    member_id = await new_member(ledger, phones)  # 100 welcome points
    step = 10_000_000
    for _ in range(policy.MAX_MEMBER_POINTS // step - 1):
        await ledger.adjust(member_id=member_id, points=step, reason="load", actor="staff:7")
    balance = (await ledger.balance(member_id)).balance
    assert balance == policy.MAX_MEMBER_POINTS - step + 100
    room = policy.MAX_MEMBER_POINTS - balance
    await ledger.adjust(member_id=member_id, points=room, reason="to the brim", actor="staff:7")
    before = await snapshot(ledger)
    with pytest.raises(PointsLimit):
        await ledger.adjust(member_id=member_id, points=1, reason="one more", actor="staff:7")
    with pytest.raises(PointsLimit):
        await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    assert await snapshot(ledger) == before
    assert (await ledger.balance(member_id)).balance == policy.MAX_MEMBER_POINTS
    # Spending is never refused for it, and makes room again.
    await ledger.purchase(
        receipt_id="R-2", member_id=member_id, amount_kopecks=1_000 * RUB, redeem_points=300
    )
    await assert_consistent(ledger)


async def test_adjustment_with_the_same_operation_id_applies_once(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    for _ in range(3):
        await ledger.adjust(
            member_id=member_id, points=10, reason="x", actor="s", operation_id="ticket-5"
        )
    assert (await ledger.balance(member_id)).balance == 110


async def test_reversing_an_entry_undoes_it_once(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    welcome = (await ledger.history(member_id)).entries[0]
    reversal = await ledger.reverse_entry(entry_id=welcome.entry_id, reason="dup", actor="s")
    assert reversal.kind == "reversal" and reversal.points == -100
    assert (await ledger.balance(member_id)).balance == 0
    assert (await ledger.entry(welcome.entry_id)).reversed
    again = await ledger.reverse_entry(entry_id=welcome.entry_id, reason="dup", actor="s")
    assert again.entry_id == reversal.entry_id
    assert (await ledger.balance(member_id)).balance == 0
    await assert_consistent(ledger)


async def test_reversing_a_spent_bonus_leaves_a_debt(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=100
    )  # spends the welcome, earns 18
    welcome = next(e for e in (await ledger.history(member_id)).entries if e.kind == "welcome")
    await ledger.reverse_entry(entry_id=welcome.entry_id, reason="fraud", actor="s")
    view = await ledger.balance(member_id)
    assert (view.balance, view.debt) == (0, 82)
    await assert_consistent(ledger)


async def test_reversing_a_negative_adjustment_gives_the_points_back(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    taken = await ledger.adjust(member_id=member_id, points=-40, reason="x", actor="s")
    await ledger.reverse_entry(entry_id=taken.entry_id, reason="mistake", actor="s")
    assert (await ledger.balance(member_id)).balance == 100
    await assert_consistent(ledger)


async def test_purchase_entries_cannot_be_reversed_only_refunded(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await new_member(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB)
    earn = (await ledger.history(member_id)).entries[0]
    assert earn.kind == "earn" and not earn.reversible
    with pytest.raises(EntryNotReversible):
        await ledger.reverse_entry(entry_id=earn.entry_id, reason="x", actor="s")


# ---------------------------------------------------------- expiry and holds


async def test_points_burn_180_days_after_they_become_usable_oldest_first(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)  # 100, burn day 180
    clock.advance(timedelta(days=30))
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=2500 * RUB)  # +50
    await ledger.purchase(
        receipt_id="R-2", member_id=member_id, amount_kopecks=400 * RUB, redeem_points=70
    )  # spends 70 of the welcome lot first; earns 6
    view = await ledger.balance(member_id)
    assert view.nearest_burn is not None and view.nearest_burn.points == 30
    clock.advance(timedelta(days=150))
    assert await ledger.expire_due() == 30
    assert (await ledger.balance(member_id)).balance == 56
    assert await ledger.expire_due() == 0  # running again burns nothing more
    clock.advance(timedelta(days=31))
    assert await ledger.expire_due() == 56
    await assert_consistent(ledger)


async def test_held_points_are_pending_until_the_hold_is_over(
    engine: object, rules: Rules, clock: ManualClock, phones: Phones
) -> None:
    held = LedgerService(engine, rules.model_copy(update={"hold_days": 7}), clock)  # type: ignore[arg-type]
    member_id = await new_member(held, phones)
    result = await held.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    assert (result.balance, result.pending) == (100, 10)
    with pytest.raises(RedeemAboveLimit):
        await held.purchase(
            receipt_id="R-2", member_id=member_id, amount_kopecks=10_000 * RUB, redeem_points=110
        )
    clock.advance(timedelta(days=7))
    assert await held.activate_due() == 10
    view = await held.balance(member_id)
    assert (view.balance, view.pending) == (110, 0)
    await assert_consistent(held)


async def test_refund_of_held_points_takes_them_from_pending(
    engine: object, rules: Rules, clock: ManualClock, phones: Phones
) -> None:
    held = LedgerService(engine, rules.model_copy(update={"hold_days": 7}), clock)  # type: ignore[arg-type]
    member_id = await new_member(held, phones)
    await held.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=500 * RUB)
    refund = await held.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=500 * RUB)
    assert (refund.reversed, refund.balance, refund.pending, refund.debt) == (10, 100, 0, 0)
    await assert_consistent(held)


# ---------------------------------------------------------- referral, birthday


async def test_inviter_gets_200_points_after_the_friends_first_purchase_only(
    ledger: LedgerService, phones: Phones
) -> None:
    inviter = (await ledger.register_member(phones.next())).member
    friend = (
        await ledger.register_member(phones.next(), referral_code=inviter.referral_code)
    ).member
    assert friend.referred_by == inviter.member_id
    assert (await ledger.balance(inviter.member_id)).balance == 100
    await ledger.purchase(receipt_id="R-1", member_id=friend.member_id, amount_kopecks=100 * RUB)
    await ledger.purchase(receipt_id="R-2", member_id=friend.member_id, amount_kopecks=100 * RUB)
    assert (await ledger.balance(inviter.member_id)).balance == 300
    await assert_consistent(ledger)


async def test_referral_is_paid_once_per_invited_phone(
    ledger: LedgerService, phones: Phones
) -> None:
    inviter = (await ledger.register_member(phones.next())).member
    friend_phone = phones.next()
    friend = (
        await ledger.register_member(friend_phone, referral_code=inviter.referral_code)
    ).member
    await ledger.purchase(receipt_id="R-1", member_id=friend.member_id, amount_kopecks=100 * RUB)
    await ledger.erase_member(friend.member_id)
    again = (await ledger.register_member(friend_phone, referral_code=inviter.referral_code)).member
    await ledger.purchase(receipt_id="R-2", member_id=again.member_id, amount_kopecks=100 * RUB)
    assert (await ledger.balance(inviter.member_id)).balance == 300


async def test_birthday_bonus_needs_the_date_set_a_week_before_and_lasts_14_days(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)
    today = clock.now().date()
    await ledger.set_birthday(member_id, date(1990, today.month, today.day) + timedelta(days=3))
    with pytest.raises(BirthdayAlreadySet):
        await ledger.set_birthday(member_id, date(1991, 1, 1))
    clock.advance(timedelta(days=3))
    assert await ledger.credit_birthday(member_id) == 0  # set only 3 days before
    clock.advance(timedelta(days=365))
    assert await ledger.credit_birthday(member_id) == 300
    assert await ledger.credit_birthday(member_id) == 0  # once a year
    # The welcome bonus, long past its 180 days, was written off by the birthday's credit.
    assert await ledger.expire_due() == 0
    assert (await ledger.balance(member_id)).balance == 300
    clock.advance(timedelta(days=14) - timedelta(seconds=1))
    assert await ledger.expire_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await ledger.expire_due() == 300
    await assert_consistent(ledger)


async def test_no_birthday_bonus_for_a_member_erased_while_it_was_being_credited(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    member_id = await new_member(ledger, phones)
    today = clock.now().date()
    await ledger.set_birthday(member_id, date(1990, today.month, today.day) + timedelta(days=8))
    clock.advance(timedelta(days=8))
    before = await ledger.get_member(member_id)  # what the job read, a moment too early

    async def as_read_before(_: int) -> object:
        return before

    await ledger.erase_member(member_id)
    monkeypatch.setattr(ledger, "get_member", as_read_before)
    assert await ledger.credit_birthday(member_id) == 0
    assert (await ledger.balance(member_id)).balance == 100  # only the welcome bonus
    await assert_consistent(ledger)


# ----------------------------------------------------------------------- history


async def test_history_pages_newest_first(ledger: LedgerService, phones: Phones) -> None:
    member_id = await new_member(ledger, phones)
    for i in range(24):
        await ledger.purchase(receipt_id=f"R-{i}", member_id=member_id, amount_kopecks=100 * RUB)
    first = await ledger.history(member_id, page=0, page_size=10)
    last = await ledger.history(member_id, page=2, page_size=10)
    assert (first.total, first.pages) == (25, 3)
    assert first.entries[0].reference == "R-23" and len(last.entries) == 5
    assert last.entries[-1].kind == "welcome"
    assert (await ledger.history(member_id, page=99)).page == 2


async def test_points_whose_expiry_has_come_cannot_pay_even_before_the_burn_job_runs(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)  # 100 welcome points, burning in 180 days
    clock.advance(timedelta(days=90))
    await ledger.adjust(member_id=member_id, points=50, reason="goodwill", actor="test")
    clock.advance(timedelta(days=90, seconds=1))  # the welcome points are due; no job has run
    view = await ledger.balance(member_id)
    assert view.balance == 50
    assert view.nearest_burn is not None and view.nearest_burn.points == 50
    assert view.nearest_burn.burns_at > clock.now()
    assert await ledger.redeemable_points(member_id, 1000 * RUB) == 50
    with pytest.raises(RedeemAboveLimit) as refused:
        await ledger.purchase(
            receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=100
        )
    assert refused.value.details["allowed"] == 50
    assert (await ledger.get_member(member_id)).balance == 150  # refused: nothing changed
    result = await ledger.purchase(
        receipt_id="R-2", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=50
    )
    assert (result.redeemed, result.balance) == (50, 19)  # 950 RUB / 50 = 19 earned
    page = await ledger.history(member_id)
    assert [entry.kind for entry in page.entries][:3] == ["earn", "redeem", "expiry"]
    assert await ledger.expire_due() == 0  # already written off by the purchase
    assert await check_ledger(ledger.engine) == []


async def test_the_welcome_bonus_is_once_per_phone_even_after_erasure(
    ledger: LedgerService, phones: Phones
) -> None:
    phone = phones.next()
    first = await ledger.register_member(phone, telegram_id=7001)
    assert first.welcome_points == 100
    await ledger.erase_member(first.member.member_id)
    again = await ledger.register_member(phone, telegram_id=7001)
    assert again.created and again.member.member_id != first.member.member_id
    assert again.welcome_points == 0 and again.member.balance == 0
    other = await ledger.register_member(phones.next(), telegram_id=7002)
    assert other.welcome_points == 100
    assert await check_ledger(ledger.engine) == []


async def test_inviting_yourself_from_your_other_number_pays_no_referral(
    ledger: LedgerService, phones: Phones
) -> None:
    mine = (await ledger.register_member(phones.next(), telegram_id=7003)).member
    second = (
        await ledger.register_member(
            phones.next(), telegram_id=7003, referral_code=mine.referral_code
        )
    ).member
    await ledger.purchase(receipt_id="R-1", member_id=second.member_id, amount_kopecks=100 * RUB)
    assert (await ledger.balance(mine.member_id)).balance == 100  # the welcome bonus only
    friend = (
        await ledger.register_member(
            phones.next(), telegram_id=7004, referral_code=second.referral_code
        )
    ).member
    await ledger.purchase(receipt_id="R-2", member_id=friend.member_id, amount_kopecks=100 * RUB)
    assert (await ledger.balance(second.member_id)).balance == 100 + 2 + 200  # a real friend
    assert await check_ledger(ledger.engine) == []


async def test_reversing_a_bonus_takes_back_only_what_did_not_burn(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)  # 100 welcome points
    bonus = await ledger.adjust(member_id=member_id, points=300, reason="promo", actor="test")
    clock.advance(timedelta(days=10))
    await ledger.purchase(  # 100 welcome + 50 of the bonus pay; 850 RUB earn 17
        receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB, redeem_points=150
    )
    clock.advance(timedelta(days=90))
    await ledger.adjust(member_id=member_id, points=50, reason="later", actor="test")
    clock.advance(timedelta(days=81))
    assert await ledger.expire_due() == 250  # what was left of the bonus
    reversal = await ledger.reverse_entry(entry_id=bonus.entry_id, reason="x", actor="test")
    assert reversal.points == -50  # the 50 the member spent, not the 250 that burnt
    view = await ledger.balance(member_id)
    assert (view.balance, view.debt) == (17 + 50 - 50, 0)
    clock.advance(timedelta(days=100))
    assert await ledger.expire_due() == 17
    welcome = next(e for e in (await ledger.history(member_id)).entries if e.kind == "welcome")
    nothing_left = await ledger.reverse_entry(entry_id=welcome.entry_id, reason="x", actor="t")
    assert (nothing_left.points, nothing_left.debt) == (0, 100)  # spent on R-1: owed back
    assert await check_ledger(ledger.engine) == []


async def test_every_operation_writes_off_what_is_due_first_so_results_match_the_balance(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = await new_member(ledger, phones)  # 100 welcome points, due on day 180
    clock.advance(timedelta(days=100))
    await ledger.adjust(member_id=member_id, points=100, reason="goodwill", actor="test")
    clock.advance(timedelta(days=81))  # the welcome points are due; no burn job has run
    assert (await ledger.balance(member_id)).balance == 100
    with pytest.raises(InsufficientPoints):  # 100 can be seen, not 200
        await ledger.adjust(member_id=member_id, points=-150, reason="fix", actor="test")
    await ledger.adjust(member_id=member_id, points=-50, reason="fix", actor="test")
    assert (await ledger.balance(member_id)).balance == 50  # taken from what is there
    result = await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=1000 * RUB)
    assert result.balance == (await ledger.balance(member_id)).balance == 70  # the receipt
    assert await ledger.expire_due() == 0  # written off by the first operation already
    await assert_consistent(ledger)
