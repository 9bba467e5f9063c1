"""Tiers: a purchase or a refund sets its member's tier in its own transaction; the daily pass
finds, in one statement over all members, those whose spend left the window (or whose
thresholds changed) and changes only them, never over a purchase that came in meanwhile; the
minute's tier news reads a partial index. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import build_dataset
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.rules import Rules, Tier
from ledger.service import LedgerService
from ledger.views import TierChange
from messaging.sender import Sender
from scheduler.due import TIER_NEWS_DUE
from scheduler.jobs import SchedulerRunner
from storage.schema import members, purchases
from tests.conftest import Phones
from tests.scheduler.test_jobs import make_jobs, queued

RUB = 100
DAY = timedelta(days=1)


async def join(ledger: LedgerService, phones: Phones, telegram_id: int | None = None) -> int:
    registration = await ledger.register_member(
        phones.next(), telegram_id=telegram_id, language="en"
    )
    return registration.member.member_id


async def stored_tiers(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(members.c.id, members.c.tier))).all()
    return {row.id: row.tier for row in rows}


def with_tiers(rules: Rules, silver_rub: int, gold_rub: int) -> Rules:
    return rules.model_copy(
        update={
            "tiers": (
                Tier(name="base", threshold_rub=0, rub_per_point=50),
                Tier(name="silver", threshold_rub=silver_rub, rub_per_point=40),
                Tier(name="gold", threshold_rub=gold_rub, rub_per_point=30),
            )
        }
    )


async def test_a_purchase_raises_the_tier_and_a_refund_lowers_it_without_any_job(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = await join(ledger, phones)
    bought = await ledger.purchase(
        receipt_id="R-1", member_id=member_id, amount_kopecks=10_500 * RUB
    )
    assert bought.tier == "silver"
    assert (await ledger.get_member(member_id)).tier == "silver"  # stored by the purchase
    refunded = await ledger.refund(refund_id="RF-1", receipt_id="R-1", amount_kopecks=600 * RUB)
    assert refunded.tier == "base"
    assert (await ledger.get_member(member_id)).tier == "base"  # stored by the refund
    assert await check_ledger(ledger.engine) == []


async def test_the_daily_pass_changes_exactly_the_members_whose_spend_left_the_window(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    ids = {name: await join(ledger, phones) for name in ("ann", "ben", "cat", "dan", "eve")}
    await ledger.purchase(receipt_id="A-1", member_id=ids["ann"], amount_kopecks=12_000 * RUB)
    await ledger.purchase(receipt_id="C-1", member_id=ids["cat"], amount_kopecks=35_000 * RUB)
    await ledger.purchase(receipt_id="E-1", member_id=ids["eve"], amount_kopecks=5_000 * RUB)
    clock.advance(100 * DAY)
    await ledger.purchase(receipt_id="B-1", member_id=ids["ben"], amount_kopecks=12_000 * RUB)
    clock.advance(100 * DAY)
    await ledger.purchase(receipt_id="C-2", member_id=ids["cat"], amount_kopecks=15_000 * RUB)
    before = await stored_tiers(ledger.engine)
    assert [before[ids[n]] for n in ids] == ["silver", "silver", "gold", "base", "base"]
    assert await ledger.recompute_tiers() == []  # nothing has left the window yet

    clock.advance(166 * DAY)  # day 366: the purchases of day 0 have left it
    changes = await ledger.recompute_tiers()
    assert changes == [
        TierChange(member_id=ids["ann"], old_tier="silver", new_tier="base"),
        TierChange(member_id=ids["cat"], old_tier="gold", new_tier="silver"),  # 15,000 left
    ]
    after = await stored_tiers(ledger.engine)
    assert after == {**before, ids["ann"]: "base", ids["cat"]: "silver"}
    assert await ledger.recompute_tiers() == []  # done once

    clock.advance(100 * DAY)  # day 466: Ben's purchase has left as well
    assert await ledger.recompute_tiers() == [
        TierChange(member_id=ids["ben"], old_tier="silver", new_tier="base")
    ]


async def test_the_daily_pass_follows_changed_thresholds_and_tells_who_went_up(
    ledger: LedgerService, phones: Phones, clock: ManualClock, rules: Rules
) -> None:
    low = await join(ledger, phones, telegram_id=501)  # 6,000: base, silver under the new rules
    mid = await join(ledger, phones, telegram_id=502)  # 12,000: silver under both
    top = await join(ledger, phones, telegram_id=503)  # 40,000: gold, silver under the new rules
    never = await join(ledger, phones, telegram_id=504)  # no purchase: base under both
    for member_id, rub in ((low, 6_000), (mid, 12_000), (top, 40_000)):
        await ledger.purchase(
            receipt_id=f"R-{member_id}", member_id=member_id, amount_kopecks=rub * RUB
        )
    await make_jobs(ledger).tier_news()  # the purchases' own news: Silver for mid, Gold for top
    told_before = len(await queued(ledger))

    # The shop edits rules.toml and restarts: the process's first run of the pass applies it.
    changed = LedgerService(ledger.engine, with_tiers(rules, 5_000, 50_000), clock)
    try:
        result = await make_jobs(changed).tiers()
    finally:
        changed.close()
    assert result == {"recomputed": 2, "told": 1}
    tiers = await stored_tiers(ledger.engine)
    assert (tiers[low], tiers[mid], tiers[top], tiers[never]) == (
        "silver",
        "silver",
        "silver",
        "base",
    )
    news = await queued(ledger)
    assert [text for _, text in news[told_before:]] == [
        "🎉 You've reached the Silver tier! From now on you earn 1 point for every 40 ₽."
    ]


async def test_the_daily_pass_keeps_the_tier_of_a_purchase_committed_after_its_statement(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's statement says 'silver -> base'; before it writes, the member buys again and
    the purchase makes them silver anew: the pass must leave that tier alone."""
    buyer = await join(ledger, phones)
    idle = await join(ledger, phones)
    for member_id in (buyer, idle):
        await ledger.purchase(
            receipt_id=f"R-{member_id}", member_id=member_id, amount_kopecks=11_000 * RUB
        )
    clock.advance(366 * DAY)
    statement = ledger.tiers_due
    seen: list[TierChange] = []

    async def then_a_purchase(now: datetime) -> list[TierChange]:
        due = await statement(now)
        seen.extend(due)
        again = await ledger.purchase(
            receipt_id="R-again", member_id=buyer, amount_kopecks=10_000 * RUB
        )
        assert again.tier == "silver"
        return due

    monkeypatch.setattr(ledger, "tiers_due", then_a_purchase)
    changes = await ledger.recompute_tiers()
    assert TierChange(member_id=buyer, old_tier="silver", new_tier="base") in seen
    assert changes == [TierChange(member_id=idle, old_tier="silver", new_tier="base")]
    assert (await ledger.get_member(buyer)).tier == "silver"
    assert (await ledger.get_member(idle)).tier == "base"
    assert await check_ledger(ledger.engine) == []


