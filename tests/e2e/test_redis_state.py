"""With REDIS_URL set (several bot processes), conversation state lives in Redis: a flow that
spans messages works, its state is visible in Redis while it waits, and is gone when done."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.run import Application
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from tests.e2e.conftest import TOKEN, join, make_settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BOT_ID = TOKEN.split(":")[0]


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the state store is what is tested here, not the database


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # no Redis on this machine
        await client.aclose()
        reason = f"Redis not reachable at {REDIS_URL}: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: Redis tests must run)", pytrace=False)
        pytest.skip(reason)
    await _forget(client)
    yield client
    await _forget(client)
    await client.aclose()


async def _forget(client: Redis) -> None:
    """Only this test bot's keys: the database may be someone else's too."""
    keys = [key async for key in client.scan_iter(match=f"fsm:{BOT_ID}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def app(
    emulator: BotAPIEmulator,
    database_url: str,
    clock: ManualClock,
    tmp_path: Path,
    redis: Redis,
) -> AsyncIterator[Application]:
    settings = make_settings(emulator, database_url, tmp_path).model_copy(
        update={"redis_url": REDIS_URL}
    )
    application = Application(settings, clock=clock)
    await application.start()
    yield application
    await application.stop()


async def test_a_support_request_spans_two_messages_with_its_state_in_redis(
    emulator: BotAPIEmulator, app: Application, redis: Redis
) -> None:
    user = emulator.user(9101, "Ivan", language_code="en")
    await join(user, "+79990009101")
    await user.press_reply_button("💬 Support")
    await user.wait_message()
    state_key = f"fsm:{BOT_ID}:9101:9101:state"
    assert (await redis.get(state_key)) == b"Asking:support"  # waiting for the text, in Redis
    await user.send_text("Where is my birthday bonus?")
    assert "Request #1 is registered" in ((await user.wait_message()).text or "")
    assert await redis.get(state_key) is None  # the flow is over
