"""Broadcasts through the one delivery path, with the emulator as Telegram and the ledger's
manual clock: who gets the message, who is skipped and why, the counts adding up at every
moment, pause, resume and cancel, a restart that sends nobody a second copy. Both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiogram import Bot
from sqlalchemy import select

from bot.i18n import build_i18n
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.rules import Rules
from ledger.service import LedgerService
from marketing.broadcasts import KIND, Broadcast, BroadcastError, Broadcasts, Draft
from marketing.offer import UNSUBSCRIBE, OfferComposer
from marketing.segments import SegmentFilter
from messaging.notices import Notices
from messaging.outbox import Outbox
from messaging.sender import Sender
from storage.schema import broadcast_members, outbox
from tests.conftest import Phones

TOKEN = "654321:BROADCAST"


@dataclass
class Shop:
    emulator: BotAPIEmulator
    ledger: LedgerService
    clock: ManualClock
    rules: Rules
    outbox: Outbox
    broadcasts: Broadcasts
    sender: Sender
    bots: list[Bot] = field(default_factory=list)
    members: dict[str, int] = field(default_factory=dict)  # name -> member id
    chats: dict[str, int] = field(default_factory=dict)  # name -> telegram id

    def new_sender(self) -> Sender:
        """Another sender, as a restarted process makes (it takes a later epoch)."""
        i18n = build_i18n()
        self.bots.append(self.emulator.aiogram_bot())
        return Sender(
            self.outbox,
            self.bots[-1],
            self.rules.messages,
            rate_per_second=500,
            per_chat_interval=0.0,
            notices=Notices(i18n, self.rules),
            composers={KIND: OfferComposer(self.broadcasts, i18n)},
            on_sent=self.broadcasts.credit_gifts,
        )

    def received(self, name: str) -> list[str]:
        return [m.text or m.caption or "" for m in self.emulator.user(self.chats[name]).messages]

    async def run(self, broadcast: Broadcast, sender: Sender | None = None) -> Broadcast:
        """Tick and drain until the broadcast ends or nothing moves any more."""
        sender = sender or self.sender
        for _ in range(100):
            await self.broadcasts.tick()
            await sender.drain()
            found = await self.broadcasts.by_id(broadcast.id)
            assert found is not None
            if not found.active:
                return found
            if found.status == "paused":
                return found
        return found


@pytest.fixture
async def shop(
    ledger: LedgerService, clock: ManualClock, rules: Rules, phones: Phones
) -> AsyncIterator[Shop]:
    emulator = BotAPIEmulator()
    emulator.add_bot(TOKEN, username="offers_bot")
    await emulator.start()
    outbox_ = Outbox(ledger.engine, clock, ledger.db)
    broadcasts = Broadcasts(ledger, outbox_, feed_window=4)  # a few rows a batch: many batches
    shop = Shop(emulator, ledger, clock, rules, outbox_, broadcasts, sender=None)  # type: ignore[arg-type]
    shop.sender = shop.new_sender()
    yield shop
    for bot in shop.bots:
        await bot.session.close()
    await emulator.stop()


async def join(
    shop: Shop, phones: Phones, name: str, *, telegram: bool = True, **profile: object
) -> int:
    chat = 7000 + len(shop.members)
    if telegram:
        shop.emulator.user(chat, name)
        shop.chats[name] = chat
    registration = await shop.ledger.register_member(
        phones.next(),
        telegram_id=chat if telegram else None,
        first_name=name,
        language=str(profile.pop("language", "en")),
    )
    member_id = registration.member.member_id
    if profile:
        await shop.ledger.update_profile(member_id, **profile)
    shop.members[name] = member_id
    return member_id


async def outcomes(shop: Shop, broadcast: Broadcast) -> dict[int, tuple[str, str | None]]:
    async with shop.ledger.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.member_id, outbox.c.status, outbox.c.reason).where(
                    outbox.c.broadcast_id == broadcast.id
                )
            )
        ).all()
    return {row.member_id: (row.status, row.reason) for row in rows}


async def control_group(shop: Shop, broadcast: Broadcast) -> set[int]:
    async with shop.ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(broadcast_members.c.member_id).where(
                broadcast_members.c.broadcast_id == broadcast.id,
                broadcast_members.c.control.is_(True),
            )
        )
        return set(rows.scalars())


async def test_a_broadcast_reaches_its_segment_not_its_control_group_and_says_why_it_skipped(
    shop: Shop, phones: Phones
) -> None:
    for i in range(16):
        await join(shop, phones, f"ru{i}", language="ru")
    await join(shop, phones, "optout", language="ru", notify_offers=False)
    await join(shop, phones, "blocked", language="ru", unreachable=True)
    await join(shop, phones, "imported", language="ru", telegram=False)
    await join(shop, phones, "english", language="en")  # outside the filter
    draft = Draft(
        filter=SegmentFilter(language="ru"),
        text="<b>Hello, {first_name}!</b> You have {balance} points.",
        public_id="B-1",
        control_percent=20,
    )
    broadcast, created = await shop.broadcasts.create(draft, actor="api:crm")
    assert created
    assert (broadcast.audience, broadcast.control, broadcast.recipients) == (19, 4, 15)
    control = await control_group(shop, broadcast)
    assert len(control) == 4
    assert shop.members["english"] not in control

    while True:  # the counts add up at every step
        progress = await shop.broadcasts.progress(broadcast)
        assert progress.done + progress.pending == broadcast.recipients
        await shop.broadcasts.tick()
        await shop.sender.drain_once()
        found = await shop.broadcasts.by_id(broadcast.id)
        assert found is not None
        if found.status == "done":
            break
    progress = await shop.broadcasts.progress(broadcast)
    seen = await outcomes(shop, broadcast)
    skipped = {name: seen.get(shop.members[name]) for name in ("optout", "blocked", "imported")}
    for name, member_id in shop.members.items():
        if member_id in control or name == "english":  # no outbox row, no message
            assert member_id not in seen, name
            assert name not in shop.chats or shop.received(name) == [], name
    assert skipped == {
        "optout": ("skipped_optout", "offer") if shop.members["optout"] not in control else None,
        "blocked": ("skipped_unreachable", "blocked the bot")
        if shop.members["blocked"] not in control
        else None,
        "imported": ("skipped_unreachable", "no chat")
        if shop.members["imported"] not in control
        else None,
    }
    reached = [n for n in shop.chats if n.startswith("ru") and shop.members[n] not in control]
    for name in reached:
        assert shop.received(name) == [f"Hello, {name}! You have 100 points."]
    assert progress.sent == len(reached)
    assert progress.pending == 0 and progress.failed == 0
    assert progress.done == broadcast.recipients


async def test_a_broadcast_has_an_unsubscribe_button_that_the_member_sees(
    shop: Shop, phones: Phones
) -> None:
    await join(shop, phones, "anna", language="ru")
    draft = Draft(
        filter=SegmentFilter(),
        text="Скидка 20%",
        control_percent=0,
        button_text="Меню",
        button_url="https://example.com/menu",
    )
    broadcast, _ = await shop.broadcasts.create(draft, actor="tg:1")
    await shop.run(broadcast)
    (message,) = shop.emulator.user(shop.chats["anna"]).messages
    buttons = [b for row in message.reply_markup["inline_keyboard"] for b in row]
    assert buttons[0] == {"text": "Меню", "url": "https://example.com/menu"}
    assert buttons[1]["callback_data"] == UNSUBSCRIBE
    assert buttons[1]["text"] == "Отписаться от предложений"


async def test_the_same_broadcast_id_again_is_the_same_broadcast_and_with_another_body_a_conflict(
    shop: Shop, phones: Phones
) -> None:
    for i in range(5):
        await join(shop, phones, f"m{i}")
    draft = Draft(filter=SegmentFilter(), text="Hi", public_id="B-7", control_percent=0)
    first, created = await shop.broadcasts.create(draft, actor="api:crm")
    again, created_again = await shop.broadcasts.create(draft, actor="api:crm")
    assert created and not created_again
    assert again.id == first.id and again.recipients == 5
    with pytest.raises(BroadcastError) as error:
        await shop.broadcasts.create(
            Draft(filter=SegmentFilter(), text="Other", public_id="B-7"), actor="api:crm"
        )
    assert error.value.code == "broadcast_id_conflict"
    assert len(await shop.broadcasts.recent()) == 1


async def test_pause_holds_the_rest_resume_sends_it_and_cancel_sends_nothing_more(
    shop: Shop, phones: Phones
) -> None:
    for i in range(12):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", control_percent=0), actor="tg:1"
    )
    await shop.broadcasts.tick()  # 4 queued (the feed window)
    await shop.broadcasts.pause(broadcast, actor="tg:1")
    await shop.sender.drain()
    for _ in range(3):
        await shop.broadcasts.tick()
    assert (await shop.broadcasts.progress(broadcast)).sent == 0
    paused = await shop.broadcasts.by_id(broadcast.id)
    assert paused is not None and paused.status == "paused"

    await shop.broadcasts.resume(paused, actor="tg:1")
    await shop.broadcasts.tick()
    await shop.sender.drain()
    sent_before_cancel = (await shop.broadcasts.progress(broadcast)).sent
    assert 0 < sent_before_cancel < 12
    cancelled = await shop.broadcasts.cancel(paused, actor="tg:1")
    assert cancelled.status == "cancelled"
    for _ in range(3):
        await shop.broadcasts.tick()
        await shop.sender.drain()
    progress = await shop.broadcasts.progress(broadcast)
    assert progress.sent == sent_before_cancel
    assert progress.pending == 12 - sent_before_cancel
    received = sum(len(shop.received(name)) for name in shop.chats)
    assert received == sent_before_cancel
    with pytest.raises(BroadcastError):
        await shop.broadcasts.resume(cancelled, actor="tg:1")


async def test_a_fourth_offer_within_seven_days_is_skipped_for_the_cap_at_once(
    shop: Shop, phones: Phones
) -> None:
    capped = await join(shop, phones, "capped")
    await join(shop, phones, "fresh")
    for n in range(3):  # three offers already this week
        await shop.outbox.enqueue(
            dedup_key=f"earlier-{n}",
            chat_id=shop.chats["capped"],
            member_id=capped,
            text=f"offer {n}",
            category="offer",
        )
        await shop.sender.drain()
        shop.clock.advance(timedelta(hours=1))
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="The fourth", control_percent=0), actor="tg:1"
    )
    done = await shop.run(broadcast)
    assert done.status == "done"
    seen = await outcomes(shop, broadcast)
    assert seen[capped][0] == "skipped_cap"
    assert seen[shop.members["fresh"]] == ("sent", None)
    assert "The fourth" not in shop.received("capped")
    progress = await shop.broadcasts.progress(broadcast)
    assert (progress.sent, progress.skipped_cap, progress.pending) == (1, 1, 0)


async def test_quiet_hours_hold_a_broadcast_until_the_members_morning(
    shop: Shop, phones: Phones
) -> None:
    await join(shop, phones, "moscow")
    await join(shop, phones, "vladivostok", timezone="Asia/Vladivostok")
    shop.clock.set(shop.clock.now().replace(hour=19))  # 22:00 in Moscow, 05:00 in Vladivostok
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Evening offer", control_percent=0), actor="tg:1"
    )
    await shop.run(broadcast)
    assert shop.received("moscow") == [] and shop.received("vladivostok") == []
    progress = await shop.broadcasts.progress(broadcast)
    assert progress.pending == 2
    shop.clock.advance(timedelta(hours=2))  # 07:00 in Vladivostok... 00:00 in Moscow
    await shop.run(broadcast)
    assert shop.received("vladivostok") == []
    shop.clock.set(shop.clock.now().replace(hour=1, minute=0) + timedelta(days=1))  # 11:00 VVO
    await shop.run(broadcast)
    assert shop.received("vladivostok") == ["Evening offer"]
    assert shop.received("moscow") == []  # 04:00 in Moscow
    shop.clock.set(shop.clock.now().replace(hour=7, minute=5))  # 10:05 in Moscow
    done = await shop.run(broadcast)
    assert shop.received("moscow") == ["Evening offer"]
    assert done.status == "done"


async def test_a_restarted_sender_and_a_second_tick_send_nobody_a_second_copy(
    shop: Shop, phones: Phones
) -> None:
    for i in range(10):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Once", control_percent=0), actor="tg:1"
    )
    await shop.broadcasts.tick()
    await shop.sender.drain_once()  # part of it went out, then the process "died"
    restarted = Broadcasts(shop.ledger, shop.outbox, feed_window=4)
    shop.broadcasts = restarted
    sender = shop.new_sender()
    done = await shop.run(broadcast, sender)
    assert done.status == "done"
    for name in shop.chats:
        assert shop.received(name) == ["Once"]
    progress = await restarted.progress(broadcast)
    assert (progress.sent, progress.pending) == (10, 0)


async def test_a_scheduled_broadcast_waits_for_its_time(shop: Shop, phones: Phones) -> None:
    await join(shop, phones, "anna")
    later = shop.clock.now() + timedelta(hours=3)
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Later", control_percent=0, send_at=later),
        actor="tg:1",
    )
    assert broadcast.status == "scheduled"
    await shop.run(broadcast)
    assert shop.received("anna") == []
    shop.clock.set(later)
    done = await shop.run(broadcast)
    assert done.status == "done" and shop.received("anna") == ["Later"]


async def test_gift_points_go_with_each_message_sent_once_and_burn_after_their_days(
    shop: Shop, phones: Phones
) -> None:
    for i in range(6):
        await join(shop, phones, f"m{i}", language="ru")
    await join(shop, phones, "optout", language="ru", notify_offers=False)
    broadcast, _ = await shop.broadcasts.create(
        Draft(
            filter=SegmentFilter(),
            text="Баланс: {balance}",
            control_percent=0,
            gift_points=50,
            gift_days=7,
        ),
        actor="tg:1",
    )
    await shop.run(broadcast)
    for i in range(6):
        (text,) = shop.received(f"m{i}")
        # The balance shown includes the gift; the gift line says how many and until when.
        assert text == "Баланс: 150\n\n🎁 Вам в подарок 50 баллов — они действуют до 9 марта."
        member = await shop.ledger.get_member(shop.members[f"m{i}"])
        assert member.balance == 150
    optout = await shop.ledger.get_member(shop.members["optout"])
    assert optout.balance == 100  # skipped: no message, no gift
    # The sweep finds nothing left to credit, and crediting again changes nothing.
    done = await shop.broadcasts.by_id(broadcast.id)
    assert done is not None and done.status == "done"
    gifted = await shop.ledger.gifted_members(broadcast.id)
    assert gifted == {shop.members[f"m{i}"] for i in range(6)}
    shop.clock.advance(timedelta(days=7, minutes=1))
    await shop.ledger.expire_due()
    member = await shop.ledger.get_member(shop.members["m0"])
    assert member.balance == 100


async def test_a_gift_whose_credit_a_crash_missed_is_credited_by_the_next_tick(
    shop: Shop, phones: Phones
) -> None:
    for i in range(3):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", control_percent=0, gift_points=20),
        actor="tg:1",
    )
    shop.sender.on_sent = None  # the process died between recording the sends and the credit
    await shop.run(broadcast)
    assert await shop.ledger.gifted_members(broadcast.id) == set(shop.members.values())
    for member_id in shop.members.values():
        assert (await shop.ledger.get_member(member_id)).balance == 120


async def test_the_report_counts_what_each_group_bought_in_the_window_after_sending(
    shop: Shop, phones: Phones
) -> None:
    """80 members, half held back. In the 14 days after sending: 10 recipients buy 1,000 RUB
    each (one of them twice, the second refunded by half), 4 of the control group buy 500 RUB.
    A purchase before sending and one after the window count for nobody; an erased member
    leaves their group. By hand: recipients 39 members (one erased), 10 buyers, 11 purchases,
    revenue 10 x 1,000 + 500 = 10,500 RUB; control 40 members, 4 buyers, 2,000 RUB."""
    for i in range(80):
        await join(shop, phones, f"m{i}")
    ids = list(shop.members.values())
    before = ids[0]
    await shop.ledger.purchase(receipt_id="early", member_id=before, amount_kopecks=99_900)
    shop.clock.advance(timedelta(hours=1))
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", control_percent=50), actor="tg:1"
    )
    done = await shop.run(broadcast)
    control = await control_group(shop, broadcast)
    recipients = [m for m in ids if m not in control]
    held_back = sorted(control)
    shop.clock.advance(timedelta(days=3))
    for n, member_id in enumerate(recipients[:10]):
        await shop.ledger.purchase(receipt_id=f"r{n}", member_id=member_id, amount_kopecks=100_000)
    await shop.ledger.purchase(
        receipt_id="r-twice", member_id=recipients[0], amount_kopecks=100_000
    )
    await shop.ledger.refund(refund_id="rf", receipt_id="r-twice", amount_kopecks=50_000)
    for n, member_id in enumerate(held_back[:4]):
        await shop.ledger.purchase(receipt_id=f"c{n}", member_id=member_id, amount_kopecks=50_000)
    await shop.ledger.erase_member(recipients[-1])
    shop.clock.advance(timedelta(days=12))  # past the 14-day window
    await shop.ledger.purchase(receipt_id="late", member_id=recipients[20], amount_kopecks=70_000)

    report = await shop.broadcasts.attribution(done)
    assert report is not None and report.complete
    assert report.to_json()["recipients"] == {"members": 39, "buyers": 10, "revenue": "10500.00"}
    assert report.to_json()["control"] == {"members": 40, "buyers": 4, "revenue": "2000.00"}
    assert report.recipients.purchases == 11 and report.control.purchases == 4
    lift = report.to_json()["lift"]
    assert lift["state"] == "measured"
    assert lift["buyers"]["recipients"] == "0.2564"  # 10 / 39
    assert lift["buyers"]["control"] == "0.1000"
    assert lift["buyers"]["difference"] == "0.1564"
    assert lift["revenue_per_member"]["difference"] == "219.23"  # 10,500/39 - 2,000/40


async def test_a_broadcast_not_started_has_no_report_yet(shop: Shop, phones: Phones) -> None:
    await join(shop, phones, "anna")
    broadcast, _ = await shop.broadcasts.create(
        Draft(
            filter=SegmentFilter(),
            text="Later",
            send_at=shop.clock.now() + timedelta(days=1),
        ),
        actor="tg:1",
    )
    assert await shop.broadcasts.attribution(broadcast) is None


async def test_at_night_only_a_limited_part_of_a_broadcast_waits_in_the_outbox(
    shop: Shop, phones: Phones
) -> None:
    """Queued messages held by quiet hours are not 'ahead' of the sender, but past a limit the
    rest waits in broadcast_members: the morning's sender ranks a short queue."""
    shop.broadcasts = Broadcasts(shop.ledger, shop.outbox, feed_window=2)  # at most 40 waiting
    for i in range(50):
        await join(shop, phones, f"m{i}")
    shop.clock.set(shop.clock.now().replace(hour=19))  # 22:00 in Moscow
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Night", control_percent=0), actor="tg:1"
    )
    for _ in range(40):
        await shop.broadcasts.tick()
        await shop.sender.drain()
    waiting = await outcomes(shop, broadcast)
    assert len(waiting) == 40
    assert {status for status, _ in waiting.values()} == {"queued"}
    shop.clock.set(shop.clock.now().replace(hour=7, minute=1) + timedelta(days=1))  # 10:01
    done = await shop.run(broadcast)
    assert done.status == "done"
    assert all(shop.received(name) == ["Night"] for name in shop.chats)


