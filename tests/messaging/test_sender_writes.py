"""What the sender writes while purchases run: its outcomes are few transactions, not one per
message (each one competed with the purchases for the database)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from messaging.outbox import Outbox
from messaging.sender import Sender
from storage.schema import outbox
from tests.conftest import Phones
from tests.messaging.conftest import Delivery

MESSAGES = 40
SENDS_IN_FLIGHT = 32  # messaging.sender's


@pytest.fixture
def commits() -> Iterator[list[object]]:
    """Every COMMIT any engine sends meanwhile (the async engine's and the ledger's own)."""
    seen: list[object] = []

    def count(conn: Any) -> None:
        seen.append(conn)

    event.listen(Engine, "commit", count)
    yield seen
    event.remove(Engine, "commit", count)


@pytest.mark.parametrize("through_ledger", [False, True], ids=["async-engine", "ledger-db"])
async def test_the_sends_in_flight_are_recorded_in_one_transaction(
    delivery: Delivery, phones: Phones, commits: list[object], through_ledger: bool
) -> None:
    box = (
        Outbox(delivery.ledger.engine, delivery.ledger.clock, delivery.ledger.db)
        if through_ledger
        else Outbox(delivery.ledger.engine, delivery.ledger.clock)
    )
    chats = [900 + i for i in range(MESSAGES)]
    for i, chat in enumerate(chats):
        delivery.emulator.user(chat, "Test")
        for _ in range(i % 5):  # so that the chats' next message ids differ
            await delivery.bot.send_message(chat, "earlier")
        member = await delivery.ledger.register_member(phones.next(), telegram_id=chat)
        await box.enqueue(
            dedup_key=f"r{i}", chat_id=chat, member_id=member.member.member_id, text=f"r {i}"
        )
    sender = Sender(
        box, delivery.bot, delivery.sender.rules, rate_per_second=1000, per_chat_interval=0.0
    )
    commits.clear()
    assert await sender.drain() == MESSAGES
    # The epoch, a claim, an empty claim at the end; the outcomes of each group of sends in
    # flight together: one transaction each (it was one per message).
    groups = -(-MESSAGES // SENDS_IN_FLIGHT)
    assert len(commits) <= 3 + groups
    async with box.engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    for row in rows:  # each row has its own Telegram message, counted once, and its time
        *_earlier, message = delivery.emulator.user(row.chat_id).messages
        assert (row.status, row.message_id, row.attempts) == ("sent", message.message_id, 1)
        assert row.sent_at is not None and row.reason is None
        assert message.text == row.text


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL: one pool, nothing to compare
async def test_on_sqlite_the_outbox_writes_as_the_ledger_does_not_through_aiosqlite(
    delivery: Delivery, phones: Phones
) -> None:
    """A write through aiosqlite holds SQLite's write lock across several thread hops, and
    meanwhile the purchases' writes (storage.transactions) find it taken and queue behind it
    on the writer thread. The outbox of the assembly (bot.build gives it the ledger's
    transactions) queues, claims and records without one."""
    ledger = delivery.ledger
    assert ledger.engine.dialect.name == "sqlite"
    box = Outbox(ledger.engine, ledger.clock, ledger.db)
    through_aiosqlite: list[object] = []

    def count(conn: Any) -> None:
        through_aiosqlite.append(conn)

    event.listen(ledger.engine.sync_engine, "commit", count)
    try:
        for i in range(5):
            delivery.emulator.user(950 + i, "Test")
            member = await ledger.register_member(phones.next(), telegram_id=950 + i)
            through_aiosqlite.clear()  # the registration's own writes are not the outbox's
            await box.enqueue(
                dedup_key=f"w{i}", chat_id=950 + i, member_id=member.member.member_id, text="w"
            )
        sender = Sender(
            box, delivery.bot, delivery.sender.rules, rate_per_second=100, per_chat_interval=0
        )
        assert await sender.drain() == 5
        assert through_aiosqlite == []
    finally:
        event.remove(ledger.engine.sync_engine, "commit", count)
    assert set((await box.counts()).values()) == {5}


async def test_a_send_that_fails_unexpectedly_leaves_the_others_in_flight_recorded_as_sent(
    delivery: Delivery, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcomes of the sends in flight are recorded together; one that raises what the
    sender does not expect must not leave the others `sending`, to be sent again later."""
    from aiogram.exceptions import TelegramNotFound
    from aiogram.methods import SendMessage

    box = Outbox(delivery.ledger.engine, delivery.ledger.clock, delivery.ledger.db)
    chats = [960, 961, 962]
    for i, chat in enumerate(chats):
        delivery.emulator.user(chat, "Test")
        member = await delivery.ledger.register_member(phones.next(), telegram_id=chat)
        await box.enqueue(
            dedup_key=f"f{i}", chat_id=chat, member_id=member.member.member_id, text=f"f {i}"
        )
    send = delivery.bot.send_message

    async def failing_for_961(chat_id: int, text: str, **kwargs: Any) -> Any:
        if chat_id == 961:
            raise TelegramNotFound(SendMessage(chat_id=chat_id, text=text), "chat not found")
        return await send(chat_id, text, **kwargs)

    monkeypatch.setattr(delivery.bot, "send_message", failing_for_961)
    sender = Sender(
        box, delivery.bot, delivery.sender.rules, rate_per_second=1000, per_chat_interval=0.0
    )
    with pytest.raises(TelegramNotFound):
        await sender.drain_once()
    async with box.engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.chat_id))).all()
    assert [(row.chat_id, row.status) for row in rows] == [
        (960, "sent"),
        (961, "sending"),  # claimed: tried again after the claim's timeout
        (962, "sent"),
    ]
    assert [m.text for m in delivery.emulator.user(960).messages] == ["f 0"]
    assert [m.text for m in delivery.emulator.user(962).messages] == ["f 2"]


async def test_at_telegrams_rate_each_send_is_recorded_before_the_next_goes(
    delivery: Delivery, phones: Phones
) -> None:
    """A process killed mid-batch leaves unrecorded only what was in flight: the next sender
    sends those again, and nothing else (issue 15: a broadcast killed with -9)."""
    box = Outbox(delivery.ledger.engine, delivery.ledger.clock, delivery.ledger.db)
    for i in range(12):
        chat = 950 + i
        delivery.emulator.user(chat, "Test")
        member = await delivery.ledger.register_member(phones.next(), telegram_id=chat)
        await box.enqueue(
            dedup_key=f"o{i}", chat_id=chat, member_id=member.member.member_id, text=f"o {i}"
        )
    sender = Sender(box, delivery.bot, delivery.sender.rules, rate_per_second=25)
    assert sender.record_group == 1
    draining = asyncio.create_task(sender.drain_once())  # one claim: all 12, ~0.5 s of sends
    unrecorded: list[int] = []
    for _ in range(8):
        await asyncio.sleep(0.05)
        async with box.engine.connect() as conn:
            recorded = (
                await conn.execute(select(func.count()).where(outbox.c.status == "sent"))
            ).scalar_one()
        delivered = sum(len(delivery.emulator.user(950 + i).messages) for i in range(12))
        unrecorded.append(delivered - recorded)
    await draining
    assert max(unrecorded) <= 2, unrecorded  # the send in flight, and one just landing
