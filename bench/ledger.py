"""Ledger throughput: purchases per second, next to the plain bare-driver floor.

Run from the repository root:

    .venv/bin/python -m bench.ledger                   # 200,000 generated members
    .venv/bin/python -m bench.ledger --quick           # 20,000 members, fewer purchases
    .venv/bin/python -m bench.ledger --only sqlite     # or postgresql (pg1 and pg16), pg16, ...
    .venv/bin/python -m bench.ledger --only pg16 --profile /tmp/ledger.pstats
    .venv/bin/python -m bench.ledger --repeat 3        # best of 3, on a shared, noisy machine

Data: a fresh copy of the generated dataset (`bench.prepared.prepared(backend, members)`,
bench/dataset.py: 18 months of history per member), one copy per backend; with
$BENCH_DATA_DIR pointing at prepared templates nothing is built. Configurations:

* sqlite: the copy is a WAL file database, one worker (sequential awaits);
* pg1 / pg16: the PostgreSQL copy, with 1 and 16 workers (asyncio tasks, pool_size 16),
  pg1 first, then pg16 on the same copy.

For each: warm up, then time N purchases spread over the dataset's active members (random
100-5,000 RUB, about 20% also redeem points within the allowed cap), then run `check_ledger`.
Each worker owns its own members, so the redeem amount can be computed from the member's
usable balance (the stored balance less what is due to burn, then what each purchase returns)
without ever being refused.

The floor is the plain one: per transaction, one INSERT and one UPDATE through the bare driver,
with the same worker count, on two tables with no foreign key and no column beyond the ones the
statements write (`floor_members (id, balance)`, `floor_entries (id, member_id, points)`), as
many floor members as the dataset has members: aiosqlite with WAL, synchronous=NORMAL and BEGIN
IMMEDIATE (a file beside the copy); asyncpg with a pool of `workers` connections (tables in the
copy's database). ratio = purchases/s / floor transactions/s. The timed purchases and the
floor's transactions run in alternating chunks (`--chunks`), so that both see the same load on
a shared machine.

Below the table, per configuration: CPU per purchase (event loop thread, whole process, whole
machine, and the PostgreSQL backends serving the run when the server is local), and the SQL
statements per purchase that went through SQLAlchemy's execution (a `before_cursor_execute`
listener on the async engine), split by verb and by whether the purchase redeemed points. The
ledger's hot statements run through `storage.fast` on the driver, and SQLite's writes on a
separate sync engine, so the listener no longer sees them: read a count near zero as "all of
it went the fast way". Throughput on a shared machine is only as good as the
machine is quiet: the load average is printed first, and `--repeat` keeps the best run.

Targets (issue 14): ratio >= 0.35 on SQLite; >= 0.30 on PostgreSQL with 16 workers. The figures
go through `bench.common.report` (FIGURE lines; $BENCH_FIGURES for bench.all). This does not
fail on a missed target unless --strict is given. It exits non-zero on ledger violations or
purchase errors, and when PostgreSQL is unreachable under CI=true.

PostgreSQL admin URL: $BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test (as in tests/conftest.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import (
    MAX_AMOUNT_KOPECKS,
    MIN_AMOUNT_KOPECKS,
    PG_ADMIN_URL,
    PG_POOL_SIZE,
    REDEEM_SHARE,
    ROOT,
    Census,
    Figure,
    Probe,
    backend_probe,
    cpu_delta,
    machine_busy,
    machine_info,
    percentile,
    pg_fetch,
    report,
    split,
)
from bench.prepared import discard, prepared
from ledger import policy
from ledger.invariants import check_ledger
from ledger.rules import load_rules
from ledger.service import LedgerService
from storage.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine
from storage.schema import lots, members

TARGET_RATIO_SQLITE = 0.35
TARGET_RATIO_PG16 = 0.30
CONFIGS = ("sqlite", "pg1", "pg16")
BACKEND_CONFIGS = {"sqlite": ("sqlite",), "postgresql": ("pg1", "pg16")}
QUICK_MEMBERS = 20_000
DUE_MARGIN = timedelta(hours=2)  # lots due this soon count as burnt (a purchase burns them)

Transaction = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class Config:
    name: str
    backend: str  # "sqlite" | "postgresql"
    workers: int
    purchases: int


@dataclass
class Side:
    """The timed part of one side (the ledger or the floor), summed over the chunks."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    loop_cpu: float = 0.0  # CPU seconds of the event loop's thread
    process_cpu: float = 0.0  # of this whole process (with aiosqlite's threads)
    machine_cpu: float = 0.0  # of every process on the machine (PostgreSQL, other users)
    server_cpu: float | None = None  # of the PostgreSQL backends serving the run, if local

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def per_op_ms(self, seconds: float | None) -> str:
        if seconds is None or not self.latencies:
            return "n/a"
        return f"{seconds / len(self.latencies) * 1000:.2f}"


