"""Gifts a crash left uncredited are credited by the tick, even when the process dies (or the
credit fails) just as the broadcast ends: the broadcast is not said to be done before every
sent message has its gift. Both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.service import LedgerService
from marketing.broadcasts import Broadcasts, Draft
from marketing.segments import SegmentFilter
from messaging.outbox import Outbox
from storage.schema import operations, outbox
from tests.conftest import Phones


class Killed(BaseException):
    """The process died here (kill -9): nothing after it runs."""


async def test_the_gifts_of_sent_messages_survive_a_crash_as_the_broadcast_ends(
    ledger: LedgerService, clock: ManualClock, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    broadcast, _ = await Broadcasts(ledger, outbox_).create(draft, actor="api:crm")
    first = Broadcasts(ledger, outbox_)
    await first.tick()  # queues all three
    # A sender sent them and recorded it, and its process died before it credited the gifts.
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(outbox)
            .where(outbox.c.broadcast_id == broadcast.id)
            .values(status="sent", sent_at=clock.now(), message_id=1)
        )

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
    async with ledger.engine.connect() as conn:
        gifted = (
            await conn.execute(
                select(operations.c.member_id).where(
                    operations.c.key.like(f"gift:{broadcast.id}:%")
                )
            )
        ).scalars()
        assert sorted(gifted) == sorted(members)
    found = await restarted.by_id(broadcast.id)
    assert found is not None and found.status == "done"
    assert await check_ledger(ledger.engine) == []
