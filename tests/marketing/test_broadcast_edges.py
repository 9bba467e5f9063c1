# ruff: noqa: F811
"""Broadcasts at their edges, each found in review and failing before its fix: a cancel or a
pause reaches what a dead or a working sender had claimed, and what quiet hours deferred; a
retried create adds nobody after the count; a text keeps room for its gift line; a capped
member is skipped at once at night too. Both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from marketing.broadcasts import FAILING_AT_START, GIFT_LINE_MAX, BroadcastError, Broadcasts, Draft
from marketing.segments import SegmentFilter
from staff.audit import AuditLog
from tests.conftest import Phones
from tests.marketing.test_broadcasts import Shop, join, outcomes, shop  # noqa: F401


async def test_cancel_while_a_dead_senders_claim_is_open_sends_nothing_afterwards(
    shop: Shop, phones: Phones
) -> None:
    """PRODUCT.md: POST .../cancel -> nothing pending is sent afterwards. A leader killed with
    -9 leaves its claimed rows `sending`; the marketer cancels (the API runs in any process);
    the next leader's first claim voids the old claims back to `queued` and sends them."""
    for i in range(4):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Cancelled offer", control_percent=0), actor="api:crm"
    )
    await shop.broadcasts.tick()  # the 4 recipients are queued
    dead = await shop.outbox.take_epoch("dead leader")
    claimed = await shop.outbox.claim_due(10, epoch=dead)  # ...claimed, then kill -9
    assert len(claimed) == 4
    cancelled = await shop.broadcasts.cancel(broadcast, actor="api:crm")
    assert cancelled.status == "cancelled"

    restarted = shop.new_sender()  # the next leader
    await restarted.drain()
    received = {name: shop.received(name) for name in shop.chats}
    assert all(got == [] for got in received.values()), received


async def test_pause_while_a_dead_senders_claim_is_open_holds_everything(
    shop: Shop, phones: Phones
) -> None:
    """Pause holds what is queued; after a restart the dead sender's claims must not go out
    while the broadcast is paused."""
    for i in range(4):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Paused offer", control_percent=0), actor="tg:1"
    )
    await shop.broadcasts.tick()
    dead = await shop.outbox.take_epoch("dead leader")
    assert len(await shop.outbox.claim_due(10, epoch=dead)) == 4
    await shop.broadcasts.pause(broadcast, actor="tg:1")
    restarted = shop.new_sender()
    await restarted.drain()
    assert sum(len(shop.received(name)) for name in shop.chats) == 0


async def test_a_message_deferred_by_quiet_hours_as_the_broadcast_is_cancelled_never_goes(
    shop: Shop, phones: Phones
) -> None:
    """The sender claimed a recipient's row and finds quiet hours; the marketer cancels in
    between (another process, or the bot's button); the sender then re-queues the row for
    10:00, over the cancel, and sends it in the morning (with its gift)."""
    await join(shop, phones, "moscow")
    shop.clock.set(shop.clock.now().replace(hour=19))  # 22:00 in Moscow
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Night offer", control_percent=0, gift_points=50),
        actor="api:crm",
    )
    await shop.broadcasts.tick()
    sender = shop.new_sender()
    original = sender._allowed_now
    cancelled_once: list[bool] = []

    async def cancel_first(*args: Any, **kwargs: Any) -> bool:
        if not cancelled_once:
            cancelled_once.append(True)
            await shop.broadcasts.cancel(broadcast, actor="api:crm")
        return await original(*args, **kwargs)

    sender._allowed_now = cancel_first  # type: ignore[method-assign]
    await sender.drain()
    assert cancelled_once
    shop.clock.set(shop.clock.now().replace(hour=7, minute=5) + timedelta(days=1))  # 10:05 MSK
    sender._allowed_now = original  # type: ignore[method-assign]
    await shop.broadcasts.tick()
    await sender.drain()
    assert shop.received("moscow") == []
    seen = await outcomes(shop, broadcast)
    assert seen[shop.members["moscow"]][0] != "sent"
    found = await shop.broadcasts.by_id(broadcast.id)
    assert found is not None and await shop.broadcasts.gifted_points(found) == 0


async def test_a_retry_while_the_first_request_still_draws_adds_no_recipient_after_the_count(
    shop: Shop, phones: Phones
) -> None:
    """POST /api/v1/broadcasts again while the first request is still drawing its members (a
    CRM's retry after a client timeout: drawing 200,000 members may take up to 20 s) finds the
    broadcast `preparing` and draws the members again, at its own moment. If the first request
    finishes (counts the audience, draws the control group) before the retry's insert, the
    retry adds members after the count: more messages go out than `recipients`, and `pending`
    goes negative (recipients = sent + ... + pending no longer holds with pending >= 0)."""
    import asyncio

    from marketing.broadcasts import Broadcasts

    for i in range(3):
        await join(shop, phones, f"m{i}")
    first = shop.broadcasts
    retry = Broadcasts(shop.ledger, shop.outbox, feed_window=4)  # another API process
    first_drawn, first_go, retry_claimed, retry_go = (asyncio.Event() for _ in range(4))
    first_draw, retry_draw = first._draw_members, retry._draw_members

    async def first_draws(*args: Any) -> None:
        await first_draw(*args)
        first_drawn.set()
        await first_go.wait()

    async def retry_draws(*args: Any) -> None:
        retry_claimed.set()
        await retry_go.wait()
        await retry_draw(*args)

    first._draw_members = first_draws  # type: ignore[method-assign]
    retry._draw_members = retry_draws  # type: ignore[method-assign]
    draft = Draft(filter=SegmentFilter(), text="Once", public_id="B-retry", control_percent=0)
    one = asyncio.create_task(first.create(draft, actor="api:crm"))
    await first_drawn.wait()
    await join(shop, phones, "newcomer")  # joins while the request is being served
    two = asyncio.create_task(retry.create(draft, actor="api:crm"))
    await retry_claimed.wait()
    first_go.set()
    broadcast, created = await one
    retry_go.set()
    again, created_again = await two
    assert (created, created_again) == (True, False)
    assert broadcast.recipients == again.recipients == 3

    done = await shop.run(broadcast)
    progress = await shop.broadcasts.progress(done)
    assert progress.pending >= 0, progress
    assert progress.done == done.recipients, progress


