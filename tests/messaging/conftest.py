"""A sender wired to the Bot API emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiogram import Bot

from bot.i18n import build_i18n
from emulator import BotAPIEmulator
from ledger.rules import Rules
from ledger.service import LedgerService
from messaging.notices import Notices
from messaging.outbox import Outbox
from messaging.sender import Sender

TOKEN = "654321:SCHEDULER"


@dataclass
class Delivery:
    emulator: BotAPIEmulator
    bot: Bot
    outbox: Outbox
    sender: Sender
    ledger: LedgerService


@pytest.fixture
async def delivery(ledger: LedgerService, rules: Rules) -> AsyncIterator[Delivery]:
    emu = BotAPIEmulator()
    emu.add_bot(TOKEN, username="sched_bot")
    await emu.start()
    bot = emu.aiogram_bot()
    outbox = Outbox(ledger.engine, ledger.clock)
    sender = Sender(
        outbox,
        bot,
        rules.messages,
        rate_per_second=200,
        per_chat_interval=0.0,
        notices=Notices(build_i18n(), rules),
    )
    yield Delivery(emu, bot, outbox, sender, ledger)
    await bot.session.close()
    await emu.stop()