@dataclass
class Result:
    config: Config
    ledger: Side = field(default_factory=Side)
    floor: Side = field(default_factory=Side)
    redeemed: int = 0
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    census: Census = field(default_factory=Census)

    @property
    def ratio(self) -> float:
        return self.ledger.rate / self.floor.rate if self.floor.rate else 0.0

    @property
    def ratio_target(self) -> float | None:
        if self.config.backend == "sqlite":
            return TARGET_RATIO_SQLITE
        return TARGET_RATIO_PG16 if self.config.workers >= 16 else None

    def checks(self) -> list[tuple[str, bool]]:
        target = self.ratio_target
        return [] if target is None else [(f"ratio >= {target}", self.ratio >= target)]

    def figure(self) -> Figure:
        target = self.ratio_target
        backend = "SQLite" if self.config.backend == "sqlite" else "PostgreSQL"
        workers = f"{self.config.workers} worker" + ("s" if self.config.workers > 1 else "")
        return Figure(
            benchmark="ledger",
            name=f"purchases, {backend}, {workers}",
            value=self.ledger.rate,
            unit="/s",
            met=None if target is None else self.ratio >= target,
            floor=self.floor.rate,
            ratio=self.ratio,
            ratio_target="" if target is None else f">= {target:.2f}",
        )


