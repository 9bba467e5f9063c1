"""Segments counted over members the ledger made, with its manual clock: each condition alone,
in combination, the reachable ones and why the others are not, and erased members never counted.
Both backends.

The members (days from the start; "now" is day 200):

    M1  day 0, Telegram, ru, birthday in May; buys 40,000 on day 150 (gold). Its welcome lot
        (100, burns on day 180) is overdue at day 200: stored balance 100 more than usable.
    M2  day 0, Telegram, en, birthday in December; buys 12,000 on day 10 (silver), 2,000 of it
        refunded on day 100, buys 1,000 on day 195 (which burns its due lots): usable 25 points.
    M3  day 0, Telegram, ru, opted out of offers; never buys: its welcome lot is overdue (usable 0).
    M4  day 190, Telegram, en, blocked the bot and opted out of offers; 100 points to day 370.
    M5  day 21, no Telegram, ru, birthday in May (no year); buys 5,000 on day 25: 200 points,
        all burning on days 201 and 205.
    M6  day 0, Telegram, ru; buys 50,000 on day 100 (gold); erased on day 120.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from ledger import policy
from ledger.clock import ManualClock
from ledger.service import LedgerService
from marketing.audience import SegmentCounts
from marketing.saved import Segments
from tests.conftest import START, Phones

RUB = 100


@dataclass
class Members:
    ids: dict[str, int]


def day(clock: ManualClock, n: int) -> None:
    clock.set(START + timedelta(days=n))


@pytest.fixture
async def segments(ledger: LedgerService, clock: ManualClock, phones: Phones) -> Segments:
    async def join(telegram_id: int | None, language: str) -> int:
        registration = await ledger.register_member(
            phones.next(), telegram_id=telegram_id, language=language
        )
        return registration.member.member_id

    day(clock, 0)
    m1, m2, m3, m6 = (
        await join(1, "ru"),
        await join(2, "en"),
        await join(3, "ru"),
        await join(6, "ru"),
    )
    await ledger.set_birthday(m1, date(1990, 5, 14))
    await ledger.set_birthday(m2, date(1985, 12, 1))
    await ledger.update_profile(m3, notify_offers=False)
    day(clock, 10)
    await ledger.purchase(receipt_id="M2-1", member_id=m2, amount_kopecks=12_000 * RUB)
    day(clock, 21)
    m5 = await join(None, "ru")
    await ledger.set_birthday(m5, date(policy.BIRTH_YEAR_UNKNOWN, 5, 30))
    day(clock, 25)
    await ledger.purchase(receipt_id="M5-1", member_id=m5, amount_kopecks=5_000 * RUB)
    day(clock, 100)
    await ledger.refund(refund_id="M2-RF", receipt_id="M2-1", amount_kopecks=2_000 * RUB)
    await ledger.purchase(receipt_id="M6-1", member_id=m6, amount_kopecks=50_000 * RUB)
    day(clock, 120)
    await ledger.erase_member(m6)
    day(clock, 150)
    await ledger.purchase(receipt_id="M1-1", member_id=m1, amount_kopecks=40_000 * RUB)
    day(clock, 190)
    m4 = await join(4, "en")
    await ledger.update_profile(m4, unreachable=True, notify_offers=False)
    day(clock, 195)
    await ledger.purchase(receipt_id="M2-2", member_id=m2, amount_kopecks=1_000 * RUB)
    day(clock, 200)
    # The ledger agrees with the story above.
    usable = {name: (await ledger.balance(i)).balance for name, i in [("m2", m2), ("m3", m3)]}
    usable |= {"m4": (await ledger.balance(m4)).balance, "m5": (await ledger.balance(m5)).balance}
    assert usable == {"m2": 25, "m3": 0, "m4": 100, "m5": 200}
    assert (await ledger.balance(m1)).balance >= 800
    assert [(await ledger.get_member(i)).tier for i in (m1, m2, m3, m4, m5, m6)] == [
        "gold",
        "silver",
        "base",
        "base",
        "base",
        "gold",
    ]
    return Segments(ledger.engine, ledger.rules, clock)


async def count(segments: Segments, **raw: Any) -> int:
    return (await segments.preview(segments.parse(raw))).count


async def test_no_condition_counts_every_member_but_the_erased_one(segments: Segments) -> None:
    assert await segments.preview(segments.parse({})) == SegmentCounts(
        count=5, reachable=2, opted_out=1, blocked=1, no_chat=1
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tiers": ["gold"]}, 1),  # M1 (the erased M6 is gold too)
        ({"tiers": ["silver", "gold"]}, 2),
        ({"tiers": ["base"]}, 3),
        ({"balance_min": 100}, 3),  # M1, M4, M5; not M3, whose 100 stored points burnt
        ({"balance_max": 50}, 2),  # M2 (25), M3 (0 usable, 100 stored)
        ({"balance_min": 100, "balance_max": 150}, 1),  # M4
        ({"balance_min": 0}, 5),
        ({"burning_within_days": 30}, 1),  # M5 (days 201, 205); M1's day-180 lot is overdue
        ({"burning_within_days": 1}, 1),  # M5's welcome lot, day 201
        ({"burning_within_days": 200}, 4),  # M1 (330), M2 (375), M4 (370), M5
        ({"inactive_days": 30}, 3),  # M1 (day 150), M3 (never, joined day 0), M5 (day 25)
        ({"inactive_days": 50}, 3),  # M1's purchase exactly 50 days ago is not in the last 50
        ({"inactive_days": 60}, 2),  # M3, M5
        ({"inactive_days": 195}, 1),  # M3 (joined 200 days ago); M5 bought 175 days ago
        ({"joined_within_days": 30}, 1),  # M4
        ({"joined_within_days": 190}, 2),  # M4, M5
        ({"language": "en"}, 2),  # M2, M4
        ({"language": "ru"}, 3),  # M1, M3, M5 (not the erased M6)
        ({"birthday_month": 5}, 2),  # M1, M5 (a birthday without a year)
        ({"birthday_month": 12}, 1),
        ({"birthday_month": 1}, 0),
        ({"purchases_min": 1}, 3),  # M1, M2, M5
        ({"purchases_min": 2}, 1),  # M2
        ({"purchases_min": 0}, 5),
        ({"spent_365_min": "11000.00"}, 2),  # M1 40,000; M2 12,000 - 2,000 + 1,000
        ({"spent_365_min": "11000.01"}, 1),
        ({"spent_365_min": "0"}, 5),
    ],
)
async def test_each_condition_alone(segments: Segments, raw: dict[str, Any], expected: int) -> None:
    assert await count(segments, **raw) == expected


async def test_conditions_combine_and_reachability_is_told_by_reason(segments: Segments) -> None:
    both = segments.parse({"tiers": ["silver", "gold"], "inactive_days": 30})
    assert await segments.preview(both) == SegmentCounts(1, 1, 0, 0, 0)  # M1
    four = segments.parse(
        {"balance_min": 100, "inactive_days": 30, "language": "ru", "purchases_min": 1}
    )
    assert await segments.preview(four) == SegmentCounts(2, 1, 0, 0, 1)  # M1, M5 (no chat)
    newest = segments.parse({"joined_within_days": 30, "burning_within_days": 200})
    # M4 blocked the bot and opted out: counted once, as blocked (as the sender skips it).
    assert await segments.preview(newest) == SegmentCounts(1, 0, 0, 1, 0)
    may_birthdays = segments.parse({"inactive_days": 30, "birthday_month": 5, "language": "ru"})
    assert await segments.preview(may_birthdays) == SegmentCounts(2, 1, 0, 0, 1)  # M1, M5
    # Purchases and spend are read in one pass: both conditions hold together.
    assert await count(segments, purchases_min=2, spent_365_min="11000.00") == 1  # M2
    assert await count(segments, purchases_min=1, spent_365_min="11000.01") == 1  # M1
    assert await count(segments, purchases_min=2, spent_365_min="11000.01") == 0
    nobody = segments.parse({"tiers": ["gold"], "language": "en"})
    assert await segments.preview(nobody) == SegmentCounts(0, 0, 0, 0, 0)


async def test_spend_counts_the_last_365_days_only(
    ledger: LedgerService, clock: ManualClock, phones: Phones
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=9)).member.member_id
    await ledger.purchase(receipt_id="R-1", member_id=member, amount_kopecks=15_000 * RUB)
    segments = Segments(ledger.engine, ledger.rules, clock)
    spent = segments.parse({"spent_365_min": "15000.00"})
    spent_and_bought = segments.parse({"spent_365_min": "15000.00", "purchases_min": 1})
    clock.advance(timedelta(days=365) - timedelta(seconds=1))
    assert (await segments.preview(spent)).count == 1
    assert (await segments.preview(spent_and_bought)).count == 1
    clock.advance(timedelta(seconds=1))
    assert (await segments.preview(spent)).count == 0
    assert (await segments.preview(spent_and_bought)).count == 0
    assert (await segments.preview(segments.parse({"purchases_min": 1}))).count == 1  # lifetime
