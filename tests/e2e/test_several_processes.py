"""Several processes on one database: Telegram gives updates to one poller at a time, so only
the process that leads the scheduler polls; when it stops, another one takes the chat over."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.run import Application
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from tests.e2e.conftest import join, make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # (the e2e tests run on SQLite unless they ask)


async def test_only_the_leader_polls_and_another_takes_over_when_it_stops(
    emulator: BotAPIEmulator, database_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    first = Application(make_settings(emulator, database_url, tmp_path / "a"), clock=clock)
    second = Application(make_settings(emulator, database_url, tmp_path / "b"), clock=clock)
    await first.start()
    await second.start()
    try:
        assert first.polls and not second.polls
        user = emulator.user(6001, "Ivan", language_code="en")
        await join(user, "+79990006001")
        await first.stop()
        assert second.scheduler is not None
        await second.scheduler._lead()  # the next tick of its 15 s leadership check
        assert second.polls
        await user.send_command("/balance")
        assert "100 points" in ((await user.wait_message()).text or "")
    finally:
        await first.stop()
        await second.stop()
