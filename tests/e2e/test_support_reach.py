"""A member's request reaches someone who can answer it, or the member and the desk know it
did not: staff who never opened their chat with the bot cannot be written to."""

from __future__ import annotations

import asyncio

import pytest

from bot.run import Application
from emulator import BotAPIEmulator
from tests.e2e.conftest import ADMIN_ID, ask_support, join


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the outbox's outcomes are read in SQL on both



async def _drain(app: Application) -> None:
    """Let the outbox deliver (and fail) what is due, and whatever that queues next."""
    assert app.sender is not None
    for _ in range(3):
        await app.sender.drain()
        await asyncio.sleep(0.05)


async def test_when_no_one_can_be_reached_the_member_is_told_and_the_desk_shows_it(
    emulator: BotAPIEmulator, app: Application
) -> None:
    """The only admin never opened the chat: the news failed "chat not found" and nobody,
    not the member nor the desk, ever knew."""
    olga = emulator.user(8401, "Olga", language_code="en")
    await join(olga, "+79998401000")
    assert "Request #1 is registered" in await ask_support(olga, "Where are my points?")
    await _drain(app)
    told = await olga.wait_message()
    assert "could not reach" in (told.text or "") and "#1 is kept" in (told.text or ""), told.text
    await olga.assert_no_messages(within=0.3)

    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")  # opens the chat at last
    await admin.send_command("/tickets")
    listing = (await admin.wait_message()).text or ""
    assert "#1 · question · Olga" in listing and "nobody on the team was told" in listing
    await admin.send_command("/ticket 1")
    assert "nobody on the team was told" in ((await admin.wait_message()).text or "")


async def test_news_that_cannot_reach_support_goes_to_an_admin(
    emulator: BotAPIEmulator, app: Application
) -> None:
    admin = emulator.user(ADMIN_ID, "Boss", language_code="en")
    await admin.send_command("/staff add 8501 support")  # 8501 never opened the chat
    assert "Done:" in ((await admin.wait_message()).text or "")
    anna = emulator.user(8402, "Anna", language_code="en")
    await join(anna, "+79998402000")
    assert "Request #1 is registered" in await ask_support(anna, "Hello?")
    await _drain(app)
    news = await admin.wait_message()
    assert (news.text or "").startswith("🆕 Request #1 from Anna"), news.text
    await anna.assert_no_messages(within=0.3)  # someone was reached: nothing to tell
    await admin.send_command("/tickets")
    listing = (await admin.wait_message()).text or ""
    assert "#1 · question · Anna" in listing and "nobody on the team" not in listing
