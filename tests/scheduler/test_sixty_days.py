"""Sixty days of a program's life in seconds: the real application, the emulator, a clock
moved six hours at a time (12:00, 18:00, 00:00, 06:00 in Moscow, so half the steps fall in quiet
hours), every job run at every step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.run import Application
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from storage.schema import outbox
from tests.conftest import ROOT
from tests.e2e.conftest import join, make_settings

pytestmark = pytest.mark.slow  # sixty days of the scheduler, day by day

MOSCOW = ZoneInfo("Europe/Moscow")
STEP = timedelta(hours=6)
DAYS = 60
RUB = 100


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    from tests.e2e.conftest import BOT_USERNAME, TOKEN

    emu = BotAPIEmulator()
    emu.add_bot(TOKEN, username=BOT_USERNAME)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def app(
    emulator: BotAPIEmulator, database_url: str, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Application]:
    rules = (
        (ROOT / "rules.toml")
        .read_text()
        .replace("points_lifetime_days = 180", "points_lifetime_days = 20")
    )
    (tmp_path / "rules.toml").write_text(rules)
    settings = make_settings(emulator, database_url, tmp_path).model_copy(
        update={"rules_file": tmp_path / "rules.toml"}
    )
    application = Application(settings, clock=clock)
    await application.start()
    yield application
    await application.stop()


async def _sent(app: Application) -> list[tuple[int | None, str, str, datetime]]:
    async with app.engine.connect() as conn:  # type: ignore[union-attr]
        rows = (
            await conn.execute(
                select(outbox.c.member_id, outbox.c.category, outbox.c.text, outbox.c.sent_at)
                .where(outbox.c.status == "sent")
                .order_by(outbox.c.sent_at)
            )
        ).all()
    return [(r.member_id, r.category, r.text, r.sent_at) for r in rows]


async def test_sixty_days_every_message_on_time_once_and_within_the_caps(
    emulator: BotAPIEmulator, app: Application, clock: ManualClock
) -> None:
    ledger = app.services.ledger  # type: ignore[union-attr]
    jobs, sender = app.jobs, app.sender
    assert jobs is not None and sender is not None and app.scheduler is not None
    # The test drives the jobs and the sender itself, step by step: the app's own timers and
    # sender loop would race it (a send in flight while the clock jumps six hours).
    await app.scheduler.stop()

    anna = emulator.user(7001, "Анна", language_code="ru")  # 100 welcome points burn on day 20
    await join(anna, "+79990007001")
    boris = emulator.user(7002, "Boris", language_code="en")  # opted out of reminders
    await join(boris, "+79990007002")
    chris = emulator.user(7003, "Chris", language_code="en")  # buys every day for ten days
    await join(chris, "+79990007003")
    members = {tg: await ledger.member_by_telegram(tg) for tg in (7001, 7002, 7003)}
    ids = {tg: m.member_id for tg, m in members.items() if m is not None}
    await ledger.update_profile(ids[7002], notify_reminders=False)
    joined = sum(len(user.messages) for user in (anna, boris, chris))

    start = clock.now()
    burn_day = (start + timedelta(days=20)).astimezone(MOSCOW).date()
    for step in range(DAYS * 24 // 6):
        clock.advance(STEP)
        now = clock.now()
        day = (now - start).days
        if step % 4 == 0 and 1 <= day <= 10:
            await ledger.purchase(
                receipt_id=f"C-{day}", member_id=ids[7003], amount_kopecks=1200 * RUB
            )
        await jobs.run_all()
        await sender.drain()

    sent = await _sent(app)
    capped = [
        (member, category, text, at)
        for member, category, text, at in sent
        if category != "transactional"
    ]

    # Nothing in quiet hours (21:00-10:00 Moscow time).
    for _, _, text, at in capped:
        local = at.astimezone(MOSCOW).time()
        assert time(10) <= local < time(21), f"{text!r} sent at {at.astimezone(MOSCOW)}"

    # No member ever gets more than 3 capped messages in any 7 days.
    for member_id in ids.values():
        times = sorted(at for member, _, _, at in capped if member == member_id)
        for i, first in enumerate(times):
            in_window = [t for t in times[i:] if t < first + timedelta(days=7)]
            assert len(in_window) <= 3, (member_id, in_window)

    # Anna: exactly one warning 7 days before and one 3 days before, right amount and date.
    anna_texts = [m.text or "" for m in anna.messages]
    warnings = [t for t in anna_texts if t.startswith("🔥")]
    assert warnings == [
        *["🔥 22 марта сгорят 100 баллов. Успейте потратить их — покажите карту на кассе."] * 2,
        "🔥 22 марта сгорело 100 баллов: закончился срок их действия. Баланс: 0 баллов.",
    ]
    anna_times = [
        at.astimezone(MOSCOW).date()
        for member, category, _, at in capped
        if member == ids[7001] and category == "reminder"
    ]
    assert anna_times == [burn_day - timedelta(days=7), burn_day - timedelta(days=3), burn_day]
    assert (await ledger.balance(ids[7001])).balance == 0  # burnt on day 20

    # Boris opted out: no reminders, each skip recorded.
    assert not any((m.text or "").startswith("🔥") for m in boris.messages)
    async with app.engine.connect() as conn:  # type: ignore[union-attr]
        skipped = (
            (
                await conn.execute(
                    select(outbox.c.status).where(
                        outbox.c.member_id == ids[7002], outbox.c.category == "reminder"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert skipped and set(skipped) == {"skipped_optout"}

    # Chris: ten burn dates in a row make the cap bind; tier news arrives exactly once.
    chris_texts = [m.text or "" for m in chris.messages]
    async with app.engine.connect() as conn:  # type: ignore[union-attr]
        outcomes = (
            await conn.execute(
                select(outbox.c.status, outbox.c.reason).where(
                    outbox.c.member_id == ids[7003], outbox.c.category == "reminder"
                )
            )
        ).all()
    assert any(
        status == "skipped_cap" and "weekly cap" in (reason or "") for status, reason in outcomes
    ), outcomes
    assert [t for t in chris_texts if "Silver tier" in t] == [
        "🎉 You've reached the Silver tier! From now on you earn 1 point for every 40 ₽."
    ]
    assert any(t.startswith("🔥") for t in chris_texts)

    # Every message the emulator got was recorded as sent once, and vice versa.
    delivered = sum(len(u.messages) for u in (anna, boris, chris)) - joined
    assert delivered == len(sent)
    assert await check_ledger(ledger.engine) == []
