"""End-to-end fixtures: the Bot API emulator and the real application polling it.

The application is the one `python -m bot` runs (bot.run.Application): long polling over HTTP
against the emulator, a migrated database, the real routers. Only the clock is injected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.run import Application
from bot.settings import Settings
from emulator import BotAPIEmulator, EmulatedUser
from ledger.clock import ManualClock
from tests.conftest import ROOT

TOKEN = "123456:TEST-TOKEN"
BOT_USERNAME = "loyalty_test_bot"
SECRET = "test-secret-key"
ADMIN_ID = 9000


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The chat tests run on SQLite; the ledger underneath is tested on both backends."""
    return str(request.param)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    emu = BotAPIEmulator()
    emu.add_bot(TOKEN, username=BOT_USERNAME, first_name="Loyalty")
    await emu.start()
    yield emu
    await emu.stop()


def make_settings(emulator: BotAPIEmulator, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=TOKEN,
        telegram_api_url=emulator.base_url,
        database_url=database_url,
        secret_key=SECRET,
        rules_file=ROOT / "rules.toml",
        api_port=0,
        admin_ids=(ADMIN_ID,),
        redemption_confirm_seconds=2,
    )


@pytest.fixture
async def app(
    emulator: BotAPIEmulator, database_url: str, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Application]:
    application = Application(make_settings(emulator, database_url, tmp_path), clock=clock)
    await application.start()
    yield application
    await application.stop()


async def join(user: EmulatedUser, phone: str, start: str = "/start") -> None:
    """Take a new user through /start, consent and sharing their own phone."""
    await user.send_command(start)
    greeting = await user.wait_message()
    await user.press_button(greeting, greeting.inline_buttons[0].text)
    share = await user.wait_message()
    await user.press_reply_button(share.keyboard_texts[0], phone_number=phone)
    await user.wait_message()


# Each test here starts the whole application (about a second on two cores): together they are
# most of the suite's time. `make test-fast` keeps one file of them as a smoke test.
FAST_E2E = {"test_member_journey.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name not in FAST_E2E:
            item.add_marker(pytest.mark.slow)


async def ask_support(member: EmulatedUser, text: str) -> str:
    """The member opens Support and writes `text`; the bot's answer."""
    await member.press_reply_button("💬 Support")
    await member.wait_message()
    await member.send_text(text)
    return (await member.wait_message()).text or ""
