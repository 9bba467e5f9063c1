"""The HTTP API contract: one test per status code and idempotency rule, on both backends."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from sqlalchemy import select, text

from api.keys import ApiKeyService
from api.openapi import openapi_document
from bot.i18n import build_i18n
from cards.token import card_deep_link, sign_card_token
from ledger.invariants import check_ledger
from messaging.notices import Notices
from staff.audit import AuditLog
from storage.schema import outbox
from tests.api.conftest import SECRET, Till
from tests.conftest import Phones

PURCHASE_FIELDS = {
    "receipt_id",
    "member_id",
    "card_number",
    "accrued",
    "redeemed",
    "balance",
    "tier",
}


async def member(till: Till, phones: Phones, **kwargs: object) -> tuple[int, str, str]:
    phone = phones.next()
    registration = await till.ledger.register_member(phone, **kwargs)  # type: ignore[arg-type]
    return registration.member.member_id, registration.member.card_number, phone


async def test_health_needs_no_key(till: Till) -> None:
    assert await till.call("GET", "/health", key="") == (200, {"status": "ok"})


async def test_health_is_503_when_the_database_does_not_answer(
    till: Till, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    monkeypatch.setattr(till.ledger.db, "read", unreachable)
    status, body = await till.call("GET", "/health", key="")
    assert (status, body["error"]["code"]) == (503, "database_unavailable")


async def test_missing_wrong_or_revoked_key_gets_401(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones)
    body = {"receipt_id": "R-1", "customer": card, "amount": "100.00"}
    for key in ["", "lk_wrong", "Basic abc"]:
        status, payload = await till.call("POST", "/api/v1/purchases", body, key=key)
        assert (status, payload["error"]["code"]) == (401, "unauthorized")
    other, secret = await till.keys.create("till-2")
    assert (await till.call("GET", f"/api/v1/members/{card}", key=secret))[0] == 200
    await till.keys.revoke(other.key_id)
    assert (await till.call("GET", f"/api/v1/members/{card}", key=secret))[0] == 401
    assert (await till.ledger.history((await till.ledger.find_member(card)).member_id)).total == 1


async def test_a_key_revoked_by_another_process_stops_working_at_once(
    till: Till, phones: Phones
) -> None:
    """The CLI (another process, another ApiKeyService) revokes a key this server has just
    accepted. On PostgreSQL the server keeps verified keys in memory while it listens for
    revocations; the NOTIFY makes it forget. On SQLite nothing is kept."""
    _, card, _ = await member(till, phones)
    key, secret = await till.keys.create("till-3")
    for _ in range(2):
        assert (await till.call("GET", f"/api/v1/members/{card}", key=secret))[0] == 200
    postgres = till.ledger.engine.dialect.name == "postgresql"
    assert (till.keys._listener is not None) == postgres  # keeps keys only while listening
    assert bool(till.keys._kept) == postgres
    cli = ApiKeyService(till.ledger.engine)
    assert await cli.revoke(key.key_id)
    await cli.close()
    for _ in range(100):  # the notification takes a moment to arrive
        if not till.keys._kept:
            break
        await asyncio.sleep(0.01)
    assert (await till.call("GET", f"/api/v1/members/{card}", key=secret))[0] == 401
    if postgres:  # revoked by hand (psql, a restored backup): the trigger tells all the same
        by_hand, by_hand_secret = await till.keys.create("till-4")
        assert (await till.call("GET", f"/api/v1/members/{card}", key=by_hand_secret))[0] == 200
        assert till.keys._kept
        async with till.ledger.engine.begin() as conn:
            await conn.execute(
                text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"),
                {"id": by_hand.key_id},
            )
        for _ in range(100):
            if not till.keys._kept:
                break
            await asyncio.sleep(0.01)
        status, _ = await till.call("GET", f"/api/v1/members/{card}", key=by_hand_secret)
        assert status == 401
    if postgres:  # a listener that dies: nothing is kept until it listens again
        listener = till.keys._listener
        assert listener is not None
        async with till.ledger.engine.connect() as conn:
            await conn.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"),
                {"pid": listener.get_server_pid()},
            )
        for _ in range(100):
            if till.keys._listener is None:
                break
            await asyncio.sleep(0.01)
        assert till.keys._listener is None and not till.keys._kept
        assert (await till.call("GET", f"/api/v1/members/{card}", key=till.key))[0] == 200


async def test_purchase_is_created_with_the_contract_body(till: Till, phones: Phones) -> None:
    member_id, card, _ = await member(till, phones)
    status, body = await till.purchase(
        receipt_id="R-1", customer=card, amount="1500.00", redeem_points=0
    )
    assert status == 201
    assert set(body) == PURCHASE_FIELDS
    assert body == {
        "receipt_id": "R-1",
        "member_id": member_id,
        "card_number": card,
        "accrued": 30,
        "redeemed": 0,
        "balance": 130,
        "tier": "base",
    }


async def test_same_purchase_again_is_200_with_the_same_body(till: Till, phones: Phones) -> None:
    _, card, phone = await member(till, phones)
    request = {"receipt_id": "R-1", "customer": card, "amount": "1500.00", "redeem_points": 30}
    first = await till.purchase(**request)
    again = await till.purchase(**request)
    by_phone = await till.purchase(**{**request, "customer": phone})  # same member, same body
    assert first[0] == 201 and again == (200, first[1]) and by_phone == (200, first[1])
    assert first[1]["balance"] == 100 - 30 + 29


async def test_same_receipt_with_a_different_body_is_409(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones)
    await till.purchase(receipt_id="R-1", customer=card, amount="1500.00")
    status, body = await till.purchase(receipt_id="R-1", customer=card, amount="1600.00")
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    # A used receipt_id answers for itself even when the new body names nobody.
    status, body = await till.purchase(receipt_id="R-1", customer="000000000000", amount="1500")
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    assert (await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"] == 130


async def test_same_purchase_again_after_the_member_erased_their_data_is_200(
    till: Till, phones: Phones
) -> None:
    member_id, card, phone = await member(till, phones)
    other_id, other_card, _ = await member(till, phones)
    request = {"receipt_id": "R-1", "customer": card, "amount": "1500.00", "redeem_points": 0}
    first = await till.purchase(**request)
    await till.purchase(receipt_id="R-2", customer=other_card, amount="100")
    await till.ledger.erase_member(member_id)
    assert await till.purchase(**request) == (200, first[1])
    assert await till.purchase(**{**request, "customer": phone}) == (200, first[1])
    status, body = await till.purchase(**{**request, "amount": "1600.00"})
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    # A receipt of a member still here, under a name that finds nobody: still a conflict.
    status, body = await till.purchase(receipt_id="R-2", customer=card, amount="100")
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    assert (await till.ledger.balance(other_id)).balance == 102


async def test_unknown_customer_is_404(till: Till) -> None:
    for customer in ["000000000000", "+79990009999", "nobody", "c_" + "A" * 40]:
        status, body = await till.purchase(receipt_id="R-1", customer=customer, amount="10")
        assert (status, body["error"]["code"]) == (404, "member_not_found"), customer
    assert (await till.call("GET", "/api/v1/members/000000000000"))[0] == 404


async def test_more_points_than_allowed_is_422_with_the_maximum(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones)
    status, body = await till.purchase(
        receipt_id="R-1", customer=card, amount="200.00", redeem_points=61
    )
    assert status == 422
    assert body["error"]["code"] == "redeem_above_limit" and body["error"]["allowed"] == 60
    status, body = await till.purchase(
        receipt_id="R-1", customer=card, amount="1000.00", redeem_points=101
    )
    assert body["error"]["allowed"] == 100  # the balance binds before the 30% cap
    assert (await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"] == 100


async def test_bad_amounts_are_422_and_change_nothing(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones)
    for amount in ["-5", "0", "0.00", "1.001", "abc", "1e3", "", 12.5, None, True, [1]]:
        status, body = await till.purchase(receipt_id="R-1", customer=card, amount=amount)
        assert (status, body["error"]["code"]) == (422, "invalid_amount"), amount
        assert body["error"]["field"] == "amount", amount
    status, body = await till.purchase(
        receipt_id="R-1", customer=card, amount="100", redeem_points=10**7 + 1
    )
    assert (status, body["error"]["field"]) == (422, "redeem_points")
    assert "from 0 to 10000000" in body["error"]["message"]
    for points in [-1, 1.5, "10", True]:
        status, body = await till.purchase(
            receipt_id="R-1", customer=card, amount="100", redeem_points=points
        )
        assert (status, body["error"]["code"]) == (422, "invalid_points"), points
    status, body = await till.purchase(customer=card, amount="100")
    assert (status, body["error"]["field"]) == (422, "receipt_id")
    _, view = await till.call("GET", f"/api/v1/members/{card}")
    assert view["balance"] == 100


async def test_broken_or_huge_bodies_are_refused(till: Till) -> None:
    status, body = await till.call("POST", "/api/v1/purchases", raw=b"{not json")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = await till.call("POST", "/api/v1/purchases", [1, 2])
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = await till.call("POST", "/api/v1/purchases", raw=b"{" + b" " * 20_000 + b"}")
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert (await till.call("GET", "/api/v1/nothing-here"))[0] == 404
    assert (await till.call("DELETE", "/api/v1/purchases"))[0] == 405
    # JSON nested deeper than the parser's recursion (16 KB, under the size limit) was a 500.
    deep = b"[" * 8000 + b"]" * 8000
    status, body = await till.call("POST", "/api/v1/purchases", raw=deep)
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    # A body that is not in the Content-Encoding it claims was a 500.
    gzipped = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    status, body = await till.call("POST", "/api/v1/refunds", raw=b"not gzip", headers=gzipped)
    assert (status, body["error"]["code"]) == (400, "invalid_body")


async def test_ids_and_customers_with_control_characters_are_422_on_both_backends(
    till: Till, phones: Phones
) -> None:
    """NUL was a 500 on PostgreSQL and stored on SQLite; a lone surrogate a 500 on both."""
    _, card, _ = await member(till, phones)
    for bad in ["R\x00-1", "R-\ud800", "R\n1", "R\x1b[2J", "\udfff"]:
        status, body = await till.purchase(receipt_id=bad, customer=card, amount="10")
        assert (status, body["error"]["field"]) == (422, "receipt_id"), repr(bad)
        status, body = await till.purchase(receipt_id="R-1", customer=card + bad, amount="10")
        assert (status, body["error"]["field"]) == (422, "customer"), repr(bad)
        status, body = await till.refund(refund_id=bad, receipt_id="R-1", amount="10")
        assert (status, body["error"]["field"]) == (422, "refund_id"), repr(bad)
        status, body = await till.refund(refund_id="RF-1", receipt_id=bad, amount="10")
        assert (status, body["error"]["field"]) == (422, "receipt_id"), repr(bad)
    # Spaces, tabs and newlines around an id are trimmed, as before.
    status, body = await till.purchase(receipt_id="\tR-1\n", customer=card, amount="10")
    assert (status, body["receipt_id"]) == (201, "R-1")
    assert (await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"] == 100
    assert await check_ledger(till.ledger.engine) == []


async def test_a_receipt_id_with_an_invisible_or_direction_character_is_422_and_no_receipt(
    till: Till, phones: Phones
) -> None:
    """U+202E made "R-1\u202e" display reversed and U+200B hid in an id that looked like "R-1";
    both were accepted and shown in the member's receipt."""
    _, card, _ = await member(till, phones, telegram_id=555)
    for char, bad in [("\u202e", "R-1\u202egnp"), ("\u200b", "R-\u200b1"), ("\u2066", "\u2066R")]:
        status, body = await till.purchase(receipt_id=bad, customer=card, amount="10")
        assert (status, body["error"]["code"], body["error"]["field"]) == (
            422,
            "invalid_field",
            "receipt_id",
        ), repr(bad)
        assert "invisible" in body["error"]["message"]
        status, body = await till.refund(refund_id=bad, receipt_id="R-1", amount="10")
        assert (status, body["error"]["field"]) == (422, "refund_id"), repr(bad)
        status, body = await till.purchase(receipt_id="R-2", customer=card + char, amount="1")
        assert (status, body["error"]["field"]) == (422, "customer"), repr(bad)
    async with till.ledger.engine.connect() as conn:
        assert (await conn.execute(select(outbox))).all() == []  # no receipt went out
    assert (await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"] == 100


async def test_a_customer_that_looks_like_a_broken_link_is_404(till: Till) -> None:
    """urlparse refuses "http://[start=..." (an unclosed IPv6 host): it was a 500."""
    for customer in ["https://[start=x", "http://[::1?start=c_" + "A" * 40]:
        status, body = await till.purchase(receipt_id="R-1", customer=customer, amount="10")
        assert (status, body["error"]["code"]) == (404, "member_not_found"), customer
        status, _ = await till.call("GET", "/api/v1/members/" + quote(customer, safe=""))
        assert status == 404, customer


async def test_customer_by_phone_card_or_qr_token(till: Till, phones: Phones) -> None:
    member_id, card, phone = await member(till, phones)
    token = sign_card_token(card, SECRET)
    spaced = f"{card[:4]} {card[4:8]} {card[8:]}"
    local = "8" + phone[2:]
    for customer in [card, spaced, phone, local, token, "c_" + token]:
        status, body = await till.call("GET", f"/api/v1/members/{quote(customer)}")
        assert (status, body.get("member_id")) == (200, member_id), customer
    link = card_deep_link("loyalty_test_bot", token)  # what a scanner at the till reads
    status, body = await till.purchase(receipt_id="R-1", customer=link, amount="100")
    assert (status, body.get("member_id")) == (201, member_id)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await till.call("GET", f"/api/v1/members/{forged}"))[0] == 404


