"""Scheduler at scale: burning due points, selecting burn warnings, delivering the outbox.

Run from the repository root:

    .venv/bin/python -m bench.scheduler
    .venv/bin/python -m bench.scheduler --lots 100000 --members 20000 --messages 500
    .venv/bin/python -m bench.scheduler --skip-postgres --skip-delivery --profile /tmp/burn.pstats
    .venv/bin/python -m bench.scheduler --skip-burn --messages 2000 --burst 100
    .venv/bin/python -m bench.scheduler --quick          # 20,000 members, 100,000 lots

1. Data (per backend, fresh): --lots lots (default 1,000,000) over --members members (default
   200,000), written with bulk INSERTs (SQLite: stdlib sqlite3 executemany in one transaction;
   PostgreSQL: asyncpg COPY, then setval of the id sequences and ANALYZE), not through the
   ledger. Every member has a telegram_id and a time zone (70% Europe/Moscow, the rest spread
   over four others). Every lot is active and untouched (remaining = points, 2-100 points) and
   has its one journal entry with the same points; balance = the sum of the member's lots, so
   `check_ledger` holds. Lot ids follow creation time; expiry = creation + 180 days; "now" is
   a fixed moment (2025-06-16 09:00 UTC). Expiry dates: 15% of the lots already expired (up to
   90 days ago), 4% burning within the next 8 days (burn warnings), the rest later. The load is
   timed separately and is not a target.
2. Timed, on SQLite (a WAL file database in a temp dir, the engine `storage.engine` makes) and
   on PostgreSQL (a scratch database `loyalty_bench_sched_<pid>`, dropped at the end):
   `burn_warnings_due(engine, rules, now)` (run twice; the first run counts), then
   `LedgerService(engine, rules, ManualClock(now)).expire_due()` burning everything due, with
   the SQL statements it sent counted. Afterwards: nothing due is left, the points burnt equal
   what the data generator made due, and `check_ledger` finds no violation (full check).
   Targets: selection < 5 s, burn < 30 s.
3. Delivery, on a fresh copy of the generated dataset (`bench.prepared.prepared`, --members
   members; SQLite, or PostgreSQL with --only postgresql): one member (active, with a chat)
   makes --burst purchases (default 100) through `LedgerService.purchase`, each queueing its
   receipt notice in its own transaction, and --messages other members with a chat (default
   2,500, at random: some blocked or opted out, as the dataset has them) get one burn-warning
   reminder each with `Outbox.enqueue` (category "reminder": opt-outs, quiet hours and the
   weekly cap apply). Then `Sender(outbox, bot, rules.messages, rate_per_second=25,
   per_chat_interval=1.0, notices=...).drain()` (the production defaults) through the
   in-process `BotAPIEmulator(rate_limit=True)`, which answers 429 beyond Telegram's 30/s per
   bot and 1/s per chat. The clock is the real one moved to 12:00 Moscow time today, so quiet
   hours hold nothing back. Figures: the sustained rate (sends per second from the first send
   to the last send to another chat than the burst's: while there was work for other chats),
   target >= 95% of 25/s; the 429 answers, target 0; the shortest gap between two messages to
   the burst's chat as the emulator received them, target >= 1 s; and how long the burst took
   (reported; at 1/s per chat it cannot take less than --burst - 1 seconds).

This prints figures; it exits 1 on a ledger violation or a wrong count, on a missed target only
with --strict, and when PostgreSQL is unreachable under CI=true.

PostgreSQL admin URL: as in bench.ledger ($BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import (
    PG_ADMIN_URL,
    ROOT,
    Census,
    Figure,
    Probe,
    ShiftedClock,
    backend_probe,
    cpu_delta,
    machine_busy,
    machine_info,
    percentile,
    pg_admin,
    pg_fetch,
    pg_urls,
    report,
)
from bench.prepared import discard, prepared
from bot.i18n import build_i18n
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.invariants import check_ledger
from ledger.rules import Rules, load_rules
from ledger.service import LedgerService
from messaging.notices import Notices
from messaging.outbox import Outbox
from messaging.sender import Sender
from scheduler.due import burn_warnings_due
from storage.engine import create_engine
from storage.migrate import upgrade_schema
from storage.schema import entries, lots, members, spends

NOW = datetime(2025, 6, 16, 9, 0, tzinfo=UTC)  # 12:00 in Moscow: outside quiet hours
LIFETIME = timedelta(days=180)
EXPIRED_SHARE = 0.15
SOON_SHARE = 0.04  # expiring within SOON_DAYS: the burn warnings
SOON_DAYS = 8
ZONES = (
    ("Europe/Moscow", 70),
    ("Asia/Yekaterinburg", 10),
    ("Asia/Novosibirsk", 8),
    ("Europe/Kaliningrad", 7),
    ("Asia/Vladivostok", 5),
)
TELEGRAM_BASE = 1_000_000_000
TARGET_SELECT_S = 5.0
TARGET_BURN_S = 30.0
TARGET_RATE_SHARE = 0.95
SENDER_RATE = 25.0  # the production default (Settings.send_rate_per_second)
PER_CHAT_INTERVAL = 1.0  # Settings.send_per_chat_interval; the emulator allows 1/s per chat
QUICK_MEMBERS = 20_000
PROGRESS_EVERY_S = 10.0
BOT_TOKEN = "7340003:BENCH"

MEMBER_COLUMNS = (
    "id",
    "card_number",
    "referral_code",
    "phone",
    "telegram_id",
    "first_name",
    "language",
    "timezone",
    "created_at",
    "consent_at",
    "balance",
    "entries_count",
)
LOT_COLUMNS = (
    "id",
    "member_id",
    "entry_id",
    "points",
    "remaining",
    "status",
    "available_at",
    "expires_at",
    "created_at",
)
ENTRY_COLUMNS = ("id", "member_id", "kind", "points", "pending", "debt", "created_at")


# ----------------------------------------------------------------------------------- data


@dataclass
class Data:
    """The generated ledger: lot i (0-based) has id i + 1; times are naive UTC."""

    members: int
    zones: list[str]
    balances: list[int]  # index = member id - 1
    entries: list[int]  # the member's journal entries (one per lot), index = member id - 1
    lot_member: list[int] = field(default_factory=list)
    lot_points: list[int] = field(default_factory=list)
    lot_expires: list[datetime] = field(default_factory=list)
    due_lots: int = 0
    due_points: int = 0
    due_members: int = 0
    soon_lots: int = 0


def generate(members: int, lot_count: int, seed: int) -> Data:
    rng = random.Random(seed)
    names = [name for name, _ in ZONES]
    weights = [weight for _, weight in ZONES]
    data = Data(members, rng.choices(names, weights, k=members), [0] * members, [0] * members)
    now = NOW.replace(tzinfo=None)
    raw: list[tuple[datetime, int, int]] = []
    for _ in range(lot_count):
        share = rng.random()
        if share < EXPIRED_SHARE:
            expires = now - timedelta(seconds=rng.randrange(90 * 86_400))
        elif share < EXPIRED_SHARE + SOON_SHARE:
            expires = now + timedelta(seconds=rng.randrange(1, SOON_DAYS * 86_400))
        else:
            expires = now + timedelta(seconds=rng.randrange(SOON_DAYS * 86_400, 180 * 86_400))
        raw.append((expires, rng.randint(1, members), rng.randint(2, 100)))
    raw.sort()  # ids in creation order, as a live ledger has them
    due_members: set[int] = set()
    for expires, member_id, points in raw:
        data.lot_expires.append(expires)
        data.lot_member.append(member_id)
        data.lot_points.append(points)
        data.balances[member_id - 1] += points
        data.entries[member_id - 1] += 1
        if expires <= now:
            data.due_lots += 1
            data.due_points += points
            due_members.add(member_id)
        elif expires <= now + timedelta(days=SOON_DAYS):
            data.soon_lots += 1
    data.due_members = len(due_members)
    return data


Stamp = Callable[[datetime], Any]


def _sqlite_stamp(moment: datetime) -> str:
    # SQLAlchemy's storage format for DateTime on SQLite; bound parameters compare as text.
    return moment.isoformat(" ", "microseconds")


def _pg_stamp(moment: datetime) -> datetime:
    return moment


def member_rows(data: Data, stamp: Stamp) -> Iterator[tuple[Any, ...]]:
    joined = stamp(NOW.replace(tzinfo=None) - timedelta(days=400))
    for i in range(data.members):
        member_id = i + 1
        yield (
            member_id,
            f"9{member_id:011d}",
            f"b{member_id:09d}",
            f"+7900{member_id:07d}",
            TELEGRAM_BASE + member_id,
            "Bench",
            "ru",
            data.zones[i],
            joined,
            joined,
            data.balances[i],
            data.entries[i],
        )


def lot_rows(data: Data, stamp: Stamp) -> Iterator[tuple[Any, ...]]:
    for i, expires in enumerate(data.lot_expires):
        created = stamp(expires - LIFETIME)
        points = data.lot_points[i]
        member_id = data.lot_member[i]
        yield (i + 1, member_id, i + 1, points, points, "active", created, stamp(expires), created)


def entry_rows(data: Data, stamp: Stamp) -> Iterator[tuple[Any, ...]]:
    for i, expires in enumerate(data.lot_expires):
        created = stamp(expires - LIFETIME)
        yield (i + 1, data.lot_member[i], "purchase", data.lot_points[i], 0, 0, created)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def load_sqlite(path: Path, data: Data) -> None:
    """Bulk-load into the migrated SQLite file with the stdlib driver, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_insert_sql("members", MEMBER_COLUMNS), member_rows(data, _sqlite_stamp))
        conn.executemany(_insert_sql("entries", ENTRY_COLUMNS), entry_rows(data, _sqlite_stamp))
        conn.executemany(_insert_sql("lots", LOT_COLUMNS), lot_rows(data, _sqlite_stamp))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def load_postgres(dsn: str, data: Data) -> None:
    """COPY into the migrated scratch database, move the id sequences on, ANALYZE."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for table, columns, rows in (
            ("members", MEMBER_COLUMNS, member_rows(data, _pg_stamp)),
            ("entries", ENTRY_COLUMNS, entry_rows(data, _pg_stamp)),
            ("lots", LOT_COLUMNS, lot_rows(data, _pg_stamp)),
        ):
            await conn.copy_records_to_table(table, records=rows, columns=list(columns))
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        await conn.execute("ANALYZE members, entries, lots")
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ burn, warn


@dataclass
class Cpu:
    """Wall and CPU seconds of one timed step: this process, the whole machine (every process:
    on a shared machine the other ones too), the PostgreSQL backends of the scratch database."""

    wall: float = 0.0
    process: float = 0.0
    machine: float = 0.0
    server: float | None = None

    def __str__(self) -> str:
        server = f", PostgreSQL backends {self.server:.1f} s" if self.server is not None else ""
        return (
            f"wall {self.wall:.2f} s; CPU: this process {self.process:.1f} s{server},"
            f" whole machine {self.machine:.1f} s of {self.wall * (os.cpu_count() or 1):.1f} s"
        )


class Meter:
    """`async with Meter(probe) as cpu:` fills `cpu` when the block ends."""

    def __init__(self, probe: Probe | None) -> None:
        self.probe = probe
        self.cpu = Cpu()
        self._server: dict[int, float] | None = None
        self._start = (0.0, 0.0, 0.0)

    async def __aenter__(self) -> Cpu:
        self._server = await self.probe() if self.probe is not None else None
        self._start = (time.perf_counter(), time.process_time(), machine_busy())
        return self.cpu

    async def __aexit__(self, *_exc: object) -> None:
        wall, process, machine = self._start
        self.cpu.wall = time.perf_counter() - wall
        self.cpu.process = time.process_time() - process
        self.cpu.machine = machine_busy() - machine
        if self.probe is not None and self._server is not None:
            self.cpu.server = cpu_delta(self._server, await self.probe())


@dataclass
class BackendResult:
    backend: str
    load_s: float = 0.0
    select: Cpu = field(default_factory=Cpu)
    select_again_s: float = 0.0
    warnings: int = 0
    warning_members: int = 0
    warning_points: int = 0
    burn: Cpu = field(default_factory=Cpu)
    burnt_points: int = 0
    burnt_lots: int = 0
    expiry_entries: int = 0
    left_due: int = 0
    statements: int = 0
    by_verb: str = ""
    check_s: float = 0.0
    violations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def checks(self) -> list[tuple[str, bool]]:
        return [
            (f"selection < {TARGET_SELECT_S:g} s", self.select.wall < TARGET_SELECT_S),
            (f"burn < {TARGET_BURN_S:g} s", self.burn.wall < TARGET_BURN_S),
        ]

    def figures(self) -> list[Figure]:
        backend = "SQLite" if self.backend == "sqlite" else "PostgreSQL"
        return [
            Figure(
                "scheduler",
                f"burn warnings selected ({self.warnings:,}), {backend}",
                self.select.wall,
                "s",
                target=f"< {TARGET_SELECT_S:g} s",
                met=self.select.wall < TARGET_SELECT_S,
            ),
            Figure(
                "scheduler",
                f"expire_due: {self.burnt_lots:,} lots burnt, {backend}",
                self.burn.wall,
                "s",
                target=f"< {TARGET_BURN_S:g} s",
                met=self.burn.wall < TARGET_BURN_S,
            ),
        ]


async def measure(
    engine: AsyncEngine,
    rules: Rules,
    data: Data,
    result: BackendResult,
    profile: str | None,
    probe: Probe | None = None,
) -> None:
    async with Meter(probe) as result.select:
        warnings = await burn_warnings_due(engine, rules, NOW)
    result.warnings = len(warnings)
    result.warning_members = len({w.recipient.member_id for w in warnings})
    result.warning_points = sum(w.points for w in warnings)
    started = time.perf_counter()
    await burn_warnings_due(engine, rules, NOW)
    result.select_again_s = time.perf_counter() - started
    print(
        f"  {result.backend}: burn_warnings_due {result.select.wall:.2f} s"
        f" (again {result.select_again_s:.2f} s): {result.warnings:,} warnings",
        file=sys.stderr,
    )

    census = Census()
    stop = census.listen(engine)
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        async with Meter(probe) as result.burn:
            ledger = LedgerService(engine, rules, ManualClock(NOW))
            result.burnt_points = await ledger.expire_due()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{result.backend}")
            print(f"  cProfile of expire_due written to {profile}.{result.backend}")
        stop()
    result.statements = census.total
    result.by_verb = ", ".join(f"{verb} {n:,}" for verb, n in census.by_verb.most_common())
    print(f"  {result.backend}: expire_due {result.burn.wall:.2f} s", file=sys.stderr)

    async with engine.connect() as conn:
        burnt = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(spends.c.points), 0))
                .select_from(spends.join(entries, entries.c.id == spends.c.entry_id))
                .where(entries.c.kind == "expiry")
            )
        ).one()
        result.burnt_lots, burnt_points = int(burnt[0]), int(burnt[1])
        result.expiry_entries = (
            await conn.execute(select(func.count()).where(entries.c.kind == "expiry"))
        ).scalar_one()
        result.left_due = (
            await conn.execute(
                select(func.count()).where(
                    lots.c.status == "active", lots.c.remaining > 0, lots.c.expires_at <= NOW
                )
            )
        ).scalar_one()
    expected = (
        ("points burnt", result.burnt_points, data.due_points),
        ("points in expiry spends", burnt_points, data.due_points),
        ("lots burnt", result.burnt_lots, data.due_lots),
        ("expiry entries (members)", result.expiry_entries, data.due_members),
        ("lots still due", result.left_due, 0),
    )
    for what, got, want in expected:
        if got != want:
            result.problems.append(f"{what}: {got:,}, expected {want:,}")

    started = time.perf_counter()
    result.violations = [str(v) for v in await check_ledger(engine)]
    result.check_s = time.perf_counter() - started


async def run_sqlite(
    args: argparse.Namespace, rules: Rules, data: Data, tmp: Path
) -> BackendResult:
    result = BackendResult("sqlite")
    path = tmp / "scheduler.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade_schema(engine)
        await engine.dispose()
        started = time.perf_counter()
        await asyncio.to_thread(load_sqlite, path, data)
        result.load_s = time.perf_counter() - started
        print(f"  sqlite: data loaded in {result.load_s:.1f} s", file=sys.stderr)
        await measure(engine, rules, data, result, args.profile)
    finally:
        await engine.dispose()
    return result


async def run_postgres(args: argparse.Namespace, rules: Rules, data: Data) -> BackendResult:
    result = BackendResult("postgresql")
    name = f"loyalty_bench_sched_{os.getpid()}"
    url, dsn = pg_urls(name)
    await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await pg_admin(f"CREATE DATABASE {name}")
    try:
        engine = create_engine(url)
        try:
            await upgrade_schema(engine)
            started = time.perf_counter()
            await load_postgres(dsn, data)
            result.load_s = time.perf_counter() - started
            print(f"  postgresql: data loaded in {result.load_s:.1f} s", file=sys.stderr)
            await measure(engine, rules, data, result, args.profile, backend_probe(name))
        finally:
            await engine.dispose()
    finally:
        await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result


# -------------------------------------------------------------------------------- delivery


@dataclass
class DeliveryResult:
    backend: str
    others: int  # members with one reminder each
    burst: int  # receipts to the one member with many
    enqueue_s: float = 0.0
    drain: Cpu = field(default_factory=Cpu)
    handled: int = 0
    sent_calls: int = 0
    too_many_requests: int = 0
    retry_after_seen: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    sustained_sends: int = 0  # sends while other chats still had messages waiting
    sustained_s: float = 0.0  # from the first send to the last one to another chat
    max_per_second: int = 0
    burst_sent: int = 0
    burst_gaps: list[float] = field(default_factory=list)  # between its sends, at the emulator
    problems: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.statuses.get("sent", 0)

    @property
    def rate(self) -> float:
        """Sends per second while there was work for other chats: the global limit's share."""
        return (self.sustained_sends - 1) / self.sustained_s if self.sustained_s else 0.0

    @property
    def share(self) -> float:
        return self.rate / SENDER_RATE

    @property
    def shortest_gap(self) -> float:
        return min(self.burst_gaps) if self.burst_gaps else 0.0

    def checks(self) -> list[tuple[str, bool]]:
        return [
            (f">= {TARGET_RATE_SHARE:.0%} of {SENDER_RATE:g}/s", self.share >= TARGET_RATE_SHARE),
            ("no 429", self.too_many_requests == 0),
            (
                f"burst chat spaced >= {PER_CHAT_INTERVAL:g} s",
                self.burst_sent == self.burst and self.shortest_gap >= PER_CHAT_INTERVAL,
            ),
        ]

    def figures(self) -> list[Figure]:
        where = f"{self.backend}, 1 chat with {self.burst} among {self.others:,} others"
        return [
            Figure(
                "scheduler",
                f"outbox delivery, sustained rate ({where})",
                self.rate,
                "/s",
                target=f">= {TARGET_RATE_SHARE * SENDER_RATE:g}/s ({TARGET_RATE_SHARE:.0%} of"
                f" {SENDER_RATE:g}/s)",
                met=self.share >= TARGET_RATE_SHARE,
            ),
            Figure(
                "scheduler",
                "outbox delivery, 429 answers",
                self.too_many_requests,
                "",
                target="0",
                met=self.too_many_requests == 0,
            ),
            Figure(
                "scheduler",
                f"outbox delivery, shortest gap in the burst chat ({self.burst_sent} of"
                f" {self.burst} sent)",
                self.shortest_gap * 1000,
                "ms",
                target=f">= {PER_CHAT_INTERVAL * 1000:,.0f} ms (1 per second per chat)",
                met=self.checks()[2][1],
            ),
            Figure(
                "scheduler",
                f"outbox delivery, the burst chat's {self.burst_sent} messages took (1/s: at"
                f" least {max(0, self.burst - 1)} s)",
                sum(self.burst_gaps),
                "s",
            ),
        ]


