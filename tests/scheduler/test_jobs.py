"""The jobs catch up after downtime and do everything once, on both backends."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bot.i18n import build_i18n
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.policy import BIRTH_YEAR_UNKNOWN
from ledger.service import LedgerService
from messaging import notifier as notifier_module
from messaging.notices import Notices
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from scheduler.due import warning_threshold
from scheduler.jobs import Jobs
from storage.schema import outbox
from tests.conftest import Phones

RUB = 100


def make_jobs(ledger: LedgerService) -> Jobs:
    return Jobs(ledger, Notifier(build_i18n(), ledger, Outbox(ledger.engine, ledger.clock)),
                "test")


async def queued(ledger: LedgerService) -> list[tuple[str, str]]:
    """What the jobs queued (not the receipts the purchases wrote)."""
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.dedup_key, outbox.c.text)
                                   .where(~outbox.c.dedup_key.startswith("receipt:"))
                                   .order_by(outbox.c.id))).all()
    return [(row.dedup_key, row.text) for row in rows]


def test_a_late_run_warns_for_the_threshold_it_is_in() -> None:
    thresholds = (7, 3)
    assert [warning_threshold(d, thresholds) for d in (9, 8, 7, 6, 4, 3, 2, 0, -1)] == [
        None, None, 7, 7, 7, 3, 3, 3, None]


async def test_after_downtime_warnings_and_burns_happen_once(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=77, language="en")).member
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=170))  # off for months; 10 days before the welcome burns
    await jobs.run_all()
    assert await queued(ledger) == []
    clock.advance(timedelta(days=4))  # 6 days before: the 7-day warning, late but once
    await jobs.run_all()
    await jobs.run_all()
    first = await queued(ledger)
    assert len(first) == 1 and first[0][0].endswith(":7")
    assert first[0][1].startswith("🔥 100 points burn on 29 August")
    clock.advance(timedelta(days=5))  # 1 day before: the 3-day warning (the 3rd day was missed)
    await jobs.run_all()
    second = await queued(ledger)
    assert len(second) == 2 and second[1][0].endswith(":3")
    clock.advance(timedelta(days=3))  # past the burn, the bot was off again
    burns = [await jobs.burn(), await jobs.burn()]
    assert [b["points"] for b in burns] == [100, 0]
    assert (await ledger.balance(member.member_id)).balance == 0
    await jobs.run_all()
    queued_now = await queued(ledger)
    assert len(queued_now) == 3 and queued_now[2][0].startswith("burnt:")  # told once
    assert await check_ledger(ledger.engine) == []


async def test_a_member_is_told_their_points_burnt_and_their_balance_once(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=79, language="ru")).member
    other = (await ledger.register_member(phones.next(), telegram_id=80, language="en")).member
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=100))
    await ledger.adjust(member_id=member.member_id, points=21, reason="goodwill", actor="test")
    clock.advance(timedelta(days=81))  # the welcome points of both expired yesterday
    assert [(await jobs.burn())["points"], (await jobs.burn())["points"]] == [200, 0]
    async with ledger.engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox).where(outbox.c.dedup_key.like("burnt:%")))
        ).all()
    # Written as notices in the burn's transaction, rendered in each member's language when
    # they are sent.
    notices = Notices(build_i18n(), ledger.rules)
    language = {79: "ru", 80: "en"}
    told = {
        row.chat_id: (
            notices.render(row.kind, json.loads(row.payload), language[row.chat_id], "UTC"),
            row.category,
            row.member_id,
        )
        for row in rows
    }
    assert told == {
        79: (
            "🔥 30 августа сгорело 100 баллов: закончился срок их действия. Баланс: 21 балл.",
            "reminder",  # as the burn warnings: their opt-out, quiet hours and cap apply
            member.member_id,
        ),
        80: (
            "🔥 100 points burnt on 30 August: their time was up. Your balance: 0 points.",
            "reminder",
            other.member_id,
        ),
    }


async def test_a_burn_and_its_notice_are_one_transaction(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No burn without its notice: when the notice cannot be written, nothing burns."""
    member = (await ledger.register_member(phones.next(), telegram_id=81, language="en")).member
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=181))  # the welcome points are due to burn

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("the outbox is full")

    monkeypatch.setattr(notifier_module, "write_notice", broken)
    with pytest.raises(RuntimeError):
        await jobs.burn()
    monkeypatch.undo()
    assert (await jobs.burn())["points"] == 100  # the failed run burnt nothing
    assert (await ledger.balance(member.member_id)).balance == 0
    assert len(await queued(ledger)) == 1