async def test_member_endpoint_shows_balance_pending_and_tier(till: Till, phones: Phones) -> None:
    member_id, card, _ = await member(till, phones)
    await till.purchase(receipt_id="R-1", customer=card, amount="10000")
    assert await till.call("GET", f"/api/v1/members/{card}") == (
        200,
        {
            "member_id": member_id,
            "card_number": card,
            "balance": 300,
            "pending": 0,
            "tier": "silver",
        },
    )


async def test_refund_201_200_409(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones)
    await till.purchase(receipt_id="R-1", customer=card, amount="1000.00", redeem_points=100)
    status, body = await till.refund(refund_id="RF-1", receipt_id="R-1", amount="500.00")
    assert status == 201
    assert (body["reversed"], body["returned"], body["balance"], body["debt"]) == (9, 50, 59, 0)
    assert await till.refund(refund_id="RF-1", receipt_id="R-1", amount="500.00") == (200, body)
    status, conflict = await till.refund(refund_id="RF-1", receipt_id="R-1", amount="400.00")
    assert (status, conflict["error"]["code"]) == (409, "idempotency_conflict")
    status, conflict = await till.refund(refund_id="RF-1", receipt_id="R-404", amount="500.00")
    assert (status, conflict["error"]["code"]) == (409, "idempotency_conflict")


