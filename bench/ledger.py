"""Ledger throughput: purchases per second, next to a bare-driver floor.

Run from the repository root:

    .venv/bin/python -m bench.ledger
    .venv/bin/python -m bench.ledger --purchases 2000 --members 500 --skip-postgres
    .venv/bin/python -m bench.ledger --only pg16 --profile /tmp/ledger.pstats
    .venv/bin/python -m bench.ledger --repeat 3      # best of 3, on a shared, noisy machine

Configurations (each on fresh data):

* sqlite: a new WAL file database in a temp dir, one worker (sequential awaits);
* pg1 / pg16: PostgreSQL, a scratch database `loyalty_bench_<pid>` created fresh for each
  configuration and dropped at the end, with 1 and 16 workers (asyncio tasks, pool_size 16).

For each: register the members (not timed), warm up, then time N purchases spread across the
members (random 100-5,000 RUB, about 20% also redeem points within the allowed cap), then run
`check_ledger`. Each worker owns its own members, so the redeem amount can be computed from the
balance the previous purchase returned without ever being refused.

The floor is the bare driver doing, per transaction, one INSERT and one UPDATE with the same
worker count: aiosqlite with the ledger's pragmas and BEGIN IMMEDIATE; asyncpg with a pool.
The ratio is purchases/s divided by floor transactions/s.

Below the table, per configuration: CPU per purchase (event loop thread, whole process, whole
machine, and the PostgreSQL backends serving the run when the server is local), and the SQL
statements per purchase counted with a `before_cursor_execute` listener, split by verb and by
whether the purchase redeemed points. Throughput on a shared machine is only as good as the
machine is quiet: the load average is printed first, and `--repeat` keeps the best run.

Targets: >= 1,000 purchases/s on SQLite; >= 1,500/s on PostgreSQL with 16 workers; ratio >= 0.3
for every configuration. This prints figures; it does not fail on a missed target unless
--strict is given. It exits non-zero on ledger violations or purchase errors, and when
PostgreSQL is unreachable under CI=true.

PostgreSQL admin URL: $BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test (as in tests/conftest.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import policy
from ledger.invariants import check_ledger
from ledger.rules import Rules, load_rules
from ledger.service import LedgerService
from storage.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine
from storage.migrate import upgrade_schema

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
REDEEM_SHARE = 0.2
MIN_AMOUNT_KOPECKS = 100_00
MAX_AMOUNT_KOPECKS = 5_000_00
TARGET_SQLITE = 1_000
TARGET_PG16 = 1_500
TARGET_RATIO = 0.3
PG_POOL_SIZE = 16
CONFIGS = ("sqlite", "pg1", "pg16")
Probe = Callable[[], Awaitable[dict[int, float]]]


@dataclass(frozen=True)
class Config:
    name: str
    backend: str  # "sqlite" | "postgresql"
    workers: int
    purchases: int


@dataclass
class Census:
    """SQL statements sent through SQLAlchemy (before_cursor_execute), per purchase."""

    total: int = 0
    by_verb: Counter[str] = field(default_factory=Counter)
    per_purchase: dict[bool, list[int]] = field(default_factory=lambda: {False: [], True: []})
    checkouts: int = 0  # pool checkouts: one per transaction (plus a ping with pool_pre_ping)
    pre_ping: bool = False

    def listen(self, engine: AsyncEngine) -> Callable[[], None]:
        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            self.total += 1
            self.by_verb[_verb(statement)] += 1

        def checkout(*_args: Any) -> None:
            self.checkouts += 1

        self.pre_ping = bool(getattr(engine.sync_engine.pool, "_pre_ping", False))
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        event.listen(engine.sync_engine.pool, "checkout", checkout)

        def stop() -> None:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
            event.remove(engine.sync_engine.pool, "checkout", checkout)

        return stop


@dataclass
class Result:
    config: Config
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    redeemed: int = 0
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    census: Census = field(default_factory=Census)
    loop_cpu: float = 0.0  # CPU seconds of the event loop's thread during the timed purchases
    process_cpu: float = 0.0  # CPU seconds of this whole process (incl. aiosqlite's threads)
    machine_cpu: float = 0.0  # CPU seconds of every process (this one, PostgreSQL, others)
    server_cpu: float | None = None  # CPU seconds of the PostgreSQL backends serving the run
    floor_seconds: float = 0.0
    floor_process_cpu: float = 0.0
    floor_machine_cpu: float = 0.0
    floor_server_cpu: float | None = None
    floor_latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def floor_rate(self) -> float:
        return len(self.floor_latencies) / self.floor_seconds if self.floor_seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.rate / self.floor_rate if self.floor_rate else 0.0

    def checks(self) -> list[tuple[str, bool]]:
        found = [(f"ratio >= {TARGET_RATIO}", self.ratio >= TARGET_RATIO)]
        if self.config.backend == "sqlite":
            found.insert(0, (f">= {TARGET_SQLITE:,}/s", self.rate >= TARGET_SQLITE))
        elif self.config.workers >= 16:
            found.insert(0, (f">= {TARGET_PG16:,}/s", self.rate >= TARGET_PG16))
        return found


def _machine_busy() -> float:
    """CPU seconds all processes on this machine have used (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _verb(statement: str) -> str:
    return statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ------------------------------------------------------------------------------ the ledger


async def _register(
    ledger: LedgerService, count: int, concurrency: int
) -> tuple[list[int], dict[int, int]]:
    """Register `count` members; their ids in order and their balances (the welcome bonus)."""
    ids: list[int] = [0] * count
    balances: dict[int, int] = {}

    async def worker(start: int) -> None:
        for i in range(start, count, concurrency):
            registration = await ledger.register_member(f"+7999{i + 1:07d}", first_name="Bench")
            ids[i] = registration.member.member_id
            balances[ids[i]] = registration.member.balance

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ids, balances


async def _purchase_worker(
    ledger: LedgerService,
    rules: Rules,
    members: list[int],
    balances: dict[int, int],
    count: int,
    prefix: str,
    rng: random.Random,
    result: Result | None,
    census: Census | None,
) -> None:
    for i in range(count):
        member_id = rng.choice(members)
        amount = rng.randint(MIN_AMOUNT_KOPECKS, MAX_AMOUNT_KOPECKS)
        redeem = 0
        if rng.random() < REDEEM_SHARE:
            cap = policy.redeemable_points(rules, amount, balances[member_id])
            if cap > 0:
                redeem = rng.randint(1, cap)
        before = census.total if census is not None else 0
        started = time.perf_counter()
        try:
            outcome = await ledger.purchase(
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
        balances[member_id] = outcome.balance
        if result is not None:
            result.latencies.append(elapsed)
            result.redeemed += 1 if redeem else 0
        if census is not None:
            census.per_purchase[bool(redeem)].append(census.total - before)


async def _run_purchases(
    ledger: LedgerService,
    rules: Rules,
    partitions: list[list[int]],
    balances: dict[int, int],
    count: int,
    prefix: str,
    seed: int,
    result: Result | None,
    census: Census | None,
) -> float:
    workers = len(partitions)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _purchase_worker(
                ledger,
                rules,
                partitions[w],
                balances,
                n,
                f"{prefix}-w{w}",
                random.Random(seed * 1000 + w),
                result,
                census if workers == 1 else None,
            )
            for w, n in enumerate(_split(count, workers))
        )
    )
    return time.perf_counter() - started