async def test_a_text_accepted_at_the_length_limit_still_fits_with_its_gift_line(
    shop: Shop, phones: Phones
) -> None:
    """Broadcasts.check counted the text with the longest name and balance against Telegram's
    4096, but not the gift line marketing.offer appends ("A gift for you: 50 points, valid
    until ..."): a text the API accepted (201) was then refused by Telegram for every
    recipient. Now the gift line's room is kept: such a text is refused when it is created,
    and the longest text accepted with a gift goes out."""
    await join(shop, phones, "anna")
    with pytest.raises(BroadcastError) as refused:
        await shop.broadcasts.create(
            Draft(filter=SegmentFilter(), text="a" * 4090, control_percent=0, gift_points=50),
            actor="api:crm",
        )
    assert refused.value.code == "too_long"
    assert await shop.broadcasts.recent() == []
    longest = "a" * (4096 - GIFT_LINE_MAX)
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text=longest, control_percent=0, gift_points=10_000),
        actor="api:crm",
    )
    done = await shop.run(broadcast)
    progress = await shop.broadcasts.progress(done)
    assert progress.failed == 0, await outcomes(shop, broadcast)
    assert progress.sent == 1


async def test_a_capped_member_at_night_is_skipped_at_once_not_held_until_morning(
    shop: Shop, phones: Phones
) -> None:
    """PRODUCT.md: a message that cannot go out within 24 hours of its send time is skipped
    with its reason "at once when that is already certain (e.g. the member's cap frees only
    days later), so a broadcast reaches done without waiting". The sender checked quiet hours
    before the cap: at 22:00 a member whose cap frees in 7 days was deferred to 10:00, and the
    broadcast stayed `sending` all night for nothing."""
    capped = await join(shop, phones, "capped")
    shop.clock.set(shop.clock.now().replace(hour=15))  # 18:00 in Moscow
    for n in range(3):  # three offers this evening
        await shop.outbox.enqueue(
            dedup_key=f"earlier-{n}",
            chat_id=shop.chats["capped"],
            member_id=capped,
            text=f"offer {n}",
            category="offer",
        )
        await shop.sender.drain()
        shop.clock.advance(timedelta(minutes=30))
    shop.clock.set(shop.clock.now().replace(hour=19))  # 22:00 in Moscow
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Night offer", control_percent=0), actor="api:crm"
    )
    done = await shop.run(broadcast)
    seen = await outcomes(shop, broadcast)
    assert seen[capped][0] == "skipped_cap", seen
    assert done.status == "done"


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("backend", ["sqlite"])  # words only
def test_the_longest_gift_line_fits_the_room_kept_for_it(language: str, backend: str) -> None:
    """GIFT_LINE_MAX is what Broadcasts.check keeps free under a text: the line
    marketing.offer adds, with the most points allowed and the longest month's name."""
    from datetime import UTC, datetime

    from bot.i18n import build_i18n
    from ledger.rules import Rules
    from marketing.broadcasts import Broadcast
    from marketing.offer import compose_offer

    rules = Rules()
    broadcast = Broadcast(
        **{
            **dict.fromkeys(Broadcast.__slots__),  # type: ignore[arg-type]
            "text": "Hi",
            "gift_points": rules.broadcasts.max_gift_points,
            "gift_days": 30,
        }
    )
    longest = 0
    for month in range(1, 13):
        now = datetime(2026, month, 1, 12, tzinfo=UTC) - timedelta(days=30)
        composed = compose_offer(
            broadcast,
            first_name="A",
            balance=0,
            timezone="Europe/Moscow",
            now=now,
            language=language,
            i18n=build_i18n(),
        )
        line = composed.text[len("Hi") :]
        longest = max(longest, len(line.encode("utf-16-le")) // 2)
    assert 40 < longest <= GIFT_LINE_MAX


async def test_a_broadcast_whose_first_messages_all_fail_is_paused_not_sent_to_everyone(
    shop: Shop, phones: Phones
) -> None:
    """A photo Telegram no longer knows (a file_id of another bot token) fails every message:
    after the first FAILING_AT_START failures, with none sent, the broadcast is paused for the
    marketer to see, and the rest wait."""
    shop.broadcasts = Broadcasts(shop.ledger, shop.outbox, feed_window=10)
    for i in range(FAILING_AT_START + 10):
        await join(shop, phones, f"m{i}")
    broadcast, _ = await shop.broadcasts.create(
        Draft(filter=SegmentFilter(), text="Hi", photo="no-such-file", control_percent=0),
        actor="api:crm",
    )
    stopped = await shop.run(broadcast)
    assert stopped.status == "paused"
    progress = await shop.broadcasts.progress(stopped)
    assert progress.sent == 0
    assert FAILING_AT_START <= progress.failed < FAILING_AT_START + 10
    assert progress.pending > 0
    audit = [record.action for record in await AuditLog(shop.ledger.engine).recent(5)]
    assert audit[0] == "broadcast.pause"
    # Resumed, it gets as many tries again before it is paused again: here the rest fail too.
    again = await shop.run(await shop.broadcasts.resume(stopped, actor="tg:1"))
    assert again.status == "done"
    assert (await shop.broadcasts.progress(again)).failed == FAILING_AT_START + 10