async def test_a_tills_purchase_and_refund_are_in_the_audit_log_once_like_a_cashiers_sale(
    till: Till, phones: Phones
) -> None:
    """One way to record a sale: the till's, like the cashier's in the bot, leaves one audit
    record per purchase and per refund, by the key's name, with no personal data."""
    member_id, card, phone = await member(till, phones)
    body = {"receipt_id": "R-AUD", "customer": phone, "amount": "1000.00"}
    status, bought = await till.purchase(**body)
    assert status == 201
    assert (await till.purchase(**body))[0] == 200  # a replay is not a second sale
    refund = {"refund_id": "F-AUD", "receipt_id": "R-AUD", "amount": "400.00"}
    assert (await till.refund(**refund))[0] == 201
    assert (await till.refund(**refund))[0] == 200
    records = await AuditLog(till.ledger.engine).recent()
    assert [(r.action, r.actor, r.target) for r in reversed(records)] == [
        ("cashier.purchase", "api:till-1", f"member:{member_id}"),
        ("cashier.refund", "api:till-1", f"member:{member_id}"),
    ]
    assert records[1].details == {
        "accrued": bought["accrued"],
        "amount": 100000,
        "receipt_id": "R-AUD",
        "redeemed": 0,
    }
    assert not any(phone in str(r.details) or card in str(r.details) for r in records)


