"""A member's aggregates do not grow with their history: the balance screen, the tier window and
spending read index ranges of what is usable, and a history page reads the member's stored
count of entries instead of counting them. What a member sees stays as it was."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.dataset import build_dataset
from ledger import journal, operations, queries
from ledger.clock import ManualClock
from ledger.errors import InsufficientPoints, RedeemAboveLimit
from ledger.invariants import check_ledger
from ledger.rules import Rules
from ledger.service import LedgerService
from storage.fast import Fast
from storage.schema import entries, members
from tests.conftest import Phones

RUB = 100


async def _plan(conn: AsyncConnection, fast: Fast, params: dict[str, object]) -> str:
    compiled = fast.statement.compile(dialect=conn.dialect)
    defaults = compiled.construct_params(_check=False)
    names = list(compiled.positiontup or [])
    args = tuple(params.get(name, defaults.get(name)) for name in names)
    explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = (await conn.exec_driver_sql(explain + compiled.string, args)).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


async def test_the_balance_screen_spending_and_the_tier_window_read_indexes_of_what_counts(
    engine: AsyncEngine, rules: Rules
) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    await build_dataset(engine, 2_000, seed=3, now=now, rules=rules)
    if engine.dialect.name == "postgresql":  # as autovacuum would, after the bulk load
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE lots, purchases"))
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # PostgreSQL's choice depends on its estimates, which on 2,000 members may favour
            # a bitmap of ix_lots_member_open (bench.aggregates shows what it picks on the
            # generated datasets): asked here whether the index can serve each query.
            await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        heaviest = (
            await conn.execute(
                text("SELECT member_id FROM lots GROUP BY member_id ORDER BY COUNT(*) DESC")
            )
        ).scalar()

        def at(moment: datetime) -> object:  # as the driver takes a UTCDateTime
            naive = moment.replace(tzinfo=None)
            if conn.dialect.name == "sqlite":
                return naive.isoformat(sep=" ", timespec="microseconds")
            return naive

        params = {
            "member_id": heaviest,
            "now": at(now),
            "since": at(now - timedelta(days=365)),
            "day_end": at(now + timedelta(days=1)),
        }
        usable = {
            "due lots": journal._DUE_LOTS,
            "open lots": journal._OPEN_LOTS,
            "nearest burn": queries._BURNS,
            "overdue": Fast(operations.OVERDUE_SELECT),
        }
        for name, statement in usable.items():
            plan = await _plan(conn, statement, params)
            assert "ix_lots_member_usable" in plan, (name, plan)
        if conn.dialect.name == "sqlite":
            # Lots that burn in the coming day are mostly unspent: PostgreSQL may as well read
            # them through ix_lots_member_open, and does at this size.
            plan = await _plan(conn, queries._BURNING_BEFORE, params)
            assert "ix_lots_member_usable" in plan, plan
        plan = await _plan(conn, Fast(journal.SPEND_SINCE), params)
        assert "ix_purchases_member_spend" in plan, plan
        if conn.dialect.name == "sqlite":  # PostgreSQL's depends on the visibility map
            assert "COVERING INDEX" in plan, plan


async def _journal(ledger: LedgerService, member_id: int) -> list[int]:
    async with ledger.engine.connect() as conn:
        rows = await conn.execute(
            select(entries.c.id).where(entries.c.member_id == member_id).order_by(entries.c.id)
        )
        return [row.id for row in rows]


async def test_every_history_page_shows_the_journal_newest_first_with_page_x_of_y(
    ledger: LedgerService, phones: Phones
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id
    for i in range(22):
        await ledger.purchase(
            receipt_id=f"R-{i}",
            member_id=member_id,
            amount_kopecks=300 * RUB,
            redeem_points=5 if i % 3 == 2 else 0,
        )
    newest_first = (await _journal(ledger, member_id))[::-1]
    assert len(newest_first) >= 30
    for size in (1, 3, 7, 10, 50):
        pages = -(-len(newest_first) // size)
        shown: list[int] = []
        for page in range(pages):
            view = await ledger.history(member_id, page=page, page_size=size)
            assert (view.page, view.pages, view.total) == (page, pages, len(newest_first))
            shown += [entry.entry_id for entry in view.entries]
        assert shown == newest_first, size
        past_the_end = await ledger.history(member_id, page=pages + 5, page_size=size)
        assert past_the_end.page == pages - 1
        assert [e.entry_id for e in past_the_end.entries] == newest_first[(pages - 1) * size :]
    nobody = await ledger.history(10**9)
    assert (nobody.entries, nobody.page, nobody.pages, nobody.total) == ((), 0, 1, 0)


async def _stored_counts(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(members.c.id, members.c.entries_count))
        return {row.id: row.entries_count for row in rows}


async def test_concurrent_operations_of_every_kind_keep_the_count_of_entries_exact(
    ledger: LedgerService, phones: Phones, clock: ManualClock
) -> None:
    member_id = (await ledger.register_member(phones.next())).member.member_id
    other = (await ledger.register_member(phones.next())).member.member_id
    bonus = await ledger.adjust(member_id=member_id, points=500, reason="seed", actor="s0")
    for i in range(6):
        await ledger.purchase(receipt_id=f"P-{i}", member_id=member_id, amount_kopecks=900 * RUB)

    async def operation(i: int) -> None:
        try:
            match i % 6:
                case 0:
                    await ledger.purchase(
                        receipt_id=f"C-{i}", member_id=member_id, amount_kopecks=400 * RUB
                    )
                case 1:
                    await ledger.purchase(
                        receipt_id=f"C-{i}",
                        member_id=member_id,
                        amount_kopecks=400 * RUB,
                        redeem_points=20,
                    )
                case 2:
                    await ledger.refund(
                        refund_id=f"F-{i}", receipt_id=f"P-{i // 6}", amount_kopecks=100 * RUB
                    )
                case 3:
                    await ledger.adjust(member_id=member_id, points=-7, reason="x", actor="s1")
                case 4:
                    await ledger.purchase(
                        receipt_id=f"C-{i}", member_id=other, amount_kopecks=200 * RUB
                    )
                case _:
                    await ledger.adjust(member_id=member_id, points=3, reason="y", actor="s2")
        except (InsufficientPoints, RedeemAboveLimit):
            pass

    await asyncio.gather(
        *(operation(i) for i in range(36)),
        ledger.reverse_entry(entry_id=bonus.entry_id, reason="wrong", actor="s3"),
    )
    clock.advance(timedelta(days=ledger.rules.points_lifetime_days + 1))
    await asyncio.gather(
        ledger.expire_due(),
        ledger.purchase(receipt_id="late", member_id=member_id, amount_kopecks=100 * RUB),
    )
    assert await check_ledger(ledger.engine) == []
    counts = await _stored_counts(ledger.engine)
    for who in (member_id, other):
        journal_entries = await _journal(ledger, who)
        assert counts[who] == len(journal_entries) > 5
        assert (await ledger.history(who)).total == len(journal_entries)