async def test_the_daily_pass_reads_all_members_at_once_and_writes_only_those_that_change(
    ledger: LedgerService, phones: Phones, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a loop over all members: one statement reads them all; the members whose tier
    changes are locked, read again and written a batch at a time, in a few statements."""
    ids = []
    for index in range(40):
        ids.append(await join(ledger, phones))
        await ledger.purchase(
            receipt_id=f"R-{index}", member_id=ids[-1], amount_kopecks=(index + 1) * 1_000 * RUB
        )
    clock.advance(200 * DAY)
    # Three buy again: 1,000 (member 2: base anyway), 10,000 (member 17: silver again),
    # 30,000 (member 33: gold again) in the window of day 400.
    for index, rub in ((2, 1_000), (17, 10_000), (33, 30_000)):
        await ledger.purchase(
            receipt_id=f"S-{index}", member_id=ids[index], amount_kopecks=rub * RUB
        )
    per_member: list[int] = []  # the one-member lock and spend read of the pass before

    def one_member_lock(conn: Any, member_id: int) -> Any:
        per_member.append(member_id)
        raise AssertionError("the daily pass locks no member one at a time")

    monkeypatch.setattr(ledger.journal, "lock_member", one_member_lock)
    statements: list[tuple[str, Any]] = []

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        statements.append((statement, parameters))

    # Every engine: on SQLite the ledger writes through engines of its own (storage.transactions).
    event.listen(Engine, "before_cursor_execute", count)
    try:
        assert await ledger.recompute_tiers() == []  # 200 days on: nothing has left the window
        assert len(statements) == 1
        statements.clear()
        clock.advance(200 * DAY)  # the first purchases have left it; the second ones not
        changes = await ledger.recompute_tiers()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    # Members 10-40 were silver or gold by their first purchase alone, now gone: base,
    # except 17 and 33, whose second purchase keeps their tier. Nobody else was written.
    changed = [member_id for member_id in ids[9:] if member_id not in (ids[17], ids[33])]
    assert [change.member_id for change in changes] == changed
    assert {change.new_tier for change in changes} == {"base"}
    assert per_member == []
    # All, then the batch locked (PostgreSQL) and read again, then one UPDATE for the batch.
    assert len(statements) == (4 if ledger.engine.dialect.name == "postgresql" else 3)
    written = [params for sql, params in statements if sql.lstrip().upper().startswith("UPDATE")]
    assert len(written) == 1
    assert (
        sorted(row[-1] if isinstance(row, tuple) else row["member_id"] for row in written[0])
        == changed
    )


async def test_tier_news_reads_a_partial_index_not_every_member(
    engine: AsyncEngine, rules: Rules
) -> None:
    await build_dataset(engine, 2_000, seed=5, now=datetime(2026, 12, 1, tzinfo=UTC), rules=rules)
    sql = str(TIER_NEWS_DUE.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # 2,000 rows: a scan is cheaper here, so PostgreSQL is asked whether the index can
            # serve the query at all (at 200,000 members it takes the index by itself: bench.jobs).
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            rows = (await conn.execute(text("EXPLAIN " + sql))).all()
        else:
            rows = (await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
    plan = "\n".join(" ".join(str(value) for value in row) for row in rows)
    assert "ix_members_tier_news" in plan, plan


class _Follower:
    """A leadership that never leads: the runner schedules its jobs and runs none."""

    is_leader = False

    async def try_lead(self) -> bool:
        return False

    async def resign(self) -> None:
        return None


async def test_the_tier_pass_runs_daily_after_midnight_in_the_shops_zone_and_news_every_minute(
    ledger: LedgerService,
) -> None:
    sender = Sender(make_jobs(ledger).notifier.outbox, bot=None, rules=ledger.rules.messages)  # type: ignore[arg-type]
    runner = SchedulerRunner(make_jobs(ledger), sender, _Follower())  # type: ignore[arg-type]
    await runner.start()
    try:
        daily = runner.scheduler.get_job("tiers")
        news = runner.scheduler.get_job("tier_news")
        assert daily is not None and news is not None
        assert isinstance(daily.trigger, CronTrigger) and isinstance(news.trigger, IntervalTrigger)
        assert news.trigger.interval == timedelta(seconds=60)
        zone = runner.zone
        assert str(zone) == ledger.rules.messages.default_timezone
        start = datetime(2026, 12, 5, 12, 0, tzinfo=zone)
        first = daily.trigger.get_next_fire_time(None, start)
        assert first is not None
        second = daily.trigger.get_next_fire_time(first, first + timedelta(seconds=1))
        assert first == datetime(2026, 12, 6, 0, 5, tzinfo=zone)
        assert second == datetime(2026, 12, 7, 0, 5, tzinfo=zone)
        assert first.timetz() == time(0, 5, tzinfo=zone)
    finally:
        await runner.stop()


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has one writer at a time
async def test_the_daily_pass_waits_for_a_purchase_in_flight_and_keeps_its_tier(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    """A purchase holds its member's lock while the pass's statement runs: the pass waits for
    it and reads the spend again after, with the purchase in it."""
    member_id = await join(ledger, phones)
    await ledger.purchase(receipt_id="R-1", member_id=member_id, amount_kopecks=11_000 * RUB)
    clock.advance(366 * DAY)  # R-1 has left the window: due to fall to base
    async with ledger.engine.connect() as purchase:
        # What a purchase does in its transaction: lock, add its row, set the tier it reached.
        await purchase.execute(
            select(members.c.id).where(members.c.id == member_id).with_for_update()
        )
        await purchase.execute(
            purchases.insert().values(
                receipt_id="R-2",
                member_id=member_id,
                amount=12_000 * RUB,
                redeemed=0,
                accrued=0,
                qualifying=12_000 * RUB,
                created_at=clock.now(),
            )
        )
        await purchase.execute(
            update(members).where(members.c.id == member_id).values(tier="silver")
        )
        passing = asyncio.create_task(ledger.recompute_tiers())
        await asyncio.sleep(0.5)
        assert not passing.done()  # waiting for the member's lock
        await purchase.commit()
    assert await asyncio.wait_for(passing, 10) == []
    assert (await ledger.get_member(member_id)).tier == "silver"


async def test_tier_news_is_written_a_batch_to_a_transaction_of_the_ledgers(
    ledger: LedgerService, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The news and the tiers it tells are written with the ledger's transactions (on SQLite
    not through aiosqlite, whose write lock held across thread hops made purchases wait), a
    batch to a transaction."""
    from scheduler import jobs as jobs_module

    for i in range(3):
        member = (
            await ledger.register_member(phones.next(), telegram_id=880 + i, language="en")
        ).member
        await ledger.purchase(
            receipt_id=f"N-{i}", member_id=member.member_id, amount_kopecks=10_000 * RUB
        )
    jobs = make_jobs(ledger)
    monkeypatch.setattr(jobs_module, "NEWS_BATCH", 2)
    write = ledger.db.write
    writes: list[bool] = []

    async def counting(work: Any, *, long: bool = False) -> Any:
        writes.append(long)
        return await write(work, long=long)

    monkeypatch.setattr(ledger.db, "write", counting)
    through_aiosqlite: list[object] = []

    def commit(conn: object) -> None:
        through_aiosqlite.append(conn)

    sqlite = ledger.engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(ledger.engine.sync_engine, "commit", commit)
    try:
        assert await jobs.tier_news() == {"told": 3}
        assert await jobs.tier_news() == {"told": 0}
    finally:
        if sqlite:
            event.remove(ledger.engine.sync_engine, "commit", commit)
    assert writes == [True, True]  # 2 + 1 news; the second run finds none
    assert through_aiosqlite == []
    news = [text for key, text in await queued(ledger) if key.startswith("tier:")]
    assert (
        news
        == ["🎉 You've reached the Silver tier! From now on you earn 1 point for every 40 ₽."] * 3
    )