async def bench_ledger(
    engine: AsyncEngine,
    config: Config,
    args: argparse.Namespace,
    result: Result,
    probe: Probe | None = None,
) -> None:
    rules = load_rules(ROOT / "rules.toml")
    ledger = LedgerService(engine, rules)
    concurrency = 1 if config.backend == "sqlite" else 8
    member_ids, balances = await _register(ledger, args.members, concurrency)
    partitions = [member_ids[w :: config.workers] for w in range(config.workers)]

    await _run_purchases(
        ledger, rules, partitions, balances, args.warmup, "warm", args.seed + 1, None, None
    )
    stop_counting = result.census.listen(engine)
    server_before = await probe() if probe is not None else None
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            profiler.enable()
        loop_cpu, process_cpu, machine_cpu = (
            time.thread_time(),
            time.process_time(),
            _machine_busy(),
        )
        result.seconds = await _run_purchases(
            ledger,
            rules,
            partitions,
            balances,
            config.purchases,
            "bench",
            args.seed,
            result,
            result.census,
        )
        result.loop_cpu = time.thread_time() - loop_cpu
        result.process_cpu = time.process_time() - process_cpu
        result.machine_cpu = _machine_busy() - machine_cpu
    finally:
        if profiler is not None:
            profiler.disable()
            path = f"{args.profile}.{config.name}"
            profiler.dump_stats(path)
            print(f"  cProfile of the timed purchases written to {path}", file=sys.stderr)
        stop_counting()
    if probe is not None and server_before is not None:
        result.server_cpu = _cpu_delta(server_before, await probe())
    result.violations = [str(v) for v in await check_ledger(engine)]


