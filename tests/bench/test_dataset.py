"""bench.dataset: the generated ledger adds up, looks like production, and `ledger check`
stays small on it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import TABLES, build_dataset, generate_blocks
from ledger import policy
from ledger.invariants import check_ledger
from ledger.rules import Rules
from storage.schema import entries, lots, members, operations, purchases
from tests.conftest import ROOT

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_a_generated_dataset_passes_ledger_check_and_has_production_spread(
    engine: AsyncEngine, rules: Rules
) -> None:
    summary = await build_dataset(engine, 2_000, seed=3, now=NOW, rules=rules)
    assert summary.members == 2_000

    assert await check_ledger(engine) == []
    async with engine.connect() as conn:
        for name, table, _ in TABLES:  # every foreign key points at a row that is there
            for key in table.foreign_keys:
                parent = key.column.table.alias("parent")
                target = parent.c[key.column.name]
                orphans = (
                    await conn.execute(
                        select(func.count())
                        .select_from(table.outerjoin(parent, key.parent == target))
                        .where(key.parent.is_not(None), target.is_(None))
                    )
                ).scalar_one()
                assert orphans == 0, f"{name}.{key.parent.name} points at nothing"
        lots_per_member = (
            await conn.execute(select(lots.c.member_id, func.count()).group_by(lots.c.member_id))
        ).all()
        bought = sorted(
            count
            for _, count in (
                await conn.execute(
                    select(purchases.c.member_id, func.count()).group_by(purchases.c.member_id)
                )
            ).all()
        )
        by_kind = select(entries.c.kind, func.count()).group_by(entries.c.kind)
        kinds: Counter[str] = Counter(dict((await conn.execute(by_kind)).all()))
        people = (await conn.execute(select(members))).all()
        since = NOW - timedelta(days=rules.tier_window_days)
        spend = dict(
            (
                await conn.execute(
                    select(purchases.c.member_id, func.sum(purchases.c.qualifying))
                    .where(purchases.c.created_at > since)
                    .group_by(purchases.c.member_id)
                )
            ).all()
        )
        keys = (await conn.execute(select(operations.c.key, operations.c.kind))).all()

    # A long tail: most members a few purchases, some dozens, one with thousands of lots.
    assert max(count for _, count in lots_per_member) >= 1_000
    assert bought[len(bought) // 2] <= 10
    assert sum(1 for count in bought if 20 <= count <= 100) >= 20
    assert {"welcome", "earn", "redeem", "refund_reverse", "refund_return", "referral",
            "expiry"} <= set(kinds)  # fmt: skip
    assert kinds["debt_payoff"] > 0  # refunds of spent points left debts, paid off later
    # Chats for most, some unreachable, some opted out of each category, two languages.
    with_chat = [m for m in people if m.telegram_id is not None]
    assert 0.8 < len(with_chat) / len(people) < 0.95
    assert 0 < sum(m.unreachable for m in with_chat) < len(with_chat) / 10
    for flag in ("notify_reminders", "notify_tier", "notify_offers"):
        assert 0 < sum(not getattr(m, flag) for m in people) < len(people) / 4
    assert {m.language for m in people} == {"ru", "en"}
    assert sum(m.birthday is not None for m in people) > 300
    assert any(m.username and m.username != m.username.lower() for m in people)
    # Tiers as the 365-day qualifying spend gives them, and all three of them reached.
    for member in people:
        expected = policy.tier_for_spend(rules, int(spend.get(member.id, 0))).name
        assert member.tier == expected, member.id
    assert {m.tier for m in people} == {tier.name for tier in rules.tiers}
    # Keys as the ledger writes them.
    shapes = Counter((kind, key.split(":", 1)[0]) for key, kind in keys)
    assert set(shapes) == {
        ("welcome", "welcome"),
        ("purchase", "purchase"),
        ("refund", "refund"),
    }


async def test_held_points_are_generated_pending_and_activated_when_the_rules_hold_them(
    engine: AsyncEngine, rules: Rules
) -> None:
    holding = rules.model_copy(update={"hold_days": 14})
    await build_dataset(engine, 300, seed=5, now=NOW, rules=holding)

    assert await check_ledger(engine) == []
    async with engine.connect() as conn:
        statuses: dict[str, int] = dict(
            (await conn.execute(select(lots.c.status, func.count()).group_by(lots.c.status))).all()
        )
        activations = (
            await conn.execute(select(func.count()).where(entries.c.kind == "activation"))
        ).scalar_one()
        pending = (await conn.execute(select(func.sum(members.c.pending)))).scalar_one()
    assert statuses["pending"] > 0 and statuses["active"] > 0
    assert activations > 0 and pending > 0


def test_the_same_seed_gives_the_same_rows_and_another_seed_others() -> None:
    def rows(seed: int) -> list[object]:
        found: list[object] = []
        for block, _ in generate_blocks(300, seed=seed, now=NOW, rules=Rules(), key="ab" * 32):
            found.extend((block.members, block.entries, block.lots, block.spends))
        return found

    assert rows(1) == rows(1)
    assert rows(1) != rows(2)


# ------------------------------------------------------------ ledger check at 100,000 members

CHECK_MEMORY = """
import asyncio, json, resource, sys
from sqlalchemy import text
from ledger.invariants import check_ledger
from storage.engine import create_engine

async def main():
    engine = create_engine(sys.argv[1])
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1 FROM members LIMIT 1"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = [str(v) for v in await check_ledger(engine)]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await engine.dispose()
    print(json.dumps({"found": found, "growth_kb": after - before}))

asyncio.run(main())
"""


@pytest.mark.slow
async def test_ledger_check_finds_a_planted_mismatch_among_100000_members_in_bounded_memory(
    engine: AsyncEngine, database_url: str, rules: Rules
) -> None:
    await build_dataset(engine, 100_000, seed=14, now=NOW, rules=rules)
    async with engine.begin() as conn:
        await conn.execute(
            update(members).where(members.c.id == 54_321).values(balance=members.c.balance + 7)
        )
        lot = (
            await conn.execute(
                select(lots.c.id, lots.c.member_id)
                .where(lots.c.member_id == 777, lots.c.remaining > 0)
                .limit(1)
            )
        ).one()
        await conn.execute(
            update(lots).where(lots.c.id == lot.id).values(remaining=lots.c.remaining - 1)
        )
    await engine.dispose()  # nothing of this process's connections in the measurement

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHECK_MEMORY, database_url],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    report = json.loads(done.stdout)

    rules_broken = sorted(": ".join(line.split(": ")[:2]) for line in report["found"])
    assert rules_broken == [
        "member 54321: balance != active lots",
        "member 54321: balance != journal",
        "member 777: balance != active lots",
        "member 777: lot does not match its spends",
    ]
    # Loading every member and lot took 765 MB at 200,000 members: bounded means a few MB.
    assert report["growth_kb"] < 60 * 1024, report["growth_kb"]
