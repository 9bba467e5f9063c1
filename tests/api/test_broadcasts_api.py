"""The broadcasts' HTTP API as the contract says: POST /api/v1/broadcasts (201, the same request
again 200 with the same body, the same id with another body 409, 422 with codes), GET its counts
adding up before, during and after sending, gift points as credited, cancel, and key scopes.
Sending is driven by the leader's tick and the sender's drain against the Bot API emulator;
every answer is checked against the OpenAPI document (tests/api/conftest.py). Both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from api.app import ApiServices, build_api
from api.keys import ApiKeyService
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.rules import Rules
from ledger.service import LedgerService
from marketing.broadcasts import Broadcasts
from marketing.lift import GroupOutcome, measure
from messaging.outbox import Outbox
from staff.sales import ConfirmationService
from storage.schema import audit_log
from tests.api.conftest import SECRET, Till
from tests.conftest import Phones
from tests.marketing.test_broadcasts import TOKEN, Shop, control_group, join

BROADCASTS = "/api/v1/broadcasts"
COUNTS = ("sent", "skipped_optout", "skipped_cap", "skipped_unreachable", "failed", "pending")


@dataclass
class Crm:
    """A CRM with a marketing key, and the shop its broadcasts go out from."""

    api: Till  # .key: a till key
    shop: Shop
    key: str

    async def create(self, body: dict[str, Any], *, key: str | None = None) -> tuple[int, Any]:
        return await self.api.call("POST", BROADCASTS, body, key=key or self.key)

    async def get(self, broadcast_id: str, *, key: str | None = None) -> tuple[int, Any]:
        return await self.api.call("GET", f"{BROADCASTS}/{broadcast_id}", key=key or self.key)

    async def cancel(self, broadcast_id: str, *, key: str | None = None) -> tuple[int, Any]:
        path = f"{BROADCASTS}/{broadcast_id}/cancel"
        return await self.api.call("POST", path, key=key or self.key)

    async def report(self, broadcast_id: str) -> dict[str, Any]:
        status, body = await self.get(broadcast_id)
        assert status == 200, body
        assert body["recipients"] == sum(body[name] for name in COUNTS), body
        return dict(body)

    async def send_all(self, broadcast_id: str) -> dict[str, Any]:
        """Tick and drain until it ends, the counts adding up at every step."""
        for _ in range(100):
            report = await self.report(broadcast_id)
            if report["status"] in ("done", "cancelled"):
                return report
            await self.shop.broadcasts.tick()
            await self.shop.sender.drain_once()
        raise AssertionError(f"{broadcast_id} did not end: {report}")


@pytest.fixture
async def crm(ledger: LedgerService, clock: ManualClock, rules: Rules) -> AsyncIterator[Crm]:
    emulator = BotAPIEmulator()
    emulator.add_bot(TOKEN, username="offers_bot")
    await emulator.start()
    outbox = Outbox(ledger.engine, clock, ledger.db)
    broadcasts = Broadcasts(ledger, outbox, feed_window=4)  # a few rows a batch: many batches
    shop = Shop(emulator, ledger, clock, rules, outbox, broadcasts, sender=None)  # type: ignore[arg-type]
    shop.sender = shop.new_sender()
    keys = ApiKeyService(ledger.engine, ledger.clock, ledger.db)
    confirmations = ConfirmationService(ledger.engine, ledger.clock)
    app = build_api(
        ApiServices(
            ledger=ledger,
            keys=keys,
            secret_key=SECRET,
            confirmations=confirmations,
            broadcasts=broadcasts,
        )
    )
    _, till_key = await keys.create("till-1")
    _, marketing_key = await keys.create("crm", "marketing")
    async with TestClient(TestServer(app)) as client:
        yield Crm(Till(client, till_key, ledger, keys, outbox, confirmations), shop, marketing_key)
    await keys.close()
    for bot in shop.bots:
        await bot.session.close()
    await emulator.stop()


async def members(crm: Crm, phones: Phones, count: int, **profile: Any) -> list[int]:
    return [
        await join(crm.shop, phones, f"m{len(crm.shop.members)}", **profile) for _ in range(count)
    ]


def body(broadcast_id: str = "B-1", **fields: Any) -> dict[str, Any]:
    return {"broadcast_id": broadcast_id, "filter": {}, "text": "Hi, {first_name}!", **fields}


async def test_a_new_broadcast_is_201_the_same_request_again_200_with_the_same_body_then_409(
    crm: Crm, phones: Phones
) -> None:
    await members(crm, phones, 10)
    request = body(control_percent=20, gift_points=0, gift_days=14, send_at=None)
    status, created = await crm.create(request)
    assert (status, created) == (
        201,
        {"broadcast_id": "B-1", "status": "sending", "audience": 10, "control": 2, "recipients": 8},
    )
    await crm.shop.broadcasts.tick()  # it moves on: a retry still gets the first answer
    await crm.shop.sender.drain_once()
    assert await crm.create(request) == (200, created)
    status, conflict = await crm.create({**request, "text": "Another text"})
    assert (status, conflict["error"]["code"]) == (409, "broadcast_id_conflict")
    status, conflict = await crm.create({**request, "control_percent": 10})
    assert (status, conflict["error"]["code"]) == (409, "broadcast_id_conflict")
    assert len(await crm.shop.broadcasts.recent()) == 1


async def test_omitted_fields_take_the_rules_defaults_and_a_replay_matches_them(
    crm: Crm, phones: Phones
) -> None:
    await members(crm, phones, 20)
    status, created = await crm.create(body())
    assert (status, created["control"], created["recipients"]) == (201, 2, 18)  # 10% of 20
    broadcast = await crm.shop.broadcasts.get("B-1")
    assert broadcast is not None
    assert (broadcast.control_percent, broadcast.gift_points, broadcast.gift_days) == (10, 0, 14)
    assert broadcast.created_by == "api:crm"
    spelled_out = body(control_percent=10, gift_points=0, gift_days=14, send_at=None)
    assert await crm.create(spelled_out) == (200, created)


async def test_counts_add_up_while_sending_the_control_group_gets_nothing_and_gifts_are_credited(
    crm: Crm, phones: Phones
) -> None:
    shop = crm.shop
    await members(crm, phones, 12)
    opted_out = await join(shop, phones, "optout", notify_offers=False)
    blocked = await join(shop, phones, "blocked", unreachable=True)
    await join(shop, phones, "english", language="ru")  # outside the filter
    request = body(filter={"language": "en"}, control_percent=25, gift_points=50, gift_days=7)
    status, created = await crm.create(request)
    assert (status, created["audience"], created["control"], created["recipients"]) == (
        201,
        14,
        4,
        10,
    )
    before = await crm.report("B-1")
    assert before["pending"] == 10 and before["sent"] == 0 and before["gift_points"] == 0

    seen_during = False
    for _ in range(100):  # a few messages a batch (feed_window=4): reports in the middle
        report = await crm.report("B-1")
        seen_during |= 0 < report["sent"] and report["pending"] > 0
        if report["status"] == "done":
            break
        await shop.broadcasts.tick()
        await shop.sender.drain_once()
    assert seen_during

    broadcast = await shop.broadcasts.get("B-1")
    assert broadcast is not None
    control = await control_group(shop, broadcast)
    after = await crm.report("B-1")
    skipped_optout = int(opted_out not in control)
    skipped_unreachable = int(blocked not in control)
    sent = 10 - skipped_optout - skipped_unreachable
    assert after == {
        "broadcast_id": "B-1",
        "status": "done",
        "audience": 14,
        "control": 4,
        "recipients": 10,
        "sent": sent,
        "skipped_optout": skipped_optout,
        "skipped_cap": 0,
        "skipped_unreachable": skipped_unreachable,
        "failed": 0,
        "pending": 0,
        "gift_points": 50 * sent,
        "attribution": after["attribution"],  # (its own test below)
    }
    for name, member_id in shop.members.items():
        received = shop.received(name)
        balance = (await shop.ledger.balance(member_id)).balance
        if member_id in control or name in ("english", "optout", "blocked"):
            assert received == [] and balance == 100, name  # the welcome bonus only
        else:
            gift = "🎁 A gift for you: 50 points, valid until 9 March."
            assert received == [f"Hi, {name}!\n\n{gift}"] and balance == 150, name


async def test_cancel_stops_sending_and_a_retried_cancel_is_200_but_a_done_one_409(
    crm: Crm, phones: Phones
) -> None:
    shop = crm.shop
    await members(crm, phones, 12)
    assert (await crm.create(body(control_percent=0)))[0] == 201
    await shop.broadcasts.tick()  # 4 queued
    await shop.sender.drain_once()
    sent_before = (await crm.report("B-1"))["sent"]
    assert 0 < sent_before < 12

    status, cancelled = await crm.cancel("B-1")
    assert status == 200
    assert cancelled["status"] == "cancelled" and cancelled["sent"] == sent_before
    assert cancelled["pending"] == 12 - sent_before
    for _ in range(5):
        await shop.broadcasts.tick()
        await shop.sender.drain()
    assert await crm.report("B-1") == cancelled
    assert sum(len(shop.received(name)) for name in shop.members) == sent_before
    assert await crm.cancel("B-1") == (200, cancelled)  # a retry: the same answer

    assert (await crm.create(body("B-2", control_percent=0)))[0] == 201
    assert (await crm.send_all("B-2"))["status"] == "done"
    status, refused = await crm.cancel("B-2")
    assert (status, refused["error"]["code"]) == (409, "invalid_state")

    async with shop.ledger.engine.connect() as conn:
        audited = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.action, audit_log.c.target).order_by(
                    audit_log.c.id
                )
            )
        ).all()
    assert [tuple(row) for row in audited if row.action.startswith("broadcast.")] == [
        ("api:crm", "broadcast.create", "broadcast:B-1"),
        ("api:crm", "broadcast.cancel", "broadcast:B-1"),
        ("api:crm", "broadcast.create", "broadcast:B-2"),
    ]


async def test_send_at_in_the_future_is_scheduled_and_goes_out_at_its_time(
    crm: Crm, phones: Phones
) -> None:
    shop = crm.shop
    await members(crm, phones, 3)
    later = (shop.clock.now() + timedelta(hours=2)).astimezone().isoformat()
    request = body(control_percent=0, send_at=later)
    status, created = await crm.create(request)
    assert (status, created["status"]) == (201, "scheduled")
    await shop.broadcasts.tick()
    await shop.sender.drain()
    report = await crm.report("B-1")
    assert (report["status"], report["pending"], report["sent"]) == ("scheduled", 3, 0)
    assert report["attribution"] is None  # nothing to attribute before it starts

    shop.clock.advance(timedelta(hours=2, seconds=1))
    assert await crm.create(request) == (200, created)  # its time has passed: still the same
    assert (await crm.send_all("B-1"))["sent"] == 3


async def test_a_send_at_in_the_past_sends_now_and_the_same_moment_in_another_offset_is_the_same(
    crm: Crm, phones: Phones
) -> None:
    await members(crm, phones, 2)
    past = crm.shop.clock.now() - timedelta(days=1)
    status, created = await crm.create(body(send_at=past.isoformat()))
    assert (status, created["status"]) == (201, "sending")
    in_vladivostok = past.astimezone(ZoneInfo("Asia/Vladivostok")).isoformat()
    assert in_vladivostok != past.isoformat()
    assert await crm.create(body(send_at=in_vladivostok)) == (200, created)


async def test_unknown_broadcast_is_404_on_get_and_cancel(crm: Crm) -> None:
    for broadcast_id in ("B-404", "bad id"):
        for answer in (await crm.get(broadcast_id), await crm.cancel(broadcast_id)):
            assert (answer[0], answer[1]["error"]["code"]) == (404, "not_found")


async def test_a_till_key_gets_403_on_every_broadcast_endpoint_and_nothing_is_made(
    crm: Crm, phones: Phones
) -> None:
    await members(crm, phones, 2)
    assert (await crm.create(body("B-1")))[0] == 201
    for status, answer in (
        await crm.create(body("B-2"), key=crm.api.key),
        await crm.get("B-1", key=crm.api.key),
        await crm.cancel("B-1", key=crm.api.key),
    ):
        assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert [b.public_id for b in await crm.shop.broadcasts.recent()] == ["B-1"]
    assert (await crm.report("B-1"))["status"] == "sending"


async def test_a_missing_or_wrong_key_is_401(crm: Crm) -> None:
    for key in ("", "lk_wrong"):
        for status, answer in (
            await crm.api.call("POST", BROADCASTS, body(), key=key),
            await crm.api.call("GET", f"{BROADCASTS}/B-1", key=key),
            await crm.api.call("POST", f"{BROADCASTS}/B-1/cancel", key=key),
        ):
            assert (status, answer["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("request_body", "code", "field"),
    [
        ({"filter": {}, "text": "Hi"}, "invalid_field", "broadcast_id"),
        ({"broadcast_id": 5, "filter": {}, "text": "Hi"}, "invalid_field", "broadcast_id"),
        (body("bad id!"), "invalid_broadcast", "broadcast_id"),
        ({"broadcast_id": "B-1", "filter": {}}, "invalid_field", "text"),
        (body(text=["Hi"]), "invalid_field", "text"),
        (body(colour="red"), "unknown_field", "colour"),
        (body(filter={"tier": ["gold"]}), "unknown_condition", "tier"),
        (body(filter={"birthday_month": 13}), "invalid_condition", "birthday_month"),
        (body(filter={"tiers": ["platinum"]}), "unknown_tier", "tiers"),
        ({"broadcast_id": "B-1", "text": "Hi"}, "invalid_filter", "filter"),
        (body(text="<b>Hi</i>"), "invalid_html", "text"),
        (body(text="Hi {name}"), "unknown_placeholder", "text"),
        (body(text="  "), "empty_text", "text"),
        (body(text="<b></b>"), "empty_text", "text"),
        (body(text="x" * 4097), "too_long", "text"),
        (body(text="Hi\x00"), "invalid_field", "text"),
        (body(control_percent="10"), "invalid_points", "control_percent"),
        (body(control_percent=101), "invalid_broadcast", "control_percent"),
        (body(gift_points=-1), "invalid_points", "gift_points"),
        (body(gift_points=10**6), "invalid_broadcast", "gift_points"),
        (body(gift_days=0), "invalid_broadcast", "gift_days"),
        (body(gift_days=True), "invalid_points", "gift_days"),
        (body(send_at="2026-03-02T10:00:00"), "invalid_broadcast", "send_at"),
        (body(send_at="tomorrow"), "invalid_field", "send_at"),
        (body(send_at=1767225600), "invalid_field", "send_at"),
        (body(button={"text": "Menu"}), "invalid_field", "button"),
        (body(button={"text": "Menu", "url": "ftp://x"}), "invalid_broadcast", "button_url"),
    ],
)
async def test_a_bad_request_gets_422_with_its_code_and_field_and_makes_nothing(
    crm: Crm, request_body: dict[str, Any], code: str, field: str
) -> None:
    status, answer = await crm.create(request_body)
    assert (status, answer["error"]["code"], answer["error"].get("field")) == (422, code, field)
    assert await crm.shop.broadcasts.recent() == []


async def test_a_text_error_says_where_it_is(crm: Crm) -> None:
    status, answer = await crm.create(body(text="Hi <b>there</i>"))
    error = answer["error"]
    assert (status, error["code"], error["position"], error["tag"]) == (
        422,
        "invalid_html",
        12,
        "i",
    )
    status, answer = await crm.create(body(text="Hi {name}"))
    assert (answer["error"]["placeholder"], answer["error"]["position"]) == ("{name}", 4)
    status, answer = await crm.create(body(text="y" * 5000))
    assert (answer["error"]["length"], answer["error"]["limit"]) == (5000, 4096)


async def test_a_button_goes_out_under_the_message(crm: Crm, phones: Phones) -> None:
    await join(crm.shop, phones, "anna")
    button = {"text": "Menu", "url": "https://example.com/menu"}
    assert (await crm.create(body(control_percent=0, button=button)))[0] == 201
    assert (await crm.send_all("B-1"))["sent"] == 1
    (message,) = crm.shop.emulator.user(crm.shop.chats["anna"]).messages
    assert message.reply_markup["inline_keyboard"][0][0] == button


async def test_attribution_compares_recipients_with_the_control_group_over_its_window(
    crm: Crm, phones: Phones
) -> None:
    shop = crm.shop
    member_ids = await members(crm, phones, 20)
    await shop.ledger.purchase(  # before the broadcast: not its doing
        receipt_id="R-0", member_id=member_ids[0], amount_kopecks=99_000_00
    )
    shop.clock.advance(timedelta(minutes=1))
    assert (await crm.create(body(control_percent=25)))[0] == 201
    broadcast = await shop.broadcasts.get("B-1")
    assert broadcast is not None
    control = await control_group(shop, broadcast)
    recipient = next(m for m in member_ids if m not in control)
    held_back = next(m for m in member_ids if m in control)
    assert (await crm.send_all("B-1"))["sent"] == 15

    shop.clock.advance(timedelta(days=1))
    await shop.ledger.purchase(receipt_id="R-1", member_id=recipient, amount_kopecks=1000_00)
    await shop.ledger.purchase(receipt_id="R-2", member_id=recipient, amount_kopecks=234_56)
    await shop.ledger.purchase(receipt_id="R-3", member_id=held_back, amount_kopecks=500_00)
    shop.clock.advance(timedelta(days=14))  # after the window: not its doing either
    await shop.ledger.purchase(receipt_id="R-4", member_id=held_back, amount_kopecks=700_00)

    expected_lift = measure(
        GroupOutcome(15, 1, 2, 1234_56, 1234_56**2), GroupOutcome(5, 1, 1, 500_00, 500_00**2)
    )
    assert (await crm.report("B-1"))["attribution"] == {
        "window_days": 14,
        "recipients": {"members": 15, "buyers": 1, "revenue": "1234.56"},
        "control": {"members": 5, "buyers": 1, "revenue": "500.00"},
        "lift": expected_lift.to_json(),
    }
