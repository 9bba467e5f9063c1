"""Helpers shared by the benchmarks under bench/.

Machine and CPU probes (/proc), the PostgreSQL admin connection and scratch-database URLs,
percentiles, splitting work among workers, the SQL statement census, the machine description
printed above each table, and the purchase mix that bench.ledger and bench.api both generate.

PostgreSQL admin URL: $BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test (as in tests/conftest.py).
"""

from __future__ import annotations

import os
import platform
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
REDEEM_SHARE = 0.2
MIN_AMOUNT_KOPECKS = 100_00
MAX_AMOUNT_KOPECKS = 5_000_00
PG_POOL_SIZE = 16

Probe = Callable[[], Awaitable[dict[int, float]]]


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
            self.by_verb[verb(statement)] += 1

        def checkout(*_args: Any) -> None:
            self.checkouts += 1

        pool = engine.sync_engine.pool
        self.pre_ping = bool(getattr(pool, "_pre_ping", False))
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        event.listen(pool, "checkout", checkout)

        def stop() -> None:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
            event.remove(pool, "checkout", checkout)

        return stop


def verb(statement: str) -> str:
    return statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def machine_busy() -> float:
    """CPU seconds all processes on this machine have used (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- PostgreSQL


async def pg_fetch(query: str, *params: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        return list(await conn.fetch(query, *params))
    finally:
        await conn.close()


async def pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pg_urls(name: str) -> tuple[str, str]:
    """(SQLAlchemy URL, plain asyncpg DSN) of the scratch database `name`; the admin URL's
    query (e.g. `?host=/var/run/postgresql` for the Unix socket) is kept."""
    parts = urlsplit(PG_ADMIN_URL)
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1), dsn


def backend_probe(dbname: str) -> Probe:
    """CPU seconds used so far by each PostgreSQL backend process connected to `dbname`.

    Read from /proc, so only for a server on this machine; a pid that is not a postgres
    process here (a remote or containerised server) is ignored.
    """

    async def probe() -> dict[int, float]:
        rows = await pg_fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
        tick = os.sysconf("SC_CLK_TCK")
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


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float | None:
    if not after:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def machine_info(with_postgres: bool) -> list[str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    busy = load[0] > 0.5 * (os.cpu_count() or 1)
    lines = [
        f"cpus (nproc): {os.cpu_count()}, {platform.machine()}, {platform.platform()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" SQLAlchemy {sqlalchemy.__version__}",
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + ("  (busy machine: figures will be low)" if busy else ""),
    ]
    if with_postgres:
        version = (await pg_fetch("SHOW server_version"))[0][0]
        lines.append(f"PostgreSQL {version} at {pg_urls('')[1]}")
    return lines


# ---------------------------------------------------------------------------- clocks


class ShiftedClock:
    """The real clock, moved so that it starts at `start` (and then runs in real time)."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


# ---------------------------------------------------------------------------- figures


FIGURES_ENV = "BENCH_FIGURES"  # a file each benchmark appends its figures to (bench.all)


@dataclass
class Figure:
    """One measured figure, with the target it is held to and, where one applies, the plain
    floor measured in the same run (ratio = value / floor, or floor / value for times)."""

    benchmark: str  # "api", "ledger", "updates", "scheduler", ...
    name: str  # what was measured, e.g. "HTTP purchases with receipts, SQLite, 32 clients"
    value: float
    unit: str  # "/s", "ms", "s", "MB"
    target: str = ""  # e.g. ">= 800/s", "< 150 ms"; empty: reported, not held to a target
    met: bool | None = None
    floor: float | None = None
    ratio: float | None = None
    ratio_target: str = ""

    def line(self) -> str:
        value = f"{self.value:,.1f} {self.unit}".replace(" /s", "/s")
        parts = [f"{self.name}: {value}"]
        if self.floor is not None:
            parts.append(f"floor {self.floor:,.1f} {self.unit}".replace(" /s", "/s"))
        if self.ratio is not None:
            parts.append(
                f"ratio {self.ratio:.2f}" + (f" ({self.ratio_target})" if self.ratio_target else "")
            )
        if self.target:
            parts.append(f"target {self.target}")
        if self.met is not None:
            parts.append("met" if self.met else "MISSED")
        return "; ".join(parts)


def report(figures: list[Figure]) -> None:
    """Print the figures and append them to $BENCH_FIGURES (JSON lines) when it is set."""
    import json
    from dataclasses import asdict

    for figure in figures:
        print("FIGURE " + figure.line())
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for figure in figures:
                out.write(json.dumps(asdict(figure), ensure_ascii=False) + "\n")