async def test_tier_up_is_told_once_and_a_fall_is_silent(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=78, language="en")).member
    jobs = make_jobs(ledger)
    await ledger.purchase(receipt_id="R-1", member_id=member.member_id,
                          amount_kopecks=10_000 * RUB)
    await jobs.tiers()
    await jobs.tiers()
    assert [text for _, text in await queued(ledger)] == [
        "🎉 You've reached the Silver tier! From now on you earn 1 point for every 40 ₽."]
    clock.advance(timedelta(days=366))
    assert (await jobs.tiers())["recomputed"] == 1  # back to base, nobody told
    assert len(await queued(ledger)) == 1
    await ledger.purchase(receipt_id="R-2", member_id=member.member_id,
                          amount_kopecks=30_000 * RUB)
    await jobs.tiers()
    assert "Gold tier" in (await queued(ledger))[-1][1]


async def test_birthday_bonus_and_greeting_once(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=79, language="ru")).member
    today = clock.now().date()
    await ledger.set_birthday(member.member_id, date(1990, today.month, today.day)
                              + timedelta(days=10))
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=10))
    results = [await jobs.birthdays(), await jobs.birthdays()]
    assert [r["credited"] for r in results] == [300, 0]
    greetings = await queued(ledger)
    assert len(greetings) == 1 and greetings[0][1].startswith("🎂 С днём рождения! На ваш счёт "
                                                              "начислено 300 баллов")
    assert (await ledger.balance(member.member_id)).balance == 400


async def test_a_birthday_given_without_its_year_is_greeted_on_the_day(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member = (await ledger.register_member(phones.next(), telegram_id=82, language="en")).member
    day = clock.now().date() + timedelta(days=10)
    no_year = date(BIRTH_YEAR_UNKNOWN, day.month, day.day)
    assert (await ledger.set_birthday(member.member_id, no_year)).birthday == no_year
    assert (await ledger.get_member(member.member_id)).birthday == no_year  # stored as given
    jobs = make_jobs(ledger)
    clock.advance(timedelta(days=10))
    assert (await jobs.birthdays())["credited"] == 300


async def test_held_points_are_activated_by_the_job(
    engine: object, rules: object, clock: ManualClock, phones: Phones
) -> None:
    held = LedgerService(engine, rules.model_copy(update={"hold_days": 7}), clock)  # type: ignore[arg-type, attr-defined]
    member = (await held.register_member(phones.next())).member
    await held.purchase(receipt_id="R-1", member_id=member.member_id, amount_kopecks=500 * RUB)
    jobs = make_jobs(held)
    assert (await jobs.activate())["points"] == 0
    clock.advance(timedelta(days=7))
    assert (await jobs.activate())["points"] == 10
    assert (await jobs.activate())["points"] == 0
    assert (await held.balance(member.member_id)).balance == 110


async def test_gift_points_valid_seven_days_get_no_seven_day_warning_the_moment_they_arrive(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    """A broadcast's gift says how long it lasts; a 7-day warning minutes later would say it
    again and take one of the member's three weekly messages. The 3-day one still comes."""
    member = (await ledger.register_member(phones.next(), telegram_id=78, language="en")).member
    jobs = make_jobs(ledger)
    await ledger.credit_gift(member.member_id, 1, 50, 7)
    await jobs.run_all()
    assert await queued(ledger) == []
    clock.advance(timedelta(days=4, hours=1))  # 3 days before the gift burns
    await jobs.run_all()
    (warning,) = await queued(ledger)
    assert warning[0].endswith(":3") and warning[1].startswith("🔥 50 points burn on")
