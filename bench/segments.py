"""Segment preview on the generated dataset: each condition alone and in combination.

Run from the repository root (BENCH_DATA_DIR=/work/data where the templates live):

    .venv/bin/python -m bench.segments                  # 200,000 members, both backends
    .venv/bin/python -m bench.segments --quick          # 20,000 members
    .venv/bin/python -m bench.segments --only postgresql --plans

For each backend, a fresh copy of the dataset (`bench.prepared.prepared`, brought to the last
migration) and `marketing.saved.Segments.preview` timed for every case below: one warm-up run,
then --runs timed runs (default 3); the figure is the slowest timed run. The clock is the
dataset's "now" (today, 00:00 UTC), so the counts are the same on every run of the day.
--plans prints each case's plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE).
Targets (issue 15): under 1 s on PostgreSQL and under 2 s on SQLite for each case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import ROOT, Figure, machine_info, report
from bench.prepared import BACKENDS, discard, prepared
from ledger.clock import ManualClock
from ledger.rules import load_rules
from marketing.audience import count_statement
from marketing.saved import Segments, plan_for_counting
from storage.engine import create_engine

TARGET_S = {"sqlite": 2.0, "postgresql": 1.0}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("tiers", {"tiers": ["gold"]}),
    ("balance_min", {"balance_min": 500}),
    ("balance_max", {"balance_max": 50}),
    ("burning_within_days", {"burning_within_days": 30}),
    ("inactive_days", {"inactive_days": 90}),
    ("joined_within_days", {"joined_within_days": 30}),
    ("language", {"language": "en"}),
    ("birthday_month", {"birthday_month": 5}),
    ("purchases_min", {"purchases_min": 5}),
    ("spent_365_min", {"spent_365_min": "10000.00"}),
    (
        "four: burning + inactive + purchases + spent",
        {
            "burning_within_days": 30,
            "inactive_days": 30,
            "purchases_min": 3,
            "spent_365_min": "5000.00",
        },
    ),
    (
        "four: tiers + balance + language + birthday",
        {"tiers": ["silver", "gold"], "balance_min": 100, "language": "ru", "birthday_month": 5},
    ),
    (
        "all ten",
        {
            "tiers": ["base", "silver"],
            "balance_min": 10,
            "balance_max": 5000,
            "burning_within_days": 60,
            "inactive_days": 14,
            "joined_within_days": 600,
            "language": "ru",
            "birthday_month": 5,
            "purchases_min": 2,
            "spent_365_min": "1000.00",
        },
    ),
]


def dataset_now() -> datetime:
    """The moment the generated history ends (bench.dataset's default `now`)."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def plan(engine: AsyncEngine, statement: Any) -> str:
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN ANALYZE "
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await plan_for_counting(conn)  # as Segments.preview runs it
        rows = (await conn.execute(text(explain + sql))).all()
    if engine.dialect.name == "sqlite":
        return "\n".join(f"    {row[0]:>3} {row[1]:>3} {row[3]}" for row in rows)
    return "\n".join(f"    {row[0]}" for row in rows)


async def run_backend(backend: str, args: argparse.Namespace) -> list[Figure]:
    url = await prepared(backend, args.members)
    engine = create_engine(url)
    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    figures = []
    try:
        now = dataset_now()
        segments = Segments(engine, load_rules(ROOT / "rules.toml"), ManualClock(now))
        for name, raw in CASES:
            segment = segments.parse(raw)
            counts = await segments.preview(segment)  # warm-up
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                again = await segments.preview(segment)
                times.append(time.perf_counter() - started)
                assert again == counts
            print(
                f"{label} {name}: {counts.count:,} members, {counts.reachable:,} reachable "
                f"({counts.opted_out:,} opted out, {counts.blocked:,} blocked, "
                f"{counts.no_chat:,} no chat); runs "
                + ", ".join(f"{t * 1000:.0f} ms" for t in times),
                flush=True,
            )
            if args.plans:
                print(await plan(engine, count_statement(segment, now)), flush=True)
            worst = max(times)
            figures.append(
                Figure(
                    benchmark="segments",
                    name=f"segment preview, {label}, {args.members:,} members: {name}",
                    value=worst * 1000,
                    unit="ms",
                    target=f"< {TARGET_S[backend] * 1000:.0f} ms",
                    met=worst < TARGET_S[backend],
                )
            )
    finally:
        await engine.dispose()
        await discard(url)
    return figures


async def main(args: argparse.Namespace) -> int:
    backends = [b.strip() for b in args.only.split(",")] if args.only else list(BACKENDS)
    for line in await machine_info("postgresql" in backends):
        print(line)
    figures: list[Figure] = []
    for backend in backends:
        figures.extend(await run_backend(backend, args))
    report(figures)
    return 1 if args.strict and not all(f.met for f in figures) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 members")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--only", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--plans", action="store_true", help="print each case's query plan")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.members = 20_000
    if args.only and set(args.only.split(",")) - set(BACKENDS):
        parser.error(f"--only takes {', '.join(BACKENDS)}")
    return args


if __name__ == "__main__":
    if not os.environ.get("BENCH_DATA_DIR"):
        print("note: BENCH_DATA_DIR is not set; templates go to the temporary directory")
    sys.exit(asyncio.run(main(parse_args())))
