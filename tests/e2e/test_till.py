"""The till posts over real HTTP to the running application; the member gets the receipt."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy import select

from bot.run import Application
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


async def _get(app: Application, key: str, path: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{app.api_url}{path}", headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        return response.status, await response.json()


async def _answer(app: Application, key: str, confirmation_id: object) -> str:
    """Poll the confirmation as a till does, until the member has answered."""
    for _ in range(100):
        status, body = await _get(app, key, f"/api/v1/confirmations/{confirmation_id}")
        assert status == 200, body
        if body["status"] != "pending":
            return str(body["status"])
        await asyncio.sleep(0.05)
    raise AssertionError("the member's answer never reached the till")


async def test_a_large_till_redemption_goes_through_once_the_member_says_yes_in_the_chat(
    emulator: BotAPIEmulator, app: Application
) -> None:
    user = emulator.user(8004, "Ivan", language_code="en")
    await join(user, "+79990008004")
    ledger = app.services.ledger  # type: ignore[union-attr]
    member = await ledger.member_by_telegram(8004)
    assert member is not None
    await ledger.adjust(member_id=member.member_id, points=4900, reason="test", actor="test")
    _, key = await app.services.api_keys.create("till")  # type: ignore[union-attr]
    purchase = {
        "receipt_id": "T-4",
        "customer": "+79990008004",
        "amount": "5000",
        "redeem_points": 1200,
    }
    status, body = await _post(app, key, purchase)
    error = body["error"]
    assert isinstance(error, dict)
    assert (status, error["code"]) == (409, "confirmation_required")
    ask = await user.wait_message()
    assert "pay 1,200 points for a purchase of 5,000" in (ask.text or "")
    await user.press_button(ask, "✅ Yes, pay with points")
    assert (await user.wait_edit(ask)).text == "Confirmed."
    assert await _answer(app, key, error["confirmation_id"]) == "accepted"
    status, body = await _post(app, key, purchase)
    assert (status, body["redeemed"], body["balance"]) == (201, 1200, 5000 - 1200 + 76)
    receipt = await user.wait_message()
    assert "Spent: 1,200 points" in (receipt.text or "")

    # "No": nothing is spent, and the same purchase again says so.
    declined = {**purchase, "receipt_id": "T-5"}
    status, body = await _post(app, key, declined)
    error = body["error"]
    assert isinstance(error, dict) and status == 409
    ask = await user.wait_message()
    await user.press_button(ask, "❌ No")
    assert await _answer(app, key, error["confirmation_id"]) == "declined"
    status, body = await _post(app, key, declined)
    error = body["error"]
    assert isinstance(error, dict)
    assert (status, error["code"]) == (409, "confirmation_declined")
    assert (await ledger.balance(member.member_id)).balance == 5000 - 1200 + 76
