"""The one delivery path: dedup, opt-outs, quiet hours, the weekly cap, Telegram's errors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import Message
from sqlalchemy import select

from emulator import FaultKind
from ledger.clock import ManualClock
from ledger.rules import Rules
from ledger.service import LedgerService
from messaging.outbox import Outbox
from messaging.sender import Sender
from storage.schema import members, outbox
from tests.conftest import Phones
from tests.messaging.conftest import Delivery

NOON_MSK = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _member(delivery: Delivery, phones: Phones, telegram_id: int) -> int:
    delivery.emulator.user(telegram_id, "Test")
    registration = await delivery.ledger.register_member(phones.next(), telegram_id=telegram_id)
    return registration.member.member_id


async def _statuses(out: Outbox) -> dict[str, str]:
    async with out.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.dedup_key, outbox.c.status))).all()
    return {row.dedup_key: row.status for row in rows}


async def test_a_message_is_queued_once_per_dedup_key_and_sent_once(
    delivery: Delivery, phones: Phones
) -> None:
    member_id = await _member(delivery, phones, 501)
    for _ in range(3):
        await delivery.outbox.enqueue(
            dedup_key="receipt:R-1", chat_id=501, member_id=member_id, text="Receipt R-1"
        )
    assert await delivery.sender.drain() == 1
    assert await delivery.sender.drain() == 0
    assert [m.text for m in delivery.emulator.user(501).messages] == ["Receipt R-1"]
    assert await _statuses(delivery.outbox) == {"receipt:R-1": "sent"}


async def test_a_withdrawn_question_is_never_sent_and_a_sent_one_can_be_edited(
    delivery: Delivery, phones: Phones
) -> None:
    """A redemption request that ended: still queued, its question is dropped; sent already,
    its Telegram message id comes back so the bot can take the buttons away."""
    member_id = await _member(delivery, phones, 509)
    for key in ("confirm:2", "confirm:1"):  # the first one sent, the second still queued
        await delivery.outbox.enqueue(dedup_key=key, chat_id=509, member_id=member_id, text=key)
        if key == "confirm:2":
            await delivery.sender.drain()
    assert await delivery.outbox.withdraw("confirm:1", "cancelled") is None  # queued only
    sent = await delivery.outbox.withdraw("confirm:2", "cancelled")
    assert sent == delivery.emulator.user(509).messages[0].message_id
    assert await delivery.sender.drain() == 0
    assert await _statuses(delivery.outbox) == {"confirm:1": "dropped", "confirm:2": "sent"}
    assert [m.text for m in delivery.emulator.user(509).messages] == ["confirm:2"]


async def test_opted_out_category_is_skipped_and_recorded(
    delivery: Delivery, phones: Phones
) -> None:
    member_id = await _member(delivery, phones, 502)
    await delivery.ledger.update_profile(member_id, notify_offers=False)
    await delivery.outbox.enqueue(
        dedup_key="offer:1", chat_id=502, member_id=member_id, text="Offer", category="offer"
    )
    await delivery.outbox.enqueue(
        dedup_key="warn:1", chat_id=502, member_id=member_id, text="Burn", category="reminder"
    )
    await delivery.sender.drain()
    assert await _statuses(delivery.outbox) == {"offer:1": "skipped_optout", "warn:1": "sent"}
    assert [m.text for m in delivery.emulator.user(502).messages] == ["Burn"]


async def test_nothing_capped_is_sent_in_quiet_hours_but_receipts_are(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 503)
    clock.set(datetime(2026, 3, 2, 19, 30, tzinfo=UTC))  # 22:30 in Moscow
    await delivery.outbox.enqueue(
        dedup_key="warn", chat_id=503, member_id=member_id, text="Burn", category="reminder"
    )
    await delivery.outbox.enqueue(
        dedup_key="receipt", chat_id=503, member_id=member_id, text="Receipt"
    )
    await delivery.sender.drain()
    assert [m.text for m in delivery.emulator.user(503).messages] == ["Receipt"]
    clock.set(datetime(2026, 3, 3, 6, 59, tzinfo=UTC))  # 09:59 in Moscow
    await delivery.sender.drain()
    assert len(delivery.emulator.user(503).messages) == 1
    clock.set(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))  # 10:00 in Moscow
    await delivery.sender.drain()
    assert [m.text for m in delivery.emulator.user(503).messages] == ["Receipt", "Burn"]


async def test_quiet_hours_follow_the_members_time_zone(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 504)
    await delivery.ledger.update_profile(member_id, timezone="Asia/Vladivostok")  # UTC+10
    clock.set(NOON_MSK)  # 19:00 in Vladivostok: fine
    await delivery.outbox.enqueue(
        dedup_key="a", chat_id=504, member_id=member_id, text="A", category="tier"
    )
    await delivery.sender.drain()
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))  # 22:00 in Vladivostok: quiet
    await delivery.outbox.enqueue(
        dedup_key="b", chat_id=504, member_id=member_id, text="B", category="tier"
    )
    await delivery.sender.drain()
    assert [m.text for m in delivery.emulator.user(504).messages] == ["A"]


async def test_weekly_cap_lets_burn_warnings_win_over_tier_news_and_offers(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 505)
    clock.set(NOON_MSK)
    for key, category in [
        ("offer", "offer"),
        ("tier", "tier"),
        ("warn1", "reminder"),
        ("warn2", "reminder"),
    ]:
        await delivery.outbox.enqueue(
            dedup_key=key, chat_id=505, member_id=member_id, text=key, category=category
        )
    for i in range(3):
        await delivery.outbox.enqueue(
            dedup_key=f"receipt{i}", chat_id=505, member_id=member_id, text=f"receipt{i}"
        )
    await delivery.sender.drain()
    texts = [m.text or "" for m in delivery.emulator.user(505).messages]
    assert sorted(t for t in texts if not t.startswith("receipt")) == ["tier", "warn1", "warn2"]
    assert len([t for t in texts if t.startswith("receipt")]) == 3  # never capped
    statuses = await _statuses(delivery.outbox)
    assert statuses["offer"] == "queued"  # deferred until the window frees a slot
    clock.advance(timedelta(days=7, minutes=1))
    await delivery.sender.drain()
    assert (await _statuses(delivery.outbox))["offer"] == "sent"


async def test_a_deferred_message_past_its_relevance_is_dropped_with_a_reason(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 506)
    clock.set(datetime(2026, 3, 2, 19, 0, tzinfo=UTC))  # 22:00 Moscow
    await delivery.outbox.enqueue(
        dedup_key="warn",
        chat_id=506,
        member_id=member_id,
        text="burns at midnight",
        category="reminder",
        expires_at=datetime(2026, 3, 2, 21, 0, tzinfo=UTC),
    )
    await delivery.sender.drain()
    async with delivery.outbox.engine.connect() as conn:
        row = (await conn.execute(select(outbox.c.status, outbox.c.reason))).one()
    assert row.status == "dropped" and "too late" in row.reason
    assert delivery.emulator.user(506).messages == []


async def test_429_is_honoured_and_the_message_still_arrives_once(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 507)
    delivery.emulator.add_fault(FaultKind.RETRY_AFTER, method="sendMessage", retry_after=1, times=1)
    await delivery.outbox.enqueue(dedup_key="r", chat_id=507, member_id=member_id, text="Hi")
    await delivery.sender.drain()
    assert delivery.emulator.user(507).messages == []
    assert delivery.sender.retry_after_seen == 1
    clock.advance(timedelta(seconds=1))
    started = asyncio.get_running_loop().time()
    await delivery.sender.drain()
    assert asyncio.get_running_loop().time() - started >= 0.5  # waited out retry_after
    assert [m.text for m in delivery.emulator.user(507).messages] == ["Hi"]


async def test_a_member_who_blocked_the_bot_is_marked_unreachable_and_not_retried(
    delivery: Delivery, phones: Phones
) -> None:
    member_id = await _member(delivery, phones, 508)
    delivery.emulator.user(508).block_bot()
    await delivery.outbox.enqueue(dedup_key="a", chat_id=508, member_id=member_id, text="A")
    await delivery.sender.drain()
    await delivery.outbox.enqueue(
        dedup_key="b", chat_id=508, member_id=member_id, text="B", category="offer"
    )
    await delivery.sender.drain()
    assert await _statuses(delivery.outbox) == {
        "a": "skipped_unreachable",
        "b": "skipped_unreachable",
    }
    sends = [
        c
        for c in delivery.emulator.calls_to("sendMessage")
        if str(c.params.get("chat_id")) == "508"
    ]
    assert len(sends) == 1  # B was never tried
    async with delivery.outbox.engine.connect() as conn:
        assert (
            await conn.execute(select(members.c.unreachable).where(members.c.id == member_id))
        ).scalar_one()


async def test_server_errors_back_off_and_then_deliver(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    member_id = await _member(delivery, phones, 509)
    delivery.emulator.add_fault(FaultKind.SERVER_ERROR, method="sendMessage", times=2)
    await delivery.outbox.enqueue(dedup_key="a", chat_id=509, member_id=member_id, text="A")
    await delivery.sender.drain()
    clock.advance(timedelta(seconds=1))
    await delivery.sender.drain()
    clock.advance(timedelta(seconds=2))
    await delivery.sender.drain()
    assert [m.text for m in delivery.emulator.user(509).messages] == ["A"]
    async with delivery.outbox.engine.connect() as conn:
        assert (await conn.execute(select(outbox.c.attempts))).scalar_one() == 3


async def test_stopping_mid_delivery_and_restarting_sends_each_message_once(
    delivery: Delivery, phones: Phones, rules: object
) -> None:
    ids = [await _member(delivery, phones, 600 + i) for i in range(40)]
    for i, member_id in enumerate(ids):
        await delivery.outbox.enqueue(
            dedup_key=f"m{i}", chat_id=600 + i, member_id=member_id, text=f"message {i}"
        )
    delivery.emulator.add_fault(FaultKind.LATENCY, method="sendMessage", latency_ms=20)
    slow = Sender(
        delivery.outbox,
        delivery.bot,
        delivery.sender.rules,
        rate_per_second=50,
        per_chat_interval=0.0,
    )
    task = asyncio.create_task(slow.run())
    for _ in range(1000):  # until a quarter has gone out
        if sum(len(delivery.emulator.user(600 + i).messages) for i in range(40)) >= 10:
            break
        await asyncio.sleep(0.01)
    slow.stop()  # SIGTERM: what is in flight finishes, the rest goes back to the queue
    await task
    delivered = sum(len(delivery.emulator.user(600 + i).messages) for i in range(40))
    assert 10 <= delivered < 40
    again = Sender(
        delivery.outbox,
        delivery.bot,
        delivery.sender.rules,
        rate_per_second=200,
        per_chat_interval=0.0,
    )
    await again.drain()
    counts = [len(delivery.emulator.user(600 + i).messages) for i in range(40)]
    assert counts == [1] * 40
    assert set((await _statuses(delivery.outbox)).values()) == {"sent"}


async def test_while_batches_fail_the_sender_waits_longer_and_logs_less(
    ledger: LedgerService, rules: Rules, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(ledger.engine, ledger.clock)
    sender = Sender(box, bot=None, rules=rules.messages, poll_interval=0.01)  # type: ignore[arg-type]
    attempts = 0

    async def database_down() -> int:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connect call failed")

    sender.drain_once = database_down  # type: ignore[method-assign]
    running = asyncio.create_task(sender.run())
    await asyncio.sleep(1.5)
    sender.stop()
    await running
    # Waits of 0.02, 0.04, ... 0.64 s: 7 or 8 tries in 1.5 s, not one every 10 ms (150).
    assert 5 <= attempts <= 9
    records = [r for r in caplog.records if r.name == "loyalty.outbox"]
    assert sum(r.exc_info is not None for r in records) == 1  # one traceback, the first
    assert len(records) <= 4  # then a line at the 2nd, 4th and 8th failure


async def test_one_members_backlog_does_not_delay_another_members_receipt(
    delivery: Delivery, phones: Phones
) -> None:
    """60 messages queued for one chat go out one a second (Telegram's per-chat limit); a
    receipt for another chat queued after them goes out at once, not ~59 s later."""
    busy = await _member(delivery, phones, 701)
    other = await _member(delivery, phones, 702)
    for i in range(60):
        await delivery.outbox.enqueue(
            dedup_key=f"busy:{i}", chat_id=701, member_id=busy, text=f"busy {i}"
        )
    sender = Sender(
        delivery.outbox,
        delivery.bot,
        delivery.sender.rules,
        rate_per_second=25,
        per_chat_interval=1.0,
    )
    running = asyncio.create_task(sender.run())
    try:
        await delivery.emulator.user(701).wait_message(timeout=5)  # the backlog is going out
        started = time.monotonic()
        await delivery.outbox.enqueue(
            dedup_key="receipt:other", chat_id=702, member_id=other, text="Receipt"
        )
        receipt = await delivery.emulator.user(702).wait_message(timeout=10)
        waited = time.monotonic() - started
    finally:
        sender.stop()
        await running
    assert receipt.text == "Receipt"
    assert waited < 2.0, f"the receipt waited {waited:.1f} s behind another chat's backlog"
    assert len(delivery.emulator.user(701).messages) < 10  # the backlog still paced


async def test_a_sender_that_takes_over_sends_what_a_dead_one_had_claimed_at_once(
    delivery: Delivery, phones: Phones
) -> None:
    """A sender killed mid-delivery leaves its claims `sending`; the next one (a new leader,
    a restart) voids them at its first look instead of waiting out CLAIM_TIMEOUT."""
    ids = [await _member(delivery, phones, 720 + i) for i in range(5)]
    for i, member_id in enumerate(ids):
        await delivery.outbox.enqueue(
            dedup_key=f"d{i}", chat_id=720 + i, member_id=member_id, text=f"message {i}"
        )

    class Stuck:
        """A bot whose sends never come back: the process is killed while they are on the way."""

        calls = 0

        async def send_message(self, *args: object, **kwargs: object) -> None:
            Stuck.calls += 1
            await asyncio.Event().wait()

    dead = Sender(
        delivery.outbox,
        Stuck(),  # type: ignore[arg-type]
        delivery.sender.rules,
        rate_per_second=1000,
        per_chat_interval=0.0,
    )
    running = asyncio.create_task(dead.run())
    for _ in range(500):  # until all five are on their way
        if Stuck.calls == 5:
            break
        await asyncio.sleep(0.01)
    running.cancel()  # SIGKILL: nothing more of it runs, its claims stay
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert set((await _statuses(delivery.outbox)).values()) == {"sending"}
    successor = Sender(delivery.outbox, delivery.bot, delivery.sender.rules, per_chat_interval=0.0)
    assert await successor.drain() == 5  # the same moment: no 5 minutes' wait
    assert [len(delivery.emulator.user(720 + i).messages) for i in range(5)] == [1] * 5
    assert set((await _statuses(delivery.outbox)).values()) == {"sent"}


class _Held:
    """A bot whose sends hang until `release` is set, then end as `outcome` says (by chat):
    an old sender that did not die, still sending while a new one takes over."""

    def __init__(self, outcome: Callable[[int], object]) -> None:
        self.outcome = outcome
        self.calls = 0
        self.release = asyncio.Event()

    async def send_message(self, chat_id: int, *args: object, **kwargs: object) -> object:
        self.calls += 1
        await self.release.wait()
        result = self.outcome(chat_id)
        if isinstance(result, Exception):
            raise result
        return result


async def test_an_old_sender_still_sending_after_a_takeover_cannot_requeue_or_rewrite_a_message(
    delivery: Delivery, phones: Phones, clock: ManualClock
) -> None:
    """The old leader's sender claimed three messages and is still on them when a new leader's
    sender takes over and sends all three. Its late outcomes (a 429 and a network error put
    the message back in the queue, a "sent" would overwrite the new sender's) change nothing:
    each member gets each message once."""
    clock.set(NOON_MSK)
    ids = [await _member(delivery, phones, 740 + i) for i in range(3)]
    for i, member_id in enumerate(ids):
        await delivery.outbox.enqueue(
            dedup_key=f"t{i}", chat_id=740 + i, member_id=member_id, text=f"message {i}"
        )
    method = SendMessage(chat_id=0, text="")
    late = {
        740: TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=30),
        741: TelegramNetworkError(method=method, message="timeout"),
        742: Message.model_validate(
            {"message_id": 99999, "date": 0, "chat": {"id": 742, "type": "private"}}
        ),
    }
    held = _Held(late.__getitem__)
    old = Sender(
        delivery.outbox,
        held,  # type: ignore[arg-type]
        delivery.sender.rules,
        rate_per_second=1000,
        per_chat_interval=0.0,
    )
    sending = asyncio.create_task(old.drain_once())
    for _ in range(500):  # until all three are on their way
        if held.calls == 3:
            break
        await asyncio.sleep(0.01)
    assert held.calls == 3
    successor = Sender(delivery.outbox, delivery.bot, delivery.sender.rules, per_chat_interval=0.0)
    assert await successor.drain() == 3
    async with delivery.outbox.engine.connect() as conn:
        before = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    held.release.set()  # the old sender's late outcomes
    await sending
    async with delivery.outbox.engine.connect() as conn:
        after = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    assert after == before
    assert {row.status for row in after} == {"sent"}
    clock.advance(timedelta(minutes=10))  # past the 429's wait and the back-off
    assert await successor.drain() == 0
    assert [len(delivery.emulator.user(740 + i).messages) for i in range(3)] == [1] * 3


async def test_a_sender_whose_epoch_is_older_than_the_lease_claims_nothing(
    delivery: Delivery, phones: Phones
) -> None:
    """A new leader's sender took a later epoch: the old leader's sender, until its scheduler
    notices the lost lock and stops it, claims nothing, so only the new one sends."""
    member_id = await _member(delivery, phones, 750)
    old = Sender(delivery.outbox, delivery.bot, delivery.sender.rules, per_chat_interval=0.0)
    assert await old.drain() == 0  # running: it has its epoch
    successor = Sender(delivery.outbox, delivery.bot, delivery.sender.rules, per_chat_interval=0.0)
    assert await successor.drain() == 0  # took over: a later epoch
    await delivery.outbox.enqueue(
        dedup_key="after-takeover", chat_id=750, member_id=member_id, text="Receipt"
    )
    assert await old.drain() == 0
    assert await old.drain() == 0  # and it stays out
    assert await _statuses(delivery.outbox) == {"after-takeover": "queued"}
    assert delivery.emulator.user(750).messages == []
    assert await successor.drain() == 1
    assert [m.text for m in delivery.emulator.user(750).messages] == ["Receipt"]
