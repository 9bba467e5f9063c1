"""Gifts a crash left uncredited (a message recorded sent, its process dead before crediting)
are credited by the tick: also when the process dies again (or the credit fails) just as the
broadcast ends, since it is not said to be done before every sent message has its gift, and
also when the marketer pauses or cancels it meanwhile. Both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.service import LedgerService
from marketing.broadcasts import Broadcast, Broadcasts, Draft
from marketing.segments import SegmentFilter
from messaging.outbox import Outbox
from storage.schema import operations, outbox
from tests.conftest import Phones


class Killed(BaseException):
    """The process died here (kill -9): nothing after it runs."""


async def _sent_without_their_gifts(
    ledger: LedgerService, clock: ManualClock, phones: Phones
) -> tuple[Outbox, Broadcast, list[int]]:
    """A broadcast with a gift whose three messages a sender sent and recorded, in a process
    that died before it credited the gifts (the sender's `on_sent`)."""
    outbox_ = Outbox(ledger.engine, clock, ledger.db)
    members = []
    for i in range(3):
        registration = await ledger.register_member(
            phones.next(), telegram_id=7300 + i, language="en"
        )
        members.append(registration.member.member_id)
    draft = Draft(
        filter=SegmentFilter(),
        text="A gift for you",
        public_id="G-1",
        control_percent=0,
        gift_points=50,
        gift_days=7,
    )
    broadcasts = Broadcasts(ledger, outbox_)
    broadcast, _ = await broadcasts.create(draft, actor="api:crm")
    await broadcasts.tick()  # queues all three
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(outbox)
            .where(outbox.c.broadcast_id == broadcast.id)
            .values(status="sent", sent_at=clock.now(), message_id=1)
        )
    return outbox_, broadcast, members


async def _gifted(ledger: LedgerService, broadcast: Broadcast) -> list[int]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(operations.c.member_id).where(operations.c.key.like(f"gift:{broadcast.id}:%"))
        )
        return sorted(rows.scalars())


async def test_the_gifts_of_sent_messages_survive_a_crash_as_the_broadcast_ends(
    ledger: LedgerService, clock: ManualClock, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox_, broadcast, members = await _sent_without_their_gifts(ledger, clock, phones)

    # The process that takes over sees nothing left to send and ends the broadcast; it dies
    # as it credits the gifts.
    async def dies(*args: object, **kwargs: object) -> None:
        raise Killed

    monkeypatch.setattr(ledger, "credit_gift", dies)
    with pytest.raises(Killed):
        await Broadcasts(ledger, outbox_).tick()
    monkeypatch.undo()

    restarted = Broadcasts(ledger, outbox_)
    for _ in range(3):
        clock.advance(timedelta(minutes=2))
        await restarted.tick()
    assert await _gifted(ledger, broadcast) == sorted(members)
    found = await restarted.by_id(broadcast.id)
    assert found is not None and found.status == "done"
    assert await check_ledger(ledger.engine) == []


@pytest.mark.parametrize("then", ["cancel", "pause"])
async def test_the_gifts_of_sent_messages_survive_a_crash_and_a_pause_or_cancel(
    ledger: LedgerService, clock: ManualClock, phones: Phones, then: str
) -> None:
    """The marketer pauses or cancels the broadcast before the restarted process's tick: the
    gifts of what was sent are credited all the same."""
    outbox_, broadcast, members = await _sent_without_their_gifts(ledger, clock, phones)
    restarted = Broadcasts(ledger, outbox_)
    if then == "cancel":
        await restarted.cancel(broadcast, actor="tg:1")
    else:
        await restarted.pause(broadcast, actor="tg:1")
    for _ in range(3):
        clock.advance(timedelta(minutes=2))
        await restarted.tick()
    assert await _gifted(ledger, broadcast) == sorted(members)
    assert await check_ledger(ledger.engine) == []