# ------------------------------------------------------------------------------- the floor


async def _floor_workers(
    workers: int,
    count: int,
    members: int,
    seed: int,
    transaction: Callable[[int, int], Awaitable[None]],
    result: Result | None,
    probe: Probe | None = None,
) -> float:
    latencies = result.floor_latencies if result is not None else None
    server_before = await probe() if probe is not None and result is not None else None

    async def worker(w: int, n: int) -> None:
        rng = random.Random(seed * 1000 + w)
        own = list(range(w + 1, members + 1, workers))
        for _ in range(n):
            member_id = rng.choice(own)
            started = time.perf_counter()
            await transaction(member_id, rng.randint(1, 100))
            if latencies is not None:
                latencies.append(time.perf_counter() - started)

    started, cpu, machine = time.perf_counter(), time.process_time(), _machine_busy()
    await asyncio.gather(*(worker(w, n) for w, n in enumerate(_split(count, workers))))
    if result is not None:
        result.floor_process_cpu = time.process_time() - cpu
        result.floor_machine_cpu = _machine_busy() - machine
    elapsed = time.perf_counter() - started
    if result is not None and probe is not None and server_before is not None:
        result.floor_server_cpu = _cpu_delta(server_before, await probe())
    return elapsed


async def sqlite_floor(
    path: Path, config: Config, args: argparse.Namespace, result: Result
) -> None:
    """aiosqlite, the ledger engine's pragmas, BEGIN IMMEDIATE; one INSERT + one UPDATE."""
    import aiosqlite

    conn = await aiosqlite.connect(
        path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    try:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ):
            await conn.execute(pragma)
        await conn.execute(
            "CREATE TABLE floor_members (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"
        )
        await conn.execute(
            "CREATE TABLE floor_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, member_id INTEGER"
            " NOT NULL REFERENCES floor_members (id), points INTEGER NOT NULL,"
            " created_at TEXT NOT NULL)"
        )
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany(
            "INSERT INTO floor_members (id, balance) VALUES (?, 0)",
            [(i,) for i in range(1, args.members + 1)],
        )
        await conn.commit()

        async def transaction(member_id: int, points: int) -> None:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute(
                "INSERT INTO floor_entries (member_id, points, created_at) VALUES (?, ?, ?)",
                (member_id, points, datetime.now(UTC).replace(tzinfo=None).isoformat(" ")),
            )
            await conn.execute(
                "UPDATE floor_members SET balance = balance + ? WHERE id = ?", (points, member_id)
            )
            await conn.commit()

        await _floor_workers(1, args.warmup, args.members, args.seed + 1, transaction, None)
        result.floor_seconds = await _floor_workers(
            1, config.purchases, args.members, args.seed, transaction, result
        )
    finally:
        await conn.close()


async def postgres_floor(
    dsn: str,
    config: Config,
    args: argparse.Namespace,
    result: Result,
    probe: Probe | None = None,
) -> None:
    """asyncpg with a pool of `workers` connections; one INSERT + one UPDATE per transaction."""
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=config.workers, max_size=config.workers)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE floor_members (id integer PRIMARY KEY, balance bigint NOT NULL);"
                "CREATE TABLE floor_entries (id bigserial PRIMARY KEY, member_id integer NOT NULL"
                " REFERENCES floor_members (id), points integer NOT NULL,"
                " created_at timestamp NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO floor_members (id, balance) SELECT g, 0 FROM generate_series(1, $1) g",
                args.members,
            )

        async def transaction(member_id: int, points: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO floor_entries (member_id, points, created_at) VALUES ($1, $2, $3)",
                    member_id,
                    points,
                    datetime.now(UTC).replace(tzinfo=None),
                )
                await conn.execute(
                    "UPDATE floor_members SET balance = balance + $1 WHERE id = $2",
                    points,
                    member_id,
                )

        await _floor_workers(
            config.workers, args.warmup, args.members, args.seed + 1, transaction, None
        )
        result.floor_seconds = await _floor_workers(
            config.workers, config.purchases, args.members, args.seed, transaction, result, probe
        )
    finally:
        await pool.close()


# ---------------------------------------------------------------------------- PostgreSQL