async def test_gifted_points_add_up_the_gifts_of_this_broadcast_only(
    shop: Shop, phones: Phones
) -> None:
    for i in range(3):
        await join(shop, phones, f"m{i}")
    draft = Draft(filter=SegmentFilter(), text="Hi", control_percent=0, gift_points=25)
    first, _ = await shop.broadcasts.create(draft, actor="tg:1")
    assert await shop.broadcasts.gifted_points(first) == 0
    await shop.run(first)
    second, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Again", control_percent=0, gift_points=40),
        actor="tg:1",
    )
    await shop.run(second)
    # Another broadcast's gifts, and one of a broadcast whose id starts the same, count not.
    await shop.ledger.credit_gift(shop.members["m0"], int(f"{first.id}0"), 99, 7)
    assert await shop.broadcasts.gifted_points(first) == 75
    assert await shop.broadcasts.gifted_points(second) == 120


async def test_what_the_sender_claimed_before_a_cancel_or_a_pause_is_not_sent_after_it(
    shop: Shop, phones: Phones
) -> None:
    """The sender claims a second's worth of messages at a time; a cancel or a pause made
    meanwhile reaches them too (only a send already handed to Telegram goes)."""
    for i in range(6):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", control_percent=0), actor="tg:1"
    )
    await shop.broadcasts.tick()  # 4 queued
    epoch = await shop.outbox.take_epoch("test")
    claimed = await shop.outbox.claim_due(2, epoch=epoch)  # claimed by a sender, not yet sent
    assert len(claimed) == 2
    paused = await shop.broadcasts.pause(broadcast, actor="tg:1")
    shop.sender = shop.new_sender()  # a later epoch takes the claims over at once
    await shop.sender.drain()
    assert (await shop.broadcasts.progress(broadcast)).sent == 0
    assert {status for status, _ in (await outcomes(shop, broadcast)).values()} == {"held"}

    resumed = await shop.broadcasts.resume(paused, actor="tg:1")
    await shop.broadcasts.tick()
    epoch = await shop.outbox.take_epoch("test")
    claimed = await shop.outbox.claim_due(3, epoch=epoch)
    assert len(claimed) == 3
    await shop.broadcasts.cancel(resumed, actor="tg:1")
    shop.sender = shop.new_sender()
    await shop.sender.drain()
    assert sum(len(shop.received(name)) for name in shop.chats) == 0
    progress = await shop.broadcasts.progress(broadcast)
    assert (progress.sent, progress.pending) == (0, 6)


async def test_a_message_held_by_a_pause_as_a_resume_came_is_sent_after_all(
    shop: Shop, phones: Phones
) -> None:
    await join(shop, phones, "anna")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", control_percent=0), actor="tg:1"
    )
    await shop.broadcasts.tick()
    epoch = await shop.outbox.take_epoch("test")
    (claimed,) = await shop.outbox.claim_due(1, epoch=epoch)
    paused = await shop.broadcasts.pause(broadcast, actor="tg:1")
    await shop.broadcasts.resume(paused, actor="tg:1")  # nothing was held yet to release
    # The sender, still holding it, learns of the pause only now and holds it back.
    assert await shop.outbox.record(claimed.message_id, "held", epoch=epoch)
    done = await shop.run(broadcast)
    assert done.status == "done" and shop.received("anna") == ["Hi"]
