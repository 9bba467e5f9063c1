"""Fault injection and the flood-limit rate limiter, seen through aiogram's exceptions."""

from __future__ import annotations

import time

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)

from emulator import BotAPIEmulator, EmulatedUser, FaultKind, RateLimiter


async def test_retry_after_fault(emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser) -> None:
    emu.add_fault(FaultKind.RETRY_AFTER, method="sendMessage", retry_after=7, times=1)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(alice.chat_id, "x")
    assert caught.value.retry_after == 7
    assert "Too Many Requests: retry after 7" in caught.value.message
    assert (await bot.send_message(alice.chat_id, "y")).text == "y"  # times=1 is used up
    assert emu.faults.rules == []
    assert emu.stats.faults_injected == 1 and emu.stats.too_many_requests == 1
    assert emu.stats.rate_limited == 0


async def test_blocked_server_error_and_bad_request_faults(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    emu.add_fault("blocked", method="sendMessage", times=1)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(alice.chat_id, "x")

    emu.add_fault(FaultKind.SERVER_ERROR, method="sendmessage", status=502, times=1)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(alice.chat_id, "x")
    emu.add_fault(FaultKind.SERVER_ERROR, times=1)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.get_me()

    emu.add_fault(FaultKind.BAD_REQUEST, method="sendPhoto", description="PHOTO_INVALID")
    with pytest.raises(TelegramBadRequest, match="Bad Request: PHOTO_INVALID"):
        await bot.send_photo(alice.chat_id, "whatever")
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID"):  # until cleared
        await bot.send_photo(alice.chat_id, "whatever")
    emu.clear_faults()
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(alice.chat_id, "whatever")
    assert [c.status for c in emu.calls] == [403, 502, 500, 400, 400, 400]
    assert alice.messages == []


async def test_fault_scoped_to_chat(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser, bob: EmulatedUser
) -> None:
    emu.add_fault(FaultKind.BLOCKED, chat_id=bob.chat_id)
    assert (await bot.send_message(alice.chat_id, "ok")).text == "ok"
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(bob.chat_id, "no")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(bob.chat_id, "typing")


async def test_probabilistic_faults_are_seeded(
    emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser
) -> None:
    async def outcomes() -> list[bool]:
        results = []
        for _ in range(20):
            try:
                await bot.send_chat_action(alice.chat_id, "typing")
                results.append(True)
            except TelegramServerError:
                results.append(False)
        return results

    emu.faults.seed(42)
    rule = emu.add_fault(FaultKind.SERVER_ERROR, method="sendChatAction", probability=0.5)
    first = await outcomes()
    emu.faults.seed(42)
    second = await outcomes()
    assert first == second
    assert 3 <= first.count(False) <= 17
    assert rule.fired == 2 * first.count(False)


async def test_latency_fault(emu: BotAPIEmulator, bot: Bot) -> None:
    emu.add_fault(FaultKind.LATENCY, method="getMe", latency_ms=150, times=1)
    started = time.monotonic()
    await bot.get_me()
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    await bot.get_me()
    assert time.monotonic() - started < 0.15
    assert emu.stats.faults_injected == 0


async def test_rate_limit_per_chat(emu: BotAPIEmulator, bot: Bot, alice: EmulatedUser) -> None:
    emu.rate_limiter.configure(enabled=True)
    await bot.send_message(alice.chat_id, "first")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(alice.chat_id, "second")
    assert caught.value.retry_after == 1
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text(text="edit", chat_id=alice.chat_id, message_id=1)
    assert await bot.get_me()  # not a send/edit method: never limited
    assert emu.stats.rate_limited == 2
    assert [m.text for m in alice.messages] == ["first"]


async def test_rate_limit_global_30_per_second(emu: BotAPIEmulator, bot: Bot) -> None:
    emu.rate_limiter.configure(enabled=True)
    users = [emu.user(5000 + i) for i in range(31)]
    for user in users[:30]:
        await bot.send_message(user.chat_id, "broadcast")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(users[30].chat_id, "broadcast")
    assert caught.value.retry_after >= 1
    assert emu.stats.rate_limited == 1
    assert users[30].messages == [] and all(len(u.messages) == 1 for u in users[:30])


async def test_rate_limit_allows_traffic_under_the_limits(emu: BotAPIEmulator) -> None:
    """A fake clock: 1 msg/s per chat and 30/s overall pass; bursts within config pass."""
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.configure(enabled=True)
    for second in range(5):
        now[0] = 100.0 + second * 1.0
        for chat in range(30):
            limiter.check(1, "sendMessage", chat)  # 30 chats, once per second each
    now[0] += 0.5
    with pytest.raises(Exception, match="retry after 1"):
        limiter.check(1, "sendMessage", 0)
    limiter.configure(per_chat_burst=3)
    for _ in range(3):
        limiter.check(1, "sendMessage", 99)
    with pytest.raises(Exception, match="Too Many Requests"):
        limiter.check(1, "sendMessage", 99)
    now[0] += 1.0
    limiter.check(1, "sendMessage", 99)  # refilled one token


async def test_rate_limit_through_emulator_with_fake_clock(
    alice: EmulatedUser, emu: BotAPIEmulator, bot: Bot
) -> None:
    now = [0.0]
    emu.rate_limiter.clock = lambda: now[0]
    emu.rate_limiter.configure(enabled=True)
    for i in range(3):
        now[0] = i * 1.01
        await bot.send_message(alice.chat_id, f"tick {i}")
    assert emu.stats.rate_limited == 0
    assert len(alice.messages) == 3