def _backend_probe(dbname: str) -> Probe:
    """CPU seconds used so far by each PostgreSQL backend process connected to `dbname`.

    Read from /proc, so only for a server on this machine; a pid that is not a postgres
    process here (a remote or containerised server) is ignored.
    """

    async def probe() -> dict[int, float]:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
        finally:
            await conn.close()
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        found: dict[int, float] = {}
        for (pid,) in rows:
            try:
                proc = Path(f"/proc/{pid}")
                if "postgres" not in (proc / "comm").read_text():
                    continue
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                found[pid] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, ValueError, IndexError):
                continue
        return found

    return probe


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float | None:
    if not after:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _pg_scalar(query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def _pg_urls(name: str) -> tuple[str, str]:
    """(SQLAlchemy URL, plain asyncpg DSN) of the scratch database `name`."""
    dsn = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1), dsn


# -------------------------------------------------------------------------------- running


async def run_config(config: Config, args: argparse.Namespace, workdir: Path) -> Result:
    result = Result(config)
    print(
        f"- {config.name}: {args.members:,} members, {args.warmup} warm-up + "
        f"{config.purchases:,} purchases, {config.workers} worker(s)",
        file=sys.stderr,
    )
    if config.backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix=f"{config.name}-", dir=workdir))
        url = f"sqlite+aiosqlite:///{workdir / 'ledger.db'}"
        engine = create_engine(url)
        try:
            await upgrade_schema(engine)
            await bench_ledger(engine, config, args, result)
        finally:
            await engine.dispose()
        await sqlite_floor(workdir / "floor.db", config, args, result)
        return result

    name = f"loyalty_bench_{os.getpid()}"
    url, dsn = _pg_urls(name)
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _pg_admin(f"CREATE DATABASE {name}")
    try:
        engine = create_engine(url, pool_size=max(PG_POOL_SIZE, config.workers))
        try:
            await upgrade_schema(engine)
            await bench_ledger(engine, config, args, result, _backend_probe(name))
        finally:
            await engine.dispose()
        await postgres_floor(dsn, config, args, result, _backend_probe(name))
    finally:
        await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result


def _best(runs: list[Result]) -> Result:
    """The fastest ledger run, with the fastest floor of all runs; violations of every run."""
    if len(runs) == 1:
        return runs[0]
    best = max(runs, key=lambda r: r.rate)
    floor = max(runs, key=lambda r: r.floor_rate)
    merged = dataclasses.replace(
        best,
        floor_seconds=floor.floor_seconds,
        floor_latencies=floor.floor_latencies,
        floor_process_cpu=floor.floor_process_cpu,
        floor_machine_cpu=floor.floor_machine_cpu,
        floor_server_cpu=floor.floor_server_cpu,
        violations=[v for r in runs for v in r.violations],
        errors=[e for r in runs for e in r.errors],
    )
    rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
    floors = ", ".join(f"{r.floor_rate:,.0f}" for r in runs)
    print(f"  {best.config.name}: purchases/s per run {rates}; floor tx/s per run {floors}")
    return merged


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':<11}{'workers':>8}{'purchases':>11}{'purch/s':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'floor tx/s':>12}{'ratio':>7}  targets"
    )
    print(header)
    print("-" * (len(header) + 30))
    for r in results:
        targets = ", ".join(f"{label}: {'met' if ok else 'MISSED'}" for label, ok in r.checks())
        print(
            f"{r.config.backend:<11}{r.config.workers:>8}{len(r.latencies):>11,}"
            f"{r.rate:>10,.0f}{_percentile(r.latencies, 0.5) * 1000:>9.2f}"
            f"{_percentile(r.latencies, 0.99) * 1000:>9.2f}{r.floor_rate:>12,.0f}"
            f"{r.ratio:>7.2f}  {targets}"
        )
    print()
    for r in results:
        floor = (
            f"floor p50 {_percentile(r.floor_latencies, 0.5) * 1000:.2f} ms, "
            f"p99 {_percentile(r.floor_latencies, 0.99) * 1000:.2f} ms"
        )
        ledger = "no violations" if not r.violations else f"{len(r.violations)} VIOLATIONS"
        errors = f", {len(r.errors)} purchase ERRORS" if r.errors else ""
        print(
            f"{r.config.name}: check_ledger: {ledger}{errors}; "
            f"{r.redeemed:,} of {len(r.latencies):,} purchases redeemed points; {floor}"
        )
        if r.latencies:
            n, fn = len(r.latencies), max(1, len(r.floor_latencies))
            print(
                f"    CPU per purchase: {r.loop_cpu / n * 1000:.2f} ms event loop thread,"
                f" {r.process_cpu / n * 1000:.2f} ms this process,"
                f" {r.machine_cpu / n * 1000:.2f} ms whole machine"
                f" (wall {r.seconds / n * 1000:.2f} ms); floor per transaction:"
                f" {r.floor_process_cpu / fn * 1000:.2f} ms this process,"
                f" {r.floor_machine_cpu / fn * 1000:.2f} ms whole machine"
            )
            if r.server_cpu is not None and r.floor_server_cpu is not None:
                print(
                    f"    PostgreSQL backends' CPU: {r.server_cpu / n * 1000:.2f} ms per purchase,"
                    f" {r.floor_server_cpu / fn * 1000:.2f} ms per floor transaction"
                )
        for line in (r.violations + r.errors)[:5]:
            print(f"    {line}")
        census = r.census
        if census.total and r.latencies:
            verbs = ", ".join(
                f"{verb} {n / len(r.latencies):.2f}" for verb, n in census.by_verb.most_common()
            )
            split = ""
            plain, redeeming = census.per_purchase[False], census.per_purchase[True]
            if plain:
                split = f" (without redeem {sum(plain) / len(plain):.2f}"
                if redeeming:
                    split += f", with redeem {sum(redeeming) / len(redeeming):.2f}"
                split += ")"
            n = len(r.latencies)
            if r.config.backend == "sqlite":
                extra = "COMMIT not counted (BEGIN IMMEDIATE is)"
            else:
                extra = "BEGIN and COMMIT not counted"
            extra += f"; {census.checkouts / n:.2f} pool checkouts per purchase"
            if census.pre_ping:
                extra += " (each with a pre-ping round trip)"
            print(
                f"    statements per purchase: {census.total / n:.2f}{split};"
                f" by verb: {verbs}; {extra}"
            )