async def _measured(side: Side, probe: Probe | None, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work`, adding its wall time and CPU use to `side`."""
    server_before = await probe() if probe is not None else None
    wall, loop_cpu = time.perf_counter(), time.thread_time()
    process_cpu, machine_cpu = time.process_time(), machine_busy()
    await work()
    side.seconds += time.perf_counter() - wall
    side.loop_cpu += time.thread_time() - loop_cpu
    side.process_cpu += time.process_time() - process_cpu
    side.machine_cpu += machine_busy() - machine_cpu
    if probe is not None and server_before is not None:
        delta = cpu_delta(server_before, await probe())
        if delta is not None:
            side.server_cpu = (side.server_cpu or 0.0) + delta


# ------------------------------------------------------------------------------ the ledger


class LedgerWorkload:
    """The dataset's active members split among `workers` asyncio tasks making purchases."""

    def __init__(self, engine: AsyncEngine, config: Config, args: argparse.Namespace) -> None:
        self.engine = engine
        self.config = config
        self.args = args
        self.rules = load_rules(ROOT / "rules.toml")
        self.ledger = LedgerService(engine, self.rules)
        self.partitions: list[list[int]] = []
        self.balances: dict[int, int] = {}

    async def prepare(self, tag: str) -> None:
        """Read the active members and their usable balances, give each worker its own, and
        warm up; nothing is timed."""
        due = datetime.now(UTC) + DUE_MARGIN
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(members.c.id, members.c.balance)
                    .where(members.c.status == "active")
                    .order_by(members.c.id)
                )
            ).all()
            burning = (
                await conn.execute(
                    select(lots.c.member_id, func.sum(lots.c.remaining))
                    .where(lots.c.status == "active", lots.c.expires_at <= due)
                    .group_by(lots.c.member_id)
                )
            ).all()
        burns = {int(member_id): int(points or 0) for member_id, points in burning}
        ids = [int(row.id) for row in rows]
        for row in rows:
            self.balances[int(row.id)] = max(0, int(row.balance) - burns.get(int(row.id), 0))
        random.Random(self.args.seed).shuffle(ids)
        workers = self.config.workers
        self.partitions = [ids[w::workers] for w in range(workers)]
        await self.run(self.args.warmup, f"{tag}-warm", self.args.seed + 7919, None)

    async def run(self, count: int, tag: str, seed: int, result: Result | None) -> None:
        workers = len(self.partitions)
        census = result.census if result is not None and workers == 1 else None
        await asyncio.gather(
            *(
                self._worker(w, n, f"{tag}-w{w}", random.Random(seed * 1000 + w), result, census)
                for w, n in enumerate(split(count, workers))
            )
        )

    async def _worker(
        self,
        w: int,
        count: int,
        prefix: str,
        rng: random.Random,
        result: Result | None,
        census: Census | None,
    ) -> None:
        members = self.partitions[w]
        for i in range(count):
            member_id = rng.choice(members)
            amount = rng.randint(MIN_AMOUNT_KOPECKS, MAX_AMOUNT_KOPECKS)
            redeem = 0
            if rng.random() < REDEEM_SHARE:
                cap = policy.redeemable_points(self.rules, amount, self.balances[member_id])
                if cap > 0:
                    redeem = rng.randint(1, cap)
            before = census.total if census is not None else 0
            started = time.perf_counter()
            try:
                outcome = await self.ledger.purchase(
                    receipt_id=f"{prefix}-{i}",
                    member_id=member_id,
                    amount_kopecks=amount,
                    redeem_points=redeem,
                )
            except Exception as exc:
                if result is None:
                    raise
                result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            self.balances[member_id] = outcome.balance
            if result is not None:
                result.ledger.latencies.append(elapsed)
                result.redeemed += 1 if redeem else 0
            if census is not None:
                census.per_purchase[bool(redeem)].append(census.total - before)


# ------------------------------------------------------------------------------- the floor


async def _floor_run(
    transaction: Transaction,
    workers: int,
    members: int,
    count: int,
    seed: int,
    latencies: list[float] | None,
) -> None:
    """`count` floor transactions from `workers` tasks, each on its own members."""

    async def worker(w: int, n: int) -> None:
        rng = random.Random(seed * 1000 + w)
        own = list(range(w + 1, members + 1, workers))
        for _ in range(n):
            member_id = rng.choice(own)
            started = time.perf_counter()
            await transaction(member_id, rng.randint(1, 100))
            if latencies is not None:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(w, n) for w, n in enumerate(split(count, workers))))


class SqliteFloor:
    """aiosqlite, WAL and synchronous=NORMAL (the ledger's durability), BEGIN IMMEDIATE; one
    INSERT + one UPDATE; no foreign key, no column the statements do not write."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, path: Path, members: int) -> SqliteFloor:
        import aiosqlite

        conn = await aiosqlite.connect(
            path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA synchronous=NORMAL",
        ):
            await conn.execute(pragma)
        await conn.execute(
            "CREATE TABLE floor_members (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"
        )
        await conn.execute(
            "CREATE TABLE floor_entries (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL,"
            " points INTEGER NOT NULL)"
        )
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany(
            "INSERT INTO floor_members (id, balance) VALUES (?, 0)",
            [(i,) for i in range(1, members + 1)],
        )
        await conn.commit()
        return cls(conn)

    async def transaction(self, member_id: int, points: int) -> None:
        await self.conn.execute("BEGIN IMMEDIATE")
        await self.conn.execute(
            "INSERT INTO floor_entries (member_id, points) VALUES (?, ?)", (member_id, points)
        )
        await self.conn.execute(
            "UPDATE floor_members SET balance = balance + ? WHERE id = ?", (points, member_id)
        )
        await self.conn.commit()

    async def close(self) -> None:
        await self.conn.close()


class PostgresFloor:
    """asyncpg with a pool of `workers` connections; one INSERT + one UPDATE per transaction;
    no foreign key, no column the statements do not write."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, workers: int, members: int) -> PostgresFloor:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
        async with pool.acquire() as conn:
            await conn.execute(
                "DROP TABLE IF EXISTS floor_entries, floor_members;"
                "CREATE TABLE floor_members (id integer PRIMARY KEY, balance bigint NOT NULL);"
                "CREATE TABLE floor_entries (id bigserial PRIMARY KEY, member_id integer NOT NULL,"
                " points integer NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO floor_members (id, balance) SELECT g, 0 FROM generate_series(1, $1) g",
                members,
            )
        return cls(pool)

    async def transaction(self, member_id: int, points: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO floor_entries (member_id, points) VALUES ($1, $2)", member_id, points
            )
            await conn.execute(
                "UPDATE floor_members SET balance = balance + $1 WHERE id = $2",
                points,
                member_id,
            )

    async def close(self) -> None:
        await self.pool.close()


# -------------------------------------------------------------------------------- running


async def _timed(
    config: Config,
    args: argparse.Namespace,
    engine: AsyncEngine,
    floor: SqliteFloor | PostgresFloor,
    probe: Probe | None,
) -> Result:
    """Warm both sides up, then alternate chunks of purchases and of floor transactions."""
    result = Result(config)
    tag = f"lb-{config.name}-{os.getpid()}-{time.time_ns() % 10**9}"  # receipt ids, unique
    workload = LedgerWorkload(engine, config, args)
    await workload.prepare(tag)
    await _floor_run(
        floor.transaction, config.workers, args.members, args.warmup, args.seed + 7919, None
    )
    stop_counting = result.census.listen(engine)
    profiler = cProfile.Profile() if args.profile else None
    try:
        for chunk, count in enumerate(split(config.purchases, args.chunks)):
            seed = args.seed * 100 + chunk

            async def purchases(count: int = count, chunk: int = chunk, seed: int = seed) -> None:
                if profiler is not None:
                    profiler.enable()
                try:
                    await workload.run(count, f"{tag}-{chunk}", seed, result)
                finally:
                    if profiler is not None:
                        profiler.disable()

            async def floor_transactions(count: int = count, seed: int = seed) -> None:
                await _floor_run(
                    floor.transaction,
                    config.workers,
                    args.members,
                    count,
                    seed,
                    result.floor.latencies,
                )

            await _measured(result.ledger, probe, purchases)
            await _measured(result.floor, probe, floor_transactions)
    finally:
        stop_counting()
        if profiler is not None:
            path = f"{args.profile}.{config.name}"
            profiler.dump_stats(path)
            print(f"  cProfile of the timed purchases written to {path}", file=sys.stderr)
    result.violations = [str(v) for v in await check_ledger(engine)]
    return result


async def run_backend(
    backend: str, configs: list[Config], args: argparse.Namespace
) -> list[Result]:
    """The configurations of one backend, one after the other, on one fresh dataset copy."""
    print(f"- {backend}: copying the {args.members:,}-member dataset", file=sys.stderr)
    url = await prepared(backend, args.members, quiet=True)
    results: list[Result] = []
    try:
        workers = max(c.workers for c in configs)
        engine = create_engine(url, pool_size=max(PG_POOL_SIZE, workers))
        try:
            for config in configs:
                print(
                    f"- {config.name}: {args.members:,} members, {args.warmup} warm-up + "
                    f"{config.purchases:,} purchases in {args.chunks} chunks,"
                    f" {config.workers} worker(s)",
                    file=sys.stderr,
                )
                results.append(await _run_config(config, args, engine, url))
        finally:
            await engine.dispose()
    finally:
        await discard(url)
    return results


async def _run_config(
    config: Config, args: argparse.Namespace, engine: AsyncEngine, url: str
) -> Result:
    if config.backend == "sqlite":
        path = Path(url.removeprefix("sqlite+aiosqlite:///"))
        floor_path = path.with_name(f"{path.stem}-floor.db")
        floor = await SqliteFloor.open(floor_path, args.members)
        try:
            return await _timed(config, args, engine, floor, None)
        finally:
            await floor.close()
            await discard(f"sqlite+aiosqlite:///{floor_path}")
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pg_floor = await PostgresFloor.open(dsn, config.workers, args.members)
    try:
        return await _timed(config, args, engine, pg_floor, backend_probe(name))
    finally:
        await pg_floor.close()


def _best(runs: list[Result]) -> Result:
    """The run with the fastest ledger; its floor ran alongside it. Errors of every run."""
    best = max(runs, key=lambda r: r.ledger.rate)
    if len(runs) > 1:
        rates = ", ".join(f"{r.ledger.rate:,.0f} ({r.ratio:.2f})" for r in runs)
        print(f"  {best.config.name}: purchases/s (ratio) per run: {rates}", file=sys.stderr)
        best.violations = [v for r in runs for v in r.violations]
        best.errors = [e for r in runs for e in r.errors]
    return best


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':<11}{'workers':>8}{'purchases':>11}{'purch/s':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'floor tx/s':>12}{'ratio':>7}  targets"
    )
    print(header)
    print("-" * (len(header) + 30))
    for r in results:
        lat = r.ledger.latencies
        targets = ", ".join(f"{label}: {'met' if ok else 'MISSED'}" for label, ok in r.checks())
        print(
            f"{r.config.backend:<11}{r.config.workers:>8}{len(lat):>11,}"
            f"{r.ledger.rate:>10,.0f}{percentile(lat, 0.5) * 1000:>9.2f}"
            f"{percentile(lat, 0.99) * 1000:>9.2f}{r.floor.rate:>12,.0f}"
            f"{r.ratio:>7.2f}  {targets}"
        )
    print()
    for r in results:
        led, flo = r.ledger, r.floor
        ledger = "no violations" if not r.violations else f"{len(r.violations)} VIOLATIONS"
        errors = f", {len(r.errors)} purchase ERRORS" if r.errors else ""
        print(
            f"{r.config.name}: check_ledger: {ledger}{errors}; {r.redeemed:,} of"
            f" {len(led.latencies):,} purchases redeemed points; floor p50"
            f" {percentile(flo.latencies, 0.5) * 1000:.2f} ms, p99"
            f" {percentile(flo.latencies, 0.99) * 1000:.2f} ms"
        )
        for line in (r.violations + r.errors)[:5]:
            print(f"    {line}")
        if not led.latencies:
            continue
        print(
            f"    CPU ms per purchase: event loop thread {led.per_op_ms(led.loop_cpu)},"
            f" this process {led.per_op_ms(led.process_cpu)},"
            f" PostgreSQL backends {led.per_op_ms(led.server_cpu)},"
            f" whole machine {led.per_op_ms(led.machine_cpu)}"
            f" (wall {led.per_op_ms(led.seconds)})"
        )
        print(
            f"    CPU ms per floor transaction: this process {flo.per_op_ms(flo.process_cpu)},"
            f" PostgreSQL backends {flo.per_op_ms(flo.server_cpu)},"
            f" whole machine {flo.per_op_ms(flo.machine_cpu)}"
            f" (wall {flo.per_op_ms(flo.seconds)})"
        )
        census, n = r.census, len(led.latencies)
        if not census.total:
            continue
        verbs = ", ".join(f"{verb} {k / n:.2f}" for verb, k in census.by_verb.most_common())
        by_redeem = ""
        plain, redeeming = census.per_purchase[False], census.per_purchase[True]
        if plain:
            by_redeem = f" (without redeem {sum(plain) / len(plain):.2f}"
            if redeeming:
                by_redeem += f", with redeem {sum(redeeming) / len(redeeming):.2f}"
            by_redeem += ")"
        if r.config.backend == "sqlite":
            extra = "COMMIT not counted (BEGIN IMMEDIATE is)"
        else:
            extra = "BEGIN and COMMIT not counted"
        extra += f"; {census.checkouts / n:.2f} pool checkouts per purchase"
        if census.pre_ping:
            extra += " (each with a pre-ping round trip)"
        print(
            f"    statements per purchase through SQLAlchemy's execution (storage.fast not"
            f" counted): {census.total / n:.2f}{by_redeem}; by verb: {verbs}"
        )
        print(f"    ({extra})")


async def main(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run, so that the scratch database is still dropped.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    wanted = configurations(args.only, args.quick)
    unknown = set(wanted) - set(CONFIGS)
    if unknown:
        print(
            f"unknown configuration(s): {sorted(unknown)}; choose from"
            f" {(*BACKEND_CONFIGS, *CONFIGS)}"
        )
        return 2
    if args.skip_postgres:
        wanted = [c for c in wanted if c == "sqlite"]
    postgres_missing = None
    if any(c.startswith("pg") for c in wanted):
        try:
            await pg_fetch("SELECT 1")
        except Exception as exc:
            postgres_missing = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
            wanted = [c for c in wanted if c == "sqlite"]
            print(f"{postgres_missing}; skipping the PostgreSQL rows", file=sys.stderr)
    configs = {
        "sqlite": Config("sqlite", "sqlite", 1, args.purchases),
        "pg1": Config("pg1", "postgresql", 1, args.purchases),
        "pg16": Config("pg16", "postgresql", 16, args.purchases_pg16),
    }
    with_postgres = any(c.startswith("pg") for c in wanted)
    for line in await machine_info(with_postgres):
        print(line)
    runs: dict[str, list[Result]] = {name: [] for name in wanted}
    for backend in BACKEND_CONFIGS:
        chosen = [configs[name] for name in wanted if configs[name].backend == backend]
        for _ in range(args.repeat if chosen else 0):
            for result in await run_backend(backend, chosen, args):
                runs[result.config.name].append(result)
    results = [_best(runs[name]) for name in wanted]
    print()
    print_table(results)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report([r.figure() for r in results])
    status = 0
    if any(r.violations or r.errors for r in results):
        status = 1
    if args.strict and not all(ok for r in results for _, ok in r.checks()):
        status = 1
    if postgres_missing:
        print(f"\n{postgres_missing}: PostgreSQL rows skipped")
        if os.environ.get("CI", "").lower() == "true":
            print("CI=true: PostgreSQL must be reachable")
            status = 1
    return status


def configurations(only: str, quick: bool) -> list[str]:
    """The configurations `--only` names (a backend stands for its configurations), in the
    order of CONFIGS; all of them by default, but pg1 only when named under --quick."""
    if not only:
        return [c for c in CONFIGS if not (quick and c == "pg1")]
    named: list[str] = []
    for part in (p.strip() for p in only.split(",") if p.strip()):
        named.extend(BACKEND_CONFIGS.get(part, (part,)))
    known = [c for c in CONFIGS if c in named]
    return known + [c for c in named if c not in CONFIGS]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MEMBERS:,} members, 2,000/4,000 purchases, 5 chunks, no pg1 unless named",
    )
    parser.add_argument(
        "--purchases", type=int, help="timed purchases, sqlite and pg1 (5000; --quick 2000)"
    )
    parser.add_argument(
        "--purchases-pg16", type=int, help="timed purchases, pg16 (10000; --quick 4000)"
    )
    parser.add_argument(
        "--members",
        type=int,
        help=f"generated members (200,000; --quick {QUICK_MEMBERS:,}); a dataset template of"
        " this size is built first if $BENCH_DATA_DIR has none",
    )
    parser.add_argument(
        "--warmup", type=int, default=300, help="untimed purchases and floor transactions (300)"
    )
    parser.add_argument("--chunks", type=int, help="alternating ledger/floor chunks (10; 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated: sqlite, postgresql (= pg1,pg16), or of {CONFIGS}",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each configuration this many times on fresh data and report the run with"
        " the fastest ledger (with its own floor): for shared, noisy machines (1)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the timed purchases; writes PATH.<config>"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("members", 200_000, QUICK_MEMBERS),
        ("purchases", 5_000, 2_000),
        ("purchases_pg16", 10_000, 4_000),
        ("chunks", 10, 5),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.members < 16:
        parser.error("--members must be at least 16")
    if args.repeat < 1 or args.chunks < 1:
        parser.error("--repeat and --chunks must be at least 1")
    return args


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