async def test_refund_of_unknown_receipt_is_404_and_too_large_is_422(
    till: Till, phones: Phones
) -> None:
    _, card, _ = await member(till, phones)
    status, body = await till.refund(refund_id="RF-1", receipt_id="R-404", amount="1")
    assert (status, body["error"]["code"]) == (404, "purchase_not_found")
    await till.purchase(receipt_id="R-1", customer=card, amount="1000.00")
    status, body = await till.refund(refund_id="RF-2", receipt_id="R-1", amount="1000.01")
    assert (status, body["error"]["code"]) == (422, "refund_exceeds_purchase")
    assert body["error"]["refundable"] == "1000.00"
    for amount in ["0", "-1", "x"]:
        status, body = await till.refund(refund_id="RF-3", receipt_id="R-1", amount=amount)
        assert (status, body["error"]["code"]) == (422, "invalid_amount")


async def test_same_receipt_from_10_concurrent_clients_earns_once(
    till: Till, phones: Phones
) -> None:
    _, card, _ = await member(till, phones)
    answers = await asyncio.gather(
        *(till.purchase(receipt_id="R-1", customer=card, amount="5000.00") for _ in range(10))
    )
    assert sorted(status for status, _ in answers) == [200] * 9 + [201]
    assert len({str(body) for _, body in answers}) == 1
    assert (await till.call("GET", f"/api/v1/members/{card}"))[1]["balance"] == 200
    assert await check_ledger(till.ledger.engine) == []