async def machine_info(with_postgres: bool) -> list[str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    lines = [
        f"cpus (nproc): {os.cpu_count()}, {platform.machine()}, {platform.platform()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" SQLAlchemy {sqlalchemy.__version__}",
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + (
            "  (busy machine: figures will be low)" if load[0] > 0.5 * (os.cpu_count() or 1) else ""
        ),
    ]
    if with_postgres:
        lines.append(f"PostgreSQL: {await _pg_scalar('SHOW server_version')}")
    return lines


async def main(args: argparse.Namespace) -> int:
    wanted = [c.strip() for c in args.only.split(",")] if args.only else list(CONFIGS)
    unknown = set(wanted) - set(CONFIGS)
    if unknown:
        print(f"unknown configuration(s): {sorted(unknown)}; choose from {CONFIGS}")
        return 2
    if args.skip_postgres:
        wanted = [c for c in wanted if c == "sqlite"]
    postgres_missing = None
    if any(c.startswith("pg") for c in wanted):
        try:
            await _pg_scalar("SELECT 1")
        except Exception as exc:
            postgres_missing = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
            wanted = [c for c in wanted if c == "sqlite"]
            print(f"{postgres_missing}; skipping the PostgreSQL rows", file=sys.stderr)
    configs = {
        "sqlite": Config("sqlite", "sqlite", 1, args.purchases),
        "pg1": Config("pg1", "postgresql", 1, args.purchases),
        "pg16": Config("pg16", "postgresql", 16, args.purchases_pg16),
    }
    for line in await machine_info(
        with_postgres=postgres_missing is None and any(c.startswith("pg") for c in wanted)
    ):
        print(line)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        for name in wanted:
            runs = [await run_config(configs[name], args, Path(tmp)) for _ in range(args.repeat)]
            results.append(_best(runs))
    print()
    print_table(results)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--purchases",
        type=int,
        default=5_000,
        help="timed purchases for sqlite and pg1 (default 5000)",
    )
    parser.add_argument(
        "--purchases-pg16",
        type=int,
        default=10_000,
        help="timed purchases for pg16 (default 10000)",
    )
    parser.add_argument("--members", type=int, default=1_000, help="members (default 1000)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="untimed purchases (and floor transactions) first (default 300)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {CONFIGS}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each configuration this many times (fresh data each time) and report the"
        " best ledger rate and the best floor rate; for shared, noisy machines (default 1)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the timed purchases; writes PATH.<config>"
    )
    args = parser.parse_args(argv)
    if args.members < 16:
        parser.error("--members must be at least 16")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
