"""The till posts over real HTTP to the running application; the member gets the receipt."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy import select

from bot.app import Application
from emulator import BotAPIEmulator
from storage.schema import outbox
from tests.e2e.conftest import join


async def _post(
    app: Application, key: str, body: dict[str, object]
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{app.api_url}/api/v1/purchases",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        return response.status, await response.json()


async def test_till_purchase_sends_the_member_a_receipt_at_once(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(8001, "Ivan", language_code="en")
    await join(user, "+79990008001")
    _, key = await app.services.api_keys.create("till")  # type: ignore[union-attr]
    status, body = await _post(
        app, key, {"receipt_id": "T-1", "customer": "+79990008001", "amount": "2500.00"}
    )
    assert status == 201 and body["accrued"] == 50
    receipt = await user.wait_message()
    assert (receipt.text or "").splitlines()[:3] == [
        "🧾 Purchase T-1: 2,500 ₽",
        "➕ Earned: 50 points",
        "💰 Balance: 150 points",
    ]


async def test_a_member_who_blocked_the_bot_does_not_break_the_purchase(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(8002, "Ivan", language_code="en")
    await join(user, "+79990008002")
    user.block_bot()
    _, key = await app.services.api_keys.create("till")  # type: ignore[union-attr]
    status, body = await _post(
        app, key, {"receipt_id": "T-2", "customer": "+79990008002", "amount": "1000"}
    )
    assert status == 201 and body["balance"] == 120
    await app.sender.drain()  # type: ignore[union-attr]
    # The app's own sender loop may have claimed the receipt first and still be sending it.
    for _ in range(100):
        async with app.engine.connect() as conn:  # type: ignore[union-attr]
            status_row = (await conn.execute(select(outbox.c.status, outbox.c.reason))).one()
        if status_row.status not in ("queued", "sending"):
            break
        await asyncio.sleep(0.05)
    assert tuple(status_row) == ("skipped_unreachable", "blocked the bot")
    member = await app.services.ledger.member_by_telegram(8002)  # type: ignore[union-attr]
    assert member is not None and member.unreachable
    status, body = await _post(
        app, key, {"receipt_id": "T-3", "customer": "+79990008002", "amount": "1000"}
    )
    assert status == 201 and body["balance"] == 140


async def test_blocking_and_unblocking_the_bot_is_remembered(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(8003, "Ivan", language_code="en")
    await join(user, "+79990008003")
    ledger = app.services.ledger  # type: ignore[union-attr]
    user.block_bot()
    for _ in range(50):
        member = await ledger.member_by_telegram(8003)
        if member is not None and member.unreachable:
            break
        await asyncio.sleep(0.1)
    assert member is not None and member.unreachable
    user.unblock_bot()
    for _ in range(50):
        member = await ledger.member_by_telegram(8003)
        if member is not None and not member.unreachable:
            break
        await asyncio.sleep(0.1)
    assert member is not None and not member.unreachable
