"""Fixtures for the emulator's own tests: a running emulator, an aiogram Bot, a user."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot

from emulator import BotAPIEmulator, EmulatedUser

TOKEN = "123456:TEST"
USERNAME = "loyalty_test_bot"


@pytest.fixture
async def emu() -> AsyncIterator[BotAPIEmulator]:
    emulator = BotAPIEmulator()
    emulator.add_bot(TOKEN, username=USERNAME, first_name="Loyalty")
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def bot(emu: BotAPIEmulator) -> AsyncIterator[Bot]:
    aiogram_bot = emu.aiogram_bot()
    yield aiogram_bot
    await aiogram_bot.session.close()


@pytest.fixture
def alice(emu: BotAPIEmulator) -> EmulatedUser:
    return emu.user(1001, first_name="Alice", username="alice", language_code="ru")


@pytest.fixture
def bob(emu: BotAPIEmulator) -> EmulatedUser:
    return emu.user(1002, first_name="Bob")