async def test_20_concurrent_redemptions_never_overdraw(till: Till, phones: Phones) -> None:
    member_id, card, _ = await member(till, phones)
    await till.ledger.adjust(member_id=member_id, points=400, reason="seed", actor="test")
    answers = await asyncio.gather(
        *(
            till.purchase(receipt_id=f"R-{i}", customer=card, amount="1000.00", redeem_points=100)
            for i in range(20)
        )
    )
    ok = [body for status, body in answers if status == 201]
    refused = [body for status, body in answers if status == 422]
    assert len(ok) + len(refused) == 20 and refused
    assert all(body["error"]["code"] == "redeem_above_limit" for body in refused)
    _, view = await till.call("GET", f"/api/v1/members/{card}")
    assert view["balance"] >= 0
    assert view["balance"] == 500 - 100 * len(ok) + sum(body["accrued"] for body in ok)
    assert await check_ledger(till.ledger.engine) == []


async def test_the_member_gets_a_receipt_in_their_language_once(till: Till, phones: Phones) -> None:
    _, card, _ = await member(till, phones, telegram_id=555, language="ru")
    request = {"receipt_id": "R-1", "customer": card, "amount": "1500.00", "redeem_points": 30}
    await till.purchase(**request)
    await till.purchase(**request)  # a retry: no second receipt
    async with till.ledger.engine.connect() as conn:
        rows = (await conn.execute(select(outbox))).all()
    assert len(rows) == 1 and rows[0].chat_id == 555 and rows[0].category == "transactional"
    # A notice written with the purchase, rendered in the member's language when it is sent.
    notices = Notices(build_i18n(), till.ledger.rules)
    receipt = notices.render(rows[0].kind, json.loads(rows[0].payload), "ru", "Europe/Moscow")
    assert "Покупка R-1: 1 500 ₽" in receipt.replace("\xa0", " ")
    assert "Начислено: 29 баллов" in receipt and "Списано в оплату: 30 баллов" in receipt


@pytest.mark.parametrize("schema_name", ["PurchaseRequest", "RefundRequest"])
def test_the_openapi_document_refuses_the_amounts_the_server_refuses(schema_name: str) -> None:
    """schemathesis sent {"amount": "0"}, valid by the document, and got 422."""
    import jsonschema_rs

    amount = openapi_document()["components"]["schemas"][schema_name]["properties"]["amount"]
    zero = ["0", "0.00", "0,0", "00", "000.00", 0]
    for refused in [*zero, -1, "-1", "100000000.01", 100000001, "1.001", "1e3", ""]:
        assert not jsonschema_rs.is_valid(amount, refused), refused
    for accepted in ["0.01", "0,5", "1", "1500.00", "99999999.99", "100000000.00", 1, 100000000]:
        assert jsonschema_rs.is_valid(amount, accepted), accepted


async def test_a_405_says_which_methods_are_allowed(till: Till) -> None:
    for method, path, allowed in [
        ("DELETE", "/api/v1/purchases", "POST"),
        ("GET", "/api/v1/refunds", "POST"),
        ("POST", "/api/v1/members/1", "GET,HEAD"),
    ]:
        response = await till.client.request(
            method, path, headers={"Authorization": f"Bearer {till.key}"}
        )
        assert response.status == 405, (method, path)
        assert set(response.headers.get("Allow", "").replace(" ", "").split(",")) == set(
            allowed.split(",")
        ), (method, path)
        body = await response.json()
        assert body["error"]["code"] == "method_not_allowed"


async def test_whole_numbers_written_with_a_fraction_are_taken(till: Till, phones: Phones) -> None:
    """JSON Schema's "integer" takes 1500.0; the server answered 422 invalid_amount."""
    _, card, _ = await member(till, phones)
    status, body = await till.purchase(
        receipt_id="R-1", customer=card, amount=1500.0, redeem_points=30.0
    )
    assert (status, body["redeemed"], body["accrued"]) == (201, 30, 29)
    status, body = await till.refund(refund_id="RF-1", receipt_id="R-1", amount=100.0)
    assert status == 201
