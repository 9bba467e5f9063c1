"""A till that spends more than `member_confirm_above` points: only with the member's QR token,
or once the member has said yes in Telegram (on both backends). The member's tap itself is
driven through the bot in tests/e2e/test_till.py; here it is what the bot's handler does with
it, `ConfirmationService.settle`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from cards.token import sign_card_token
from ledger.invariants import check_ledger
from staff.sales import CONFIRMATION_TTL
from storage.schema import outbox
from tests.api.conftest import SECRET, Till
from tests.conftest import Phones

ABOVE = 1001  # rules.toml: member_confirm_above = 1000


async def rich_member(till: Till, phones: Phones, telegram_id: int | None = 700) -> dict[str, Any]:
    phone = phones.next()
    registration = await till.ledger.register_member(
        phone, telegram_id=telegram_id, language="en", first_name="Ivan"
    )
    member = registration.member
    await till.ledger.adjust(member_id=member.member_id, points=4900, reason="seed", actor="test")
    return {"id": member.member_id, "card": member.card_number, "phone": phone}


async def balance(till: Till, card: str) -> int:
    return int((await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"])


async def confirmation_messages(till: Till) -> list[Any]:
    async with till.ledger.engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    return [row for row in rows if row.dedup_key.startswith("confirm:")]


async def test_a_large_redemption_by_phone_or_card_waits_for_the_member(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    asked_for = []
    for customer in [member["phone"], member["card"]]:
        receipt = f"R-{customer}"
        request = {
            "receipt_id": receipt,
            "customer": customer,
            "amount": "5000",
            "redeem_points": 1200,
        }
        status, body = await till.purchase(**request)
        assert (status, body["error"]["code"]) == (409, "confirmation_required"), body
        confirmation_id = body["error"]["confirmation_id"]
        asked_for.append(confirmation_id)
        # Asking again is the same question, not a second message to the member.
        assert await till.purchase(**request) == (status, body)
        status, polled = await till.call("GET", f"/api/v1/confirmations/{confirmation_id}")
        assert status == 200
        assert (polled["status"], polled["receipt_id"]) == ("pending", receipt)
    assert await balance(till, member["card"]) == 5000
    asked = await confirmation_messages(till)
    assert [row.chat_id for row in asked] == [700, 700]
    assert "1,200 points" in asked[0].text and "5,000" in asked[0].text
    buttons = json.loads(asked[0].reply_markup)["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [f"rr:{asked_for[0]}:1", f"rr:{asked_for[0]}:0"]


async def test_once_the_member_accepts_the_same_purchase_goes_through(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    request = {
        "receipt_id": "R-1",
        "customer": member["phone"],
        "amount": "5000",
        "redeem_points": 1200,
    }
    _, body = await till.purchase(**request)
    confirmation_id = body["error"]["confirmation_id"]
    assert (await till.confirmations.settle(confirmation_id, "confirmed"))[1]  # type: ignore[index]
    status, polled = await till.call("GET", f"/api/v1/confirmations/{confirmation_id}")
    assert (status, polled["status"]) == (200, "accepted")
    status, body = await till.purchase(**request)
    assert (status, body["redeemed"], body["balance"]) == (201, 1200, 5000 - 1200 + 76)
    assert await till.purchase(**request) == (200, body)
    # The confirmation was for this purchase: another amount under its receipt is a conflict.
    status, conflict = await till.purchase(**{**request, "amount": "6000"})
    assert (status, conflict["error"]["code"]) == (409, "idempotency_conflict")
    assert await check_ledger(till.ledger.engine) == []


async def test_a_declined_or_expired_confirmation_spends_nothing(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    declined = {
        "receipt_id": "R-1",
        "customer": member["card"],
        "amount": "5000",
        "redeem_points": 1200,
    }
    _, body = await till.purchase(**declined)
    await till.confirmations.settle(body["error"]["confirmation_id"], "declined")
    status, polled = await till.call(
        "GET", f"/api/v1/confirmations/{body['error']['confirmation_id']}"
    )
    assert (status, polled["status"]) == (200, "declined")
    status, body = await till.purchase(**declined)
    assert (status, body["error"]["code"]) == (409, "confirmation_declined")

    late = {**declined, "receipt_id": "R-2"}
    _, body = await till.purchase(**late)
    till.ledger.clock.advance(CONFIRMATION_TTL + timedelta(seconds=1))  # type: ignore[attr-defined]
    status, polled = await till.call(
        "GET", f"/api/v1/confirmations/{body['error']['confirmation_id']}"
    )
    assert (status, polled["status"]) == (200, "expired")
    status, body = await till.purchase(**late)
    assert (status, body["error"]["code"]) == (409, "confirmation_expired")
    # The member answering after the time is over changes nothing.
    settled = await till.confirmations.settle(body["error"]["confirmation_id"], "confirmed")
    assert settled is not None and settled[0].status == "expired"
    assert (await till.purchase(**late))[1]["error"]["code"] == "confirmation_expired"

    assert await balance(till, member["card"]) == 4900 + 100
    # Without the confirmation, the till may still take up to the threshold.
    status, body = await till.purchase(**{**declined, "redeem_points": 1000})
    assert (status, body["redeemed"]) == (201, 1000)
    assert await check_ledger(till.ledger.engine) == []


async def test_a_large_redemption_with_the_members_qr_token_needs_no_confirmation(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    token = sign_card_token(member["card"], SECRET)
    status, body = await till.purchase(
        receipt_id="R-1", customer="c_" + token, amount="5000", redeem_points=1500
    )
    assert (status, body["redeemed"]) == (201, 1500)
    # The same purchase again by card number is the same purchase: its answer, not a question.
    status, again = await till.purchase(
        receipt_id="R-1", customer=member["card"], amount="5000", redeem_points=1500
    )
    assert (status, again) == (200, body)
    assert await confirmation_messages(till) == []


async def test_a_member_the_bot_cannot_ask_gets_no_large_redemption(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones, telegram_id=None)
    request = {
        "receipt_id": "R-1",
        "customer": member["card"],
        "amount": "5000",
        "redeem_points": 1200,
    }
    status, body = await till.purchase(**request)
    assert (status, body["error"]["code"]) == (409, "confirmation_unavailable")
    assert await balance(till, member["card"]) == 5000


async def test_more_points_than_allowed_is_still_422_before_any_question(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    request = {
        "receipt_id": "R-1",
        "customer": member["card"],
        "amount": "5000",
        "redeem_points": 1501,
    }
    status, body = await till.purchase(**request)
    assert (status, body["error"]["code"], body["error"]["allowed"]) == (
        422,
        "redeem_above_limit",
        1500,
    )
    assert await confirmation_messages(till) == []


async def test_a_confirmation_is_seen_only_by_the_key_that_asked(
    till: Till, phones: Phones
) -> None:
    member = await rich_member(till, phones)
    request = {
        "receipt_id": "R-1",
        "customer": member["card"],
        "amount": "5000",
        "redeem_points": 1200,
    }
    _, body = await till.purchase(**request)
    confirmation_id = body["error"]["confirmation_id"]
    _, other = await till.keys.create("till-2")
    status, body = await till.call("GET", f"/api/v1/confirmations/{confirmation_id}", key=other)
    assert (status, body["error"]["code"]) == (404, "confirmation_not_found")
    for missing in ["999", "abc", "-1"]:
        status, _ = await till.call("GET", f"/api/v1/confirmations/{missing}")
        assert status == 404, missing
    await till.confirmations.settle(confirmation_id, "confirmed")
    status, body = await till.call("POST", "/api/v1/purchases", request, key=other)
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    assert await balance(till, member["card"]) == 5000
