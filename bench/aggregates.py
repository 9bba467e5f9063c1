"""Per-member aggregates: does a member's long history make their operations slower?

    python -m bench.aggregates --quick           # 20,000 generated members
    python -m bench.aggregates                   # 200,000
    python -m bench.aggregates --only sqlite --rounds 3 --repeat 30

On a fresh copy of the generated dataset (`bench.prepared`), for a typical member (the median
number of journal entries among active members who bought) and for the heaviest member (the most
entries: thousands of lots and purchases), one at a time and in the order production runs them:

- a purchase through `LedgerService.purchase` (plain, and one that redeems a few points), which
  reads the 365-day qualifying spend and whether any of the member's points are overdue; and
  one refused after those reads (more points than the cap), which rolls back instead of
  committing, so that its figure is the reads without the flush of the commit;
- the balance screen (`Queries.balance`: tier progress, the nearest burn);
- a history page (`Queries.history`): the first, the middle one and the last (the deepest).

Each figure is the median time of one call in microseconds; the typical member's median is
printed beside the heaviest member's as its floor, and the ratio (typical / heaviest) is 1.0
when the cost does not grow with history. Operations are timed in rounds, each round every
operation for both members, so that drift of a shared machine falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text

from bench.common import ROOT, Figure, machine_info, report
from bench.prepared import discard, prepared
from ledger import policy
from ledger.errors import RedeemAboveLimit
from ledger.operations import MAX_POINTS
from ledger.rules import load_rules
from ledger.service import LedgerService
from storage.engine import create_engine

RUB = 100
BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

# Untimed: who is typical, who is heaviest, and how much history each has.
_PICK = text(
    """
    WITH counts AS (
        SELECT e.member_id AS member_id, COUNT(*) AS n
        FROM entries e JOIN members m ON m.id = e.member_id
        WHERE m.status = 'active' AND m.last_purchase_at IS NOT NULL
        GROUP BY e.member_id
    )
    SELECT member_id, n FROM counts ORDER BY n, member_id
    """
)
_SIZES = text(
    """
    SELECT
        (SELECT COUNT(*) FROM entries WHERE member_id = :m) AS entries,
        (SELECT COUNT(*) FROM lots WHERE member_id = :m) AS lots,
        (SELECT COUNT(*) FROM purchases WHERE member_id = :m) AS purchases
    """
)


@dataclass
class Subject:
    role: str  # "typical" or "heaviest"
    member_id: int
    entries: int
    lots: int
    purchases: int

    def label(self) -> str:
        return (
            f"{self.role} member ({self.entries:,} entries, {self.lots:,} lots,"
            f" {self.purchases:,} purchases)"
        )


async def pick_subjects(ledger: LedgerService) -> list[Subject]:
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(_PICK)).all()
        typical, heaviest = rows[len(rows) // 2], rows[-1]
        subjects = []
        for role, row in (("typical", typical), ("heaviest", heaviest)):
            sizes = (await conn.execute(_SIZES, {"m": row.member_id})).one()
            subjects.append(
                Subject(role, row.member_id, sizes.entries, sizes.lots, sizes.purchases)
            )
    return subjects


Operation = Callable[[Subject], Awaitable[object]]


def operations(ledger: LedgerService, run: str) -> dict[str, Operation]:
    counter = 0

    def receipt() -> str:
        nonlocal counter
        counter += 1
        return f"AGG-{run}-{counter}"

    async def purchase(subject: Subject) -> object:
        return await ledger.purchase(
            receipt_id=receipt(), member_id=subject.member_id, amount_kopecks=500 * RUB
        )

    async def purchase_redeeming(subject: Subject) -> object:
        amount = 500 * RUB
        balance = (await ledger.balance(subject.member_id)).balance  # untimed below
        points = min(10, policy.redeemable_points(ledger.rules, amount, balance))
        started = time.perf_counter()
        await ledger.purchase(
            receipt_id=receipt(),
            member_id=subject.member_id,
            amount_kopecks=amount,
            redeem_points=points,
        )
        return time.perf_counter() - started

    async def purchase_refused(subject: Subject) -> object:
        # Everything a purchase reads (the member locked, the key claimed, the window's spend,
        # overdue points), then refused (more points than the cap) and rolled back: the
        # reads without the commit, whose flush to disk dominates a purchase on a busy disk.
        try:
            await ledger.purchase(
                receipt_id=receipt(),
                member_id=subject.member_id,
                amount_kopecks=100 * RUB,
                redeem_points=MAX_POINTS,
            )
        except RedeemAboveLimit:
            return None
        raise AssertionError("a redemption above the cap went through")

    async def balance(subject: Subject) -> object:
        return await ledger.balance(subject.member_id)

    async def first_page(subject: Subject) -> object:
        return await ledger.history(subject.member_id, page=0)

    async def middle_page(subject: Subject) -> object:
        pages = (await ledger.history(subject.member_id)).pages  # untimed below
        started = time.perf_counter()
        await ledger.history(subject.member_id, page=pages // 2)
        return time.perf_counter() - started

    async def last_page(subject: Subject) -> object:
        return await ledger.history(subject.member_id, page=1_000_000)  # clamped to the last

    return {
        "purchase": purchase,
        "purchase redeeming 10 points": purchase_redeeming,
        "purchase refused after its reads (no commit)": purchase_refused,
        "balance screen": balance,
        "history, first page": first_page,
        "history, middle page": middle_page,
        "history, last page": last_page,
    }


async def time_once(operation: Operation, subject: Subject) -> float:
    started = time.perf_counter()
    result = await operation(subject)
    elapsed = time.perf_counter() - started
    # An operation that times itself (to leave out its own set-up) returns its time.
    return result if isinstance(result, float) else elapsed


async def run_backend(backend: str, args: argparse.Namespace) -> list[Figure]:
    started = time.perf_counter()
    url = await prepared(backend, args.members, quiet=True)
    took = time.perf_counter() - started
    print(f"{backend}: fresh copy of {args.members:,} members in {took:.1f} s")
    engine = create_engine(url)
    ledger = LedgerService(engine, load_rules(ROOT / "rules.toml"))
    try:
        subjects = await pick_subjects(ledger)
        for subject in subjects:
            print(f"  {subject.label()}: member {subject.member_id}")
        ops = operations(ledger, uuid.uuid4().hex[:8])
        for operation in ops.values():  # warm-up: statements compiled, caches filled
            for subject in subjects:
                for _ in range(args.warmup):
                    await operation(subject)
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, operation in ops.items():
                for subject in subjects:
                    times = samples.setdefault((name, subject.role), [])
                    for _ in range(args.repeat):
                        times.append(await time_once(operation, subject))
    finally:
        ledger.close()
        await engine.dispose()
        await discard(url)
    label = BACKEND_NAMES[backend]
    typical, heaviest = subjects
    figures = []
    for name in ops:
        low = statistics.median(samples[(name, "typical")]) * 1e6
        high = statistics.median(samples[(name, "heaviest")]) * 1e6
        figures.append(Figure("aggregates", f"{name}, {label}, {typical.label()}", low, "us"))
        figures.append(
            Figure(
                "aggregates",
                f"{name}, {label}, {heaviest.label()} [floor: the typical member]",
                high,
                "us",
                floor=low,
                ratio=low / high,
            )
        )
    return figures


async def main(args: argparse.Namespace) -> int:
    wanted = [name for name in args.only.split(",") if name] or list(BACKEND_NAMES)
    for line in await machine_info("postgresql" in wanted):
        print(line)
    figures: list[Figure] = []
    for backend in wanted:
        figures += await run_backend(backend, args)
    print()
    report(figures)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aggregates", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--members", type=int, default=200_000, help="generated members (200000)")
    parser.add_argument("--quick", action="store_true", help="20,000 members")
    parser.add_argument("--only", default="", help="sqlite, postgresql or both (the default)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every operation (5)")
    parser.add_argument("--repeat", type=int, default=40, help="calls per operation a round (40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per operation (5)")
    args = parser.parse_args(argv)
    if args.quick:
        args.members = 20_000
    for name in filter(None, args.only.split(",")):
        if name not in BACKEND_NAMES:
            parser.error(f"--only: {name!r} is not one of {', '.join(BACKEND_NAMES)}")
    if min(args.rounds, args.repeat) < 1:
        parser.error("--rounds and --repeat must be at least 1")
    return args


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
