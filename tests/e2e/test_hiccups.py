"""A brief Telegram hiccup (429 with retry_after, 5xx) does not cost a person their answer:
the bot's replies are retried, bounded; the outbox keeps its own retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from sqlalchemy import select

from bot.retries import RetryBriefFailures
from bot.run import Application
from emulator import BotAPIEmulator, FaultKind
from ledger.clock import ManualClock
from storage.schema import outbox
from tests.e2e.conftest import TOKEN, join


async def test_a_member_gets_the_balance_through_a_429_and_two_502s(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """It read "Something went wrong…" after one 429, and nothing at all after two 502s."""
    anna = emulator.user(7001, "Anna", language_code="en")
    await join(anna, "+79997001000")
    emulator.add_fault(
        FaultKind.RETRY_AFTER, method="sendMessage", chat_id=anna.chat_id, retry_after=2, times=1
    )
    emulator.add_fault(
        FaultKind.SERVER_ERROR, method="sendMessage", chat_id=anna.chat_id, status=502, times=2
    )
    await anna.press_reply_button("💰 Balance")
    answer = await anna.wait_message(timeout=15)
    assert "Balance: 100 points" in (answer.text or ""), answer.text
    assert emulator.faults.rules == []  # all three faults were met on the way
    await anna.assert_no_messages(within=0.5)  # no apology after it


async def test_the_outbox_retries_on_its_own_and_sends_once(
    emulator: BotAPIEmulator, app: Application, clock: ManualClock
) -> None:
    """The outbox has its own policy (a 429 pauses all its sending, a 5xx is retried later
    with the message put back): its sends do not go through the replies' retries too."""
    anna = emulator.user(7002, "Anna", language_code="en")
    await join(anna, "+79997002000")
    member = await app.services.ledger.member_by_telegram(7002)  # type: ignore[union-attr]
    assert member is not None and app.notifier is not None and app.sender is not None
    emulator.add_fault(
        FaultKind.RETRY_AFTER, method="sendMessage", chat_id=anna.chat_id, retry_after=1, times=1
    )
    await app.notifier.support_answer(member.member_id, 1, "Hello")
    for _ in range(100):
        if app.sender.retry_after_seen:
            break
        await asyncio.sleep(0.05)
    assert app.sender.retry_after_seen == 1  # the outbox itself met the 429
    clock.advance(timedelta(seconds=2))  # the message was put back for retry_after
    app.services.outbox.wakeup.set()  # type: ignore[union-attr]
    told = await anna.wait_message(timeout=10)
    assert "Hello" in (told.text or "")
    await anna.assert_no_messages(within=0.5)
    async with app.services.ledger.engine.connect() as conn:  # type: ignore[union-attr]
        rows = (await conn.execute(select(outbox.c.status, outbox.c.attempts))).all()
    assert [(row.status, row.attempts) for row in rows] == [("sent", 1)]


@pytest.fixture
async def bot_with_retries(emulator: BotAPIEmulator) -> AsyncIterator[tuple[Bot, list[float]]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = emulator.aiogram_bot()
    bot.session.middleware(RetryBriefFailures(budget=10.0, sleep=sleep))
    yield bot, waits
    await bot.session.close()


async def test_retries_wait_as_told_and_stay_within_their_budget(
    emulator: BotAPIEmulator, bot_with_retries: tuple[Bot, list[float]]
) -> None:
    bot, waits = bot_with_retries
    pat = emulator.user(7003, "Pat", language_code="en")
    emulator.add_fault(FaultKind.RETRY_AFTER, method="sendMessage", retry_after=3, times=1)
    emulator.add_fault(FaultKind.SERVER_ERROR, method="sendMessage", status=500, times=1)
    assert (await bot.send_message(pat.chat_id, "hi")).text == "hi"
    assert waits[0] == 3 and len(waits) == 2 and 0 < waits[1] <= 2

    # A wait longer than what is left of the budget is not waited: the error is raised at once.
    waits.clear()
    emulator.add_fault(FaultKind.RETRY_AFTER, method="sendMessage", retry_after=60, times=1)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(pat.chat_id, "late")
    assert waits == []

    # A server that keeps failing: a few tries, never more waiting than the budget.
    emulator.add_fault(FaultKind.SERVER_ERROR, method="sendMessage", status=502)
    with pytest.raises(TelegramServerError):
        await bot.send_message(pat.chat_id, "down")
    assert 1 < len(waits) <= 6 and sum(waits) <= 10
    emulator.clear_faults()


async def test_retries_leave_polling_to_the_dispatcher(
    emulator: BotAPIEmulator, bot_with_retries: tuple[Bot, list[float]]
) -> None:
    """getUpdates has its own backoff in aiogram's polling loop: not retried twice."""
    bot, waits = bot_with_retries
    emulator.add_fault(FaultKind.SERVER_ERROR, method="getUpdates", status=502, times=1)
    with pytest.raises(TelegramServerError):
        await bot.get_updates(timeout=0)
    assert waits == []


async def test_a_closed_port_is_retried_then_raised(emulator: BotAPIEmulator) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    session = AiohttpSession(api=TelegramAPIServer.from_base("http://127.0.0.1:9"))
    session.middleware(RetryBriefFailures(budget=10.0, sleep=sleep))
    bot = Bot(TOKEN, session=session)
    try:
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(1, "x")
    finally:
        await session.close()
    assert len(waits) >= 1 and sum(waits) <= 10
