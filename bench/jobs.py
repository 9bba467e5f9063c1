"""Every scheduled job once, as production runs it, on the generated dataset: each job's time
against its interval (no job may take longer), and the daily tier pass against its target.

Run from the repository root (BENCH_DATA_DIR: where the generated SQLite templates live):

    .venv/bin/python -m bench.jobs                      # 200,000 members, both databases
    .venv/bin/python -m bench.jobs --quick              # 20,000 members
    .venv/bin/python -m bench.jobs --only postgresql --old

For each database: a fresh copy of the generated dataset (`bench.prepared.prepared`), the
services built as the bot builds them (`bot.build.build_services`: the real clock, the rules
file, the writer thread), and the jobs as `bot.run` makes them (`scheduler.jobs.Jobs`, run by
name with `Jobs.run`, as the leader's scheduler does, job log included). Each job of
`Jobs.all()` runs once in the catch-up order of a process that starts leading, then the
scheduler's sweep of expired confirmations (every second). Targets: every job under its
interval (`JOB_INTERVALS`; a daily job under a day); the daily tier pass (`tiers`) under 10 s.
Then the burn warnings once more (a run half an hour later: everything is queued already), the
tier pass once more (a second run in a day: nothing left to change), the statement
that finds the members whose tier changes on its own, and the plan of the minute's tier-news
query (it must name the partial index `ix_members_tier_news`).

--rules-change pass|news then halves the tier thresholds (a shop editing rules.toml) and times
the pass that follows (news: and the tier news it leaves, a transaction per member told).

--old also times, on the same copy, the tier pass this one replaced (every active member who
ever bought locked and their spend read, 500 per transaction; kept here as it was) and the
tier-news query without its index: the figures before the change.

Exits 1 on a missed target only with --strict.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from aiogram import Bot
from sqlalchemy import Connection, select, text, update

from bench.common import Figure, machine_info, report
from bench.prepared import BACKENDS, discard, prepared
from bot.build import Services, build_services, close_services
from bot.settings import Settings
from ledger.calendar import tier_change
from ledger.clock import SystemClock
from ledger.service import LedgerService
from ledger.views import TierChange
from scheduler.due import TIER_NEWS_DUE
from scheduler.jobs import DAILY_JOBS, JOB_INTERVALS, Jobs, new_runner_id
from storage.schema import members
from usecases.sales import expire_due

TIER_PASS_TARGET_S = 10.0
DAY_S = 24 * 3600
SWEEP_INTERVAL_S = 1.0  # bot.run: the confirmations sweep
OLD_BATCH = 500


async def old_recompute_tiers(ledger: LedgerService) -> list[TierChange]:
    """The tier pass before the set-based one (git db44d25, LedgerService.recompute_tiers):
    every active member who ever bought, a lock and a spend query each, 500 per transaction."""
    now = ledger.clock.now()
    async with ledger.reader.connect() as conn:
        ids = (
            (
                await conn.execute(
                    select(members.c.id).where(
                        members.c.status == "active", members.c.last_purchase_at.is_not(None)
                    )
                )
            )
            .scalars()
            .all()
        )

    def batch(conn: Connection, member_ids: Sequence[int]) -> list[TierChange]:
        changes = []
        for member_id in sorted(member_ids):
            locked = ledger.journal.lock_member(conn, member_id)
            change = tier_change(conn, ledger.rules, member_id, locked.tier, now)
            if change:
                conn.execute(
                    update(members).where(members.c.id == member_id).values(tier=change.new_tier)
                )
                changes.append(change)
        return changes

    changes: list[TierChange] = []
    for start in range(0, len(ids), OLD_BATCH):
        part = ids[start : start + OLD_BATCH]
        changes.extend(await ledger.db.write(functools.partial(batch, member_ids=part), long=True))
    return changes


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


def figure(name: str, seconds: float, limit: float | None = None) -> Figure:
    """A time in s (ms under a second), with `limit` seconds as its target if given."""
    scale, unit = (1.0, "s") if seconds >= 1 else (1000.0, "ms")
    if limit is None:
        return Figure("jobs", name, seconds * scale, unit)
    return Figure(
        "jobs", name, seconds * scale, unit, target=f"< {limit:,.0f} s", met=seconds < limit
    )


def interval_of(name: str) -> int:
    return JOB_INTERVALS.get(name) or (DAY_S if name in DAILY_JOBS else 0)


async def news_plan(services: Services) -> str:
    engine = services.engine
    sql = str(TIER_NEWS_DUE.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    async with engine.connect() as conn:
        rows = (await conn.execute(text(explain + sql))).all()
    return " | ".join(" ".join(str(value) for value in row) for row in rows)


async def run_backend(
    backend: str, members_count: int, old: bool, rules_change: str | None
) -> list[Figure]:
    load = os.getloadavg()[0]
    url = await prepared(backend, members_count, quiet=True)
    where = f"{backend}, {members_count:,} members"
    figures: list[Figure] = []
    print(f"\n{where}: a fresh copy of the dataset; load average {load:.2f}", flush=True)
    services = await build_services(
        Settings(database_url=url, secret_key="bench-jobs-secret-key-0123456789"), SystemClock()
    )
    bot = Bot(token="42:bench-jobs-never-sends")  # the sweep's: nothing is due to send
    try:
        services.ledger.on_notice = services.outbox.wakeup.set  # as bot.run does
        jobs = Jobs(services.ledger, services.notifier, new_runner_id())
        for name in jobs.all():
            seconds, result = await timed(functools.partial(jobs.run, name))
            limit = interval_of(name)
            print(f"  {name}: {seconds:.2f} s, {result}", flush=True)
            figures.append(figure(f"job {name} ({where}; runs every {limit:,} s)", seconds, limit))
            if name == "tiers":
                changed = result["recomputed"]
                label = f"daily tier pass ({where}; {changed} changed)"
                figures.append(figure(label, seconds, TIER_PASS_TARGET_S))
        sales, i18n = services.sales, services.i18n
        seconds, expired = await timed(lambda: expire_due(sales, bot, i18n))
        print(f"  sweep confirmations: {seconds * 1000:.1f} ms, {expired} expired", flush=True)
        label = f"sweep confirmations ({where}; runs every {SWEEP_INTERVAL_S:.0f} s)"
        figures.append(figure(label, seconds, SWEEP_INTERVAL_S))
        seconds, warned = await timed(jobs.warn)
        print(f"  warn again (all queued already): {seconds:.2f} s, {warned}", flush=True)
        figures.append(figure(f"job warn again, everything queued already ({where})", seconds))
        seconds, again = await timed(jobs.tiers)
        print(f"  tiers again (steady state): {seconds:.2f} s, {again}", flush=True)
        figures.append(figure(f"daily tier pass again, nothing to change ({where})", seconds))
        ledger = services.ledger
        seconds, due = await timed(lambda: ledger.tiers_due(ledger.clock.now()))
        print(f"  its statement alone: {seconds:.2f} s, {len(due)} due", flush=True)
        figures.append(figure(f"tier pass statement alone ({where})", seconds))
        plan = await news_plan(services)
        print(f"  tier news plan: {plan}", flush=True)
        if old:
            figures.extend(await run_old(services, where))
        if rules_change:
            figures.extend(await run_rules_change(services, where, rules_change == "news"))
    finally:
        await bot.session.close()
        await close_services(services)
        await discard(url)
    return figures


async def run_old(services: Services, where: str) -> list[Figure]:
    """The figures before the change, on the same copy (already up to date: the old pass's
    cost is its per-member work, not the changes it finds)."""
    ledger = services.ledger
    seconds, changes = await timed(lambda: old_recompute_tiers(ledger))
    print(f"  old tier pass (git db44d25): {seconds:.2f} s, {len(changes)} changed", flush=True)
    figures = [
        figure(f"old tier pass, per member (git db44d25; {where}; ran every 60 s)", seconds, 60)
    ]
    jobs = Jobs(ledger, services.notifier, new_runner_id())
    with_index, _ = await timed(jobs.tier_news)
    async with services.engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_members_tier_news"))
    without_index, _ = await timed(jobs.tier_news)
    print(
        f"  tier news: {with_index * 1000:.1f} ms with the partial index, "
        f"{without_index * 1000:.1f} ms without",
        flush=True,
    )
    figures.append(figure(f"job tier_news with its partial index ({where})", with_index))
    figures.append(figure(f"job tier_news without it, as before ({where})", without_index))
    return figures


async def run_rules_change(services: Services, where: str, news: bool) -> list[Figure]:
    """The shop halves the tier thresholds and restarts: the first pass raises many members,
    and (`news`) the next minute's tier news tells them."""
    rules = services.rules
    halved = tuple(
        tier.model_copy(update={"threshold_rub": tier.threshold_rub // 2}) for tier in rules.tiers
    )
    changed = LedgerService(
        services.engine,
        rules.model_copy(update={"tiers": halved}),
        services.clock,
        services.ledger.db,
    )
    jobs = Jobs(changed, services.notifier, new_runner_id())
    seconds, changes = await timed(changed.recompute_tiers)
    print(f"  tier pass after halved thresholds: {seconds:.2f} s, {len(changes)} changed")
    label = f"daily tier pass, thresholds halved ({where}; {len(changes):,} changed)"
    figures = [figure(label, seconds)]
    if news:
        seconds, told = await timed(jobs.tier_news)
        print(f"  tier news after it: {seconds:.2f} s, {told}", flush=True)
        label = f"job tier_news after it ({where}; {told['told']:,} told)"
        figures.append(figure(label, seconds, interval_of("tier_news")))
    return figures


async def main(args: argparse.Namespace) -> int:
    wanted = [args.only] if args.only else list(BACKENDS)
    members_count = 20_000 if args.quick else args.members
    for line in await machine_info(with_postgres="postgresql" in wanted):
        print(line)
    print(f"started {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    figures: list[Figure] = []
    for backend in wanted:
        figures.extend(await run_backend(backend, members_count, args.old, args.rules_change))
    print()
    report(figures)
    missed = [figure for figure in figures if figure.met is False]
    return 1 if missed and args.strict else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 members")
    parser.add_argument("--only", choices=BACKENDS, help="one database")
    parser.add_argument("--old", action="store_true", help="also the tier pass before the change")
    parser.add_argument(
        "--rules-change",
        choices=("pass", "news"),
        help="also the pass after the tier thresholds are halved (news: and the tier news then)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