def _max_in_window(moments: list[float], window: float = 1.0) -> int:
    best, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def _progress(emu: BotAPIEmulator, total: int, started: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        sent = emu.stats.statuses[200]
        elapsed = time.perf_counter() - started
        print(
            f"  delivery: {sent:,}/{total:,} sent after {elapsed:.0f} s"
            f" ({sent / elapsed:.2f}/s), 429s so far: {emu.stats.too_many_requests}",
            file=sys.stderr,
            flush=True,
        )


async def _recipients(engine: AsyncEngine, count: int, seed: int) -> tuple[Any, list[Any]]:
    """The burst's member (active, reachable) and `count` other members with a chat, at random
    from the dataset (some of them unreachable or opted out, as the dataset has them)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(members.c.id, members.c.telegram_id, members.c.unreachable)
                .where(members.c.status == "active", members.c.telegram_id.is_not(None))
                .order_by(members.c.id)
            )
        ).all()
    if len(rows) <= count:
        raise RuntimeError(
            f"the dataset has {len(rows):,} members with a chat; {count + 1:,} needed"
        )
    rng = random.Random(seed)
    chosen = rng.sample(list(rows), count + 1)
    burst = next(row for row in chosen if not row.unreachable)
    return burst, [row for row in chosen if row is not burst][:count]


async def run_delivery(args: argparse.Namespace, rules: Rules) -> DeliveryResult:
    """--burst receipts to one member (real purchases, so real notices) and one reminder each
    to --messages other members of a generated dataset's copy, then `Sender.drain()`."""
    backend = args.only or "sqlite"
    result = DeliveryResult(backend, args.messages, args.burst)
    url = await prepared(backend, args.members, quiet=True)
    engine = create_engine(url)
    emu = BotAPIEmulator(rate_limit=True)
    emu.add_bot(BOT_TOKEN, username="loyalty_bench_bot")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = ShiftedClock(today + timedelta(hours=9))  # 12:00 in Moscow: outside quiet hours
    try:
        burst, others = await _recipients(engine, args.messages, args.seed)
        for row in (burst, *others):
            emu.user(int(row.telegram_id), first_name="Member", language_code="ru")
        outbox = Outbox(engine, clock)
        ledger = LedgerService(engine, rules, clock)
        started = time.perf_counter()
        rng = random.Random(args.seed)
        for i in range(args.burst):  # each purchase queues its receipt in its transaction
            await ledger.purchase(
                receipt_id=f"burst-{os.getpid()}-{i}",
                member_id=int(burst.id),
                amount_kopecks=rng.randint(100_00, 5_000_00),
            )
        burn_date = (clock.now() + timedelta(days=3)).date().isoformat()
        for row in others:
            await outbox.enqueue(
                dedup_key=f"bench-burn:{row.id}:{burn_date}",
                chat_id=int(row.telegram_id),
                member_id=int(row.id),
                text=f"{row.id % 97 + 3} баллов сгорят {burn_date}. Успейте потратить!",
                category="reminder",
                expires_at=clock.now() + timedelta(days=3),
            )
        result.enqueue_s = time.perf_counter() - started
        queued = (await outbox.counts()).get("queued", 0)
        print(
            f"  delivery ({backend}): {args.burst} purchases and {args.messages:,} reminders"
            f" queued {queued:,} messages in {result.enqueue_s:.1f} s",
            file=sys.stderr,
        )
        await emu.start()
        bot = emu.aiogram_bot()
        i18n = build_i18n()
        sender = Sender(
            outbox,
            bot,
            rules.messages,
            rate_per_second=SENDER_RATE,
            per_chat_interval=PER_CHAT_INTERVAL,
            notices=Notices(i18n, rules),
        )
        started = time.perf_counter()
        progress = asyncio.create_task(_progress(emu, queued, started))
        try:
            async with Meter(None) as result.drain:
                result.handled = await sender.drain()
        finally:
            progress.cancel()
            await bot.session.close()
        result.retry_after_seen = sender.retry_after_seen
        result.too_many_requests = emu.stats.too_many_requests
        result.sent_calls = emu.stats.calls["sendMessage"]
        result.statuses = await outbox.counts()
        sends = [call for call in emu.calls_to("sendMessage") if call.ok]
        burst_chat = int(burst.telegram_id)
        moments = sorted(call.time for call in sends)
        to_burst = sorted(c.time for c in sends if int(c.params["chat_id"]) == burst_chat)
        to_others = [c.time for c in sends if int(c.params["chat_id"]) != burst_chat]
        if moments and to_others:
            last_other = max(to_others)
            result.sustained_sends = sum(1 for moment in moments if moment <= last_other)
            result.sustained_s = last_other - moments[0]
            result.max_per_second = _max_in_window(moments)
        result.burst_sent = len(to_burst)
        result.burst_gaps = [b - a for a, b in itertools.pairwise(to_burst)]
        if result.burst_sent != args.burst:
            result.problems.append(f"burst chat: {result.burst_sent} of {args.burst} sent")
    finally:
        await emu.stop()
        await engine.dispose()
        await discard(url)
    return result


# -------------------------------------------------------------------------------- report


def _verdict(checks: list[tuple[str, bool]]) -> str:
    return ", ".join(f"{label}: {'met' if ok else 'NOT met'}" for label, ok in checks)


def print_data(data: Data, lot_count: int) -> None:
    print(
        f"data: {lot_count:,} lots over {data.members:,} members; due at now ({NOW:%Y-%m-%d %H:%M}"
        f" UTC): {data.due_lots:,} lots ({data.due_lots / max(1, lot_count):.1%}),"
        f" {data.due_points:,} points, {data.due_members:,} members;"
        f" expiring within {SOON_DAYS} days: {data.soon_lots:,} lots"
    )


def print_backends(results: list[BackendResult]) -> None:
    header = (
        f"{'backend':<11}{'load s':>8}{'select s':>10}{'warnings':>10}{'burn s':>9}"
        f"{'lots burnt':>12}{'points burnt':>14}{'check s':>9}  targets"
    )
    print(header)
    print("-" * (len(header) + 40))
    for r in results:
        print(
            f"{r.backend:<11}{r.load_s:>8.1f}{r.select.wall:>10.2f}{r.warnings:>10,}"
            f"{r.burn.wall:>9.2f}"
            f"{r.burnt_lots:>12,}{r.burnt_points:>14,}{r.check_s:>9.1f}  {_verdict(r.checks())}"
        )
    for r in results:
        ledger = "no violations" if not r.violations else f"{len(r.violations):,} VIOLATIONS"
        print(
            f"{r.backend}: check_ledger: {ledger}; warnings for {r.warning_members:,} members,"
            f" {r.warning_points:,} points (second selection run {r.select_again_s:.2f} s);"
            f" {r.expiry_entries:,} expiry entries; lots still due after the burn: {r.left_due}"
        )
        print(f"    selection: {r.select}")
        print(f"    burn: {r.burn}")
        print(
            f"    expire_due sent {r.statements:,} statements"
            f" ({r.statements / max(1, r.expiry_entries):.1f} per member burnt): {r.by_verb}"
        )
        for line in (r.violations + r.problems)[:5]:
            print(f"    {line}")


def print_delivery(d: DeliveryResult) -> None:
    statuses = ", ".join(f"{status} {n:,}" for status, n in sorted(d.statuses.items()))
    print(
        f"delivery ({d.backend}): {d.burst} receipts to one member and a reminder to each of"
        f" {d.others:,} others, queued in {d.enqueue_s:.1f} s; drain {d.drain.wall:.1f} s;"
        f" outbox: {statuses}"
    )
    overall = d.sent / d.drain.wall if d.drain.wall else 0.0
    print(
        f"    sustained {d.rate:.2f}/s = {d.share:.1%} of {SENDER_RATE:g}/s ({d.sustained_sends:,}"
        f" sends in {d.sustained_s:.1f} s, while other chats had messages); whole drain"
        f" {overall:.2f}/s; busiest 1 s window: {d.max_per_second} sends; sendMessage calls"
        f" {d.sent_calls:,}; 429s {d.too_many_requests} (Sender saw {d.retry_after_seen})"
    )
    if d.burst_gaps:
        gaps = sorted(d.burst_gaps)
        print(
            f"    burst chat: {d.burst_sent} of {d.burst} sent over"
            f" {sum(d.burst_gaps):.1f} s; gaps between its messages: shortest {gaps[0]:.3f} s,"
            f" median {percentile(gaps, 0.5):.3f} s, longest {gaps[-1]:.3f} s"
        )
    per_message = d.drain.process / max(1, d.sent) * 1000
    print(
        f"    drain: {d.drain}; {per_message:.1f} ms CPU of this process (sender, emulator,"
        f" database) per message sent"
    )
    print(f"    targets: {_verdict(d.checks())}")
    for line in d.problems:
        print(f"    {line}")


async def main(args: argparse.Namespace) -> int:
    wall = time.perf_counter()
    rules = load_rules(ROOT / "rules.toml")
    postgres_missing = None
    if args.only == "postgresql" or not (args.skip_postgres or args.skip_burn):
        try:
            await pg_fetch("SELECT 1")
        except Exception as exc:
            postgres_missing = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
            print(f"{postgres_missing}; skipping PostgreSQL", file=sys.stderr)
    with_postgres = (
        not (args.skip_postgres or args.skip_burn)
        and postgres_missing is None
        and args.only != "sqlite"
    )
    for line in await machine_info(with_postgres=with_postgres):
        print(line)
    results: list[BackendResult] = []
    delivery: DeliveryResult | None = None
    with tempfile.TemporaryDirectory(prefix="scheduler-bench-") as tmp:
        if not args.skip_burn:
            started = time.perf_counter()
            data = generate(args.members, args.lots, args.seed)
            print(f"data generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            print_data(data, args.lots)
            if args.only != "postgresql":
                results.append(await run_sqlite(args, rules, data, Path(tmp)))
            if with_postgres:
                results.append(await run_postgres(args, rules, data))
            del data
    if not args.skip_delivery and not (args.only == "postgresql" and postgres_missing):
        delivery = await run_delivery(args, rules)
    print()
    if results:
        print_backends(results)
    if delivery is not None:
        print_delivery(delivery)
    print(f"run time: {time.perf_counter() - wall:.0f} s")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = [f for r in results for f in r.figures()]
    if delivery is not None:
        figures += delivery.figures()
    report(figures)
    status = 1 if any(r.violations or r.problems for r in results) else 0
    if delivery is not None and delivery.problems:
        status = 1
    checks = [ok for r in results for _, ok in r.checks()]
    if delivery is not None:
        checks += [ok for _, ok in delivery.checks()]
    if args.strict and not all(checks):
        status = 1
    if postgres_missing:
        print(f"\n{postgres_missing}: PostgreSQL skipped")
        if os.environ.get("CI", "").lower() == "true":
            print("CI=true: PostgreSQL must be reachable")
            status = 1
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MEMBERS:,} members, 100,000 lots, a burst of 30 among 750 others",
    )
    parser.add_argument("--lots", type=int, help="lots (default 1,000,000; --quick 100,000)")
    parser.add_argument(
        "--members",
        type=int,
        help="members: of the burn's data, and of the generated dataset the delivery runs on"
        f" (default 200,000; --quick {QUICK_MEMBERS:,})",
    )
    parser.add_argument(
        "--messages",
        type=int,
        help="delivery: other members with one reminder each (default 2,500; --quick 750)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        help="delivery: receipts (purchases) of the one member with many (default 100; --quick 30)",
    )
    parser.add_argument(
        "--only",
        choices=("sqlite", "postgresql"),
        help="one database (the burn on it; the delivery on it instead of SQLite)",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument(
        "--skip-burn", action="store_true", help="only the delivery part (no ledger data)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile expire_due; writes PATH.<backend>"
    )
    args = parser.parse_args(argv)
    for name, full, small in (
        ("lots", 1_000_000, 100_000),
        ("members", 200_000, QUICK_MEMBERS),
        ("messages", 2_500, 750),
        ("burst", 100, 30),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    if args.members < 1 or args.lots < 0 or args.messages < 1 or args.burst < 2:
        parser.error(
            "--members and --messages must be positive, --burst at least 2, --lots not negative"
        )
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
