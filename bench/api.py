"""HTTP API throughput: purchases per second over TCP, next to a bare-aiohttp floor.

Run from the repository root:

    .venv/bin/python -m bench.api
    .venv/bin/python -m bench.api --requests 2000 --clients 32 --skip-postgres
    .venv/bin/python -m bench.api --only postgresql --profile /tmp/api.pstats

The server is the real `api.app.build_api` application (LedgerService + ApiKeyService, no
notifier), served by aiohttp's AppRunner/TCPSite on 127.0.0.1 in a child process
(`python -m bench.api --serve api ...`), so the load generator never shares the server's event
loop; with 2 cores the two processes (and the database) still compete for CPU.

For each backend, on fresh data:

* sqlite: a new WAL file database in a temp dir (the engine as `storage.engine` makes it);
* postgresql: a scratch database `loyalty_bench_api_<pid>`, created fresh and dropped at the end;
  the server's engine has pool_size --pool-size (default 16, no overflow, as storage.engine
  makes it).

The parent migrates the schema, registers --members members (default 1,000; not timed) and
creates an API key. Then --clients concurrent clients (default 32) in one aiohttp ClientSession
(TCPConnector limit = clients, keep-alive) send --warmup purchases (not timed), then --requests
timed ones (default 5,000): POST /api/v1/purchases with `Authorization: Bearer <key>`, the
customer by card number, a unique receipt id, a random 100-5,000 RUB amount and in about 20%
of them points to redeem within the allowed cap (each client owns its members and tracks their
balance from the answers, so no redemption is refused). Every answer must be 201; latency is the
client's (request sent to body read and parsed); purchases/s is the count over the timed
phase's wall time. Afterwards `check_ledger` must find no violations and the database must hold
exactly the purchases sent.

The floor: the same clients, requests and bodies against a bare aiohttp handler in a child
process that answers a fixed JSON body with 201 (no auth, no database), measured right after
each backend. ratio = purchases/s / floor requests/s.

Targets: >= 800 purchases/s on SQLite, >= 1,000/s on PostgreSQL, p99 < 150 ms. This prints
figures; it does not fail on a missed target unless --strict is given. It exits non-zero on
ledger violations or non-201 answers, and when PostgreSQL is unreachable under CI=true.

--profile PATH runs cProfile in the serving process (its event loop thread only, timed by that
thread's CPU clock) during the timed phase and writes PATH.<backend>; profiled figures are slower
than unprofiled ones.

PostgreSQL admin URL: as in bench.ledger ($BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import ApiServices, api_runner, build_api
from api.keys import ApiKeyService
from bench.common import (
    MAX_AMOUNT_KOPECKS,
    MIN_AMOUNT_KOPECKS,
    PG_ADMIN_URL,
    PG_POOL_SIZE,
    REDEEM_SHARE,
    ROOT,
    Probe,
    backend_probe,
    cpu_delta,
    machine_busy,
    machine_info,
    percentile,
    pg_admin,
    pg_fetch,
    pg_urls,
    split,
    verb,
)
from bot.run import freeze_what_start_made
from ledger import policy
from ledger.invariants import check_ledger
from ledger.rules import Rules, load_rules
from ledger.service import LedgerService
from storage.engine import create_engine
from storage.migrate import upgrade_schema
from storage.schema import purchases
from storage.transactions import share_the_gil_quickly

TARGETS = {"sqlite": 800, "postgresql": 1_000}
TARGET_P99_MS = 150.0
BACKENDS = ("sqlite", "postgresql")
PURCHASE_PATH = "/api/v1/purchases"
FLOOR_PATH = "/floor"
SECRET_KEY = "bench-api-secret"
FLOOR_BODY = {
    "receipt_id": "floor",
    "member_id": 1,
    "card_number": "400000000006",
    "accrued": 30,
    "redeemed": 0,
    "balance": 130,
    "tier": "base",
}


# ------------------------------------------------------------------------ the server child


@dataclass
class ServerStats:
    """What the serving process counts between `start` and `stop` (SQL and pool checkouts)."""

    statements: int = 0
    by_verb: Counter[str] = field(default_factory=Counter)
    checkouts: int = 0
    connects: int = 0  # new DBAPI connections (pool overflow churn)

    def listen(self, engine: AsyncEngine) -> None:
        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            self.statements += 1
            self.by_verb[verb(statement)] += 1

        def checkout(*_args: Any) -> None:
            self.checkouts += 1

        def connect(*_args: Any) -> None:
            self.connects += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        event.listen(engine.sync_engine.pool, "checkout", checkout)
        event.listen(engine.sync_engine.pool, "connect", connect)

    def reset(self) -> None:
        self.statements, self.checkouts, self.connects = 0, 0, 0
        self.by_verb.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "by_verb": dict(self.by_verb),
            "checkouts": self.checkouts,
            "connects": self.connects,
        }


async def _floor_handler(_request: web.Request) -> web.Response:
    return web.json_response(FLOOR_BODY, status=201)


async def serve(args: argparse.Namespace) -> int:
    """Serve the API (or the floor) on 127.0.0.1, print `PORT <n>`, obey commands on stdin.

    Commands, one per line: `start` (reset counters, start the profiler), `stop` (stop and dump
    the profiler, print a JSON line of counters). End of input shuts the server down.
    """
    engine: AsyncEngine | None = None
    stats = ServerStats()
    if args.serve == "api":
        engine = create_engine(args.url, pool_size=args.pool_size)
        ledger = LedgerService(engine, load_rules(ROOT / "rules.toml"))
        app = build_api(
            ApiServices(
                ledger=ledger, keys=ApiKeyService(engine, db=ledger.db), secret_key=SECRET_KEY
            )
        )
        stats.listen(engine)
        share_the_gil_quickly()  # as bot.build does
    else:
        app = web.Application()
        app.router.add_post(FLOOR_PATH, _floor_handler)
    runner = api_runner(app, header_timeout=10.0)  # as bot.run serves it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    if args.serve == "api":
        freeze_what_start_made()  # as bot.run.run_app does once started
    print(f"PORT {port}", flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # CPU time of the event loop's thread, not wall time: on a busy machine wall time charges
    # whatever was running when the scheduler preempted us (often a socket send) with the wait.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "start":
                stats.reset()
                if profiler is not None:
                    profiler.enable()
            elif line == "stop":
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                print(json.dumps(stats.to_json()), flush=True)
    finally:
        await runner.cleanup()
        if engine is not None:
            await engine.dispose()
    return 0


class ServerProcess:
    """A `python -m bench.api --serve ...` child: its port, its CPU time, its counters."""

    def __init__(self, kind: str, url: str, pool_size: int, profile: str | None) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "bench.api",
            "--serve",
            kind,
            "--url",
            url,
            "--pool-size",
            str(pool_size),
        ] + (["--profile", profile] if profile else [])
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> ServerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        line = await asyncio.wait_for(self._readline(), timeout=60)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def _readline(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode().strip()

    async def command(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    async def stop(self) -> dict[str, Any]:
        await self.command("stop")
        found: dict[str, Any] = json.loads(await asyncio.wait_for(self._readline(), timeout=60))
        return found

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) the child has used so far (Linux)."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- the load generator


@dataclass
class Phase:
    """One timed phase against one server."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    redeemed: int = 0
    server_cpu: float = 0.0  # CPU seconds of the serving process (all its threads)
    client_cpu: float = 0.0  # CPU seconds of this process (the load generator)
    machine_cpu: float = 0.0  # CPU seconds of every process (incl. PostgreSQL, others)
    db_cpu: float | None = None  # CPU seconds of the PostgreSQL backends serving the server
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


@dataclass
class Customers:
    """Each client's own members (card numbers) and their balances as last answered."""

    rules: Rules
    partitions: list[list[str]]
    balances: dict[str, int]

    def body(self, client: int, rng: random.Random, receipt_id: str) -> dict[str, Any]:
        card = rng.choice(self.partitions[client])
        amount = rng.randint(MIN_AMOUNT_KOPECKS, MAX_AMOUNT_KOPECKS)
        redeem = 0
        if rng.random() < REDEEM_SHARE:
            cap = policy.redeemable_points(self.rules, amount, self.balances[card])
            if cap > 0:
                redeem = rng.randint(1, cap)
        return {
            "receipt_id": receipt_id,
            "customer": card,
            "amount": policy.format_amount(amount),
            "redeem_points": redeem,
        }


BodyFactory = Callable[[int, random.Random, str], dict[str, Any]]


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    clients: int,
    count: int,
    make_body: BodyFactory,
    prefix: str,
    seed: int,
    phase: Phase | None,
    balances: dict[str, int] | None,
) -> float:
    """`count` POSTs from `clients` concurrent clients, each waiting for its previous answer."""

    async def client(w: int, n: int) -> None:
        rng = random.Random(seed * 1000 + w)
        for i in range(n):
            body = make_body(w, rng, f"{prefix}-c{w}-{i}")
            started = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    payload = await response.json()
                    status = response.status
            except Exception as exc:
                if phase is None:
                    raise
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            if status != 201:
                message = f"HTTP {status}: {payload}"
                if phase is None:
                    raise RuntimeError(message)
                phase.statuses[status] += 1
                phase.errors.append(message)
                continue
            if balances is not None:
                balances[body["customer"]] = payload["balance"]
            if phase is not None:
                phase.statuses[status] += 1
                phase.latencies.append(elapsed)
                phase.redeemed += 1 if body.get("redeem_points") else 0

    started = time.perf_counter()
    await asyncio.gather(*(client(w, n) for w, n in enumerate(split(count, clients))))
    return time.perf_counter() - started


async def measure(
    server: ServerProcess,
    path: str,
    headers: dict[str, str],
    make_body: BodyFactory,
    balances: dict[str, int] | None,
    args: argparse.Namespace,
    tag: str,
    probe: Probe | None = None,
) -> Phase:
    """Warm up, then time --requests POSTs; the server's counters cover the timed part only."""
    phase = Phase()
    url = f"http://127.0.0.1:{server.port}{path}"
    connector = aiohttp.TCPConnector(limit=args.clients, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        await drive(
            session,
            url,
            headers,
            args.clients,
            args.warmup,
            make_body,
            f"{tag}-warm",
            args.seed + 1,
            None,
            balances,
        )
        await server.command("start")
        db_before = await probe() if probe is not None else {}
        server_cpu, client_cpu, machine_cpu = server.cpu(), time.process_time(), machine_busy()
        phase.seconds = await drive(
            session,
            url,
            headers,
            args.clients,
            args.requests,
            make_body,
            f"{tag}-bench",
            args.seed,
            phase,
            balances,
        )
        phase.server_cpu = server.cpu() - server_cpu
        phase.client_cpu = time.process_time() - client_cpu
        phase.machine_cpu = machine_busy() - machine_cpu
        if probe is not None:
            phase.db_cpu = cpu_delta(db_before, await probe())
        phase.server = await server.stop()
    return phase


# -------------------------------------------------------------------------------- running


@dataclass
class Result:
    backend: str
    api: Phase = field(default_factory=Phase)
    floor: Phase = field(default_factory=Phase)
    violations: list[str] = field(default_factory=list)
    stored: int = 0  # purchases in the database afterwards
    expected: int = 0

    @property
    def ratio(self) -> float:
        return self.api.rate / self.floor.rate if self.floor.rate else 0.0

    def checks(self) -> list[tuple[str, bool]]:
        target = TARGETS[self.backend]
        return [
            (f">= {target:,}/s", self.api.rate >= target),
            (f"p99 < {TARGET_P99_MS:.0f} ms", self.api.p(0.99) < TARGET_P99_MS),
        ]

    @property
    def failed(self) -> bool:
        return bool(self.violations or self.api.errors or self.stored != self.expected)


async def _register_members(ledger: LedgerService, count: int, tasks: int) -> dict[str, int]:
    """Card number -> balance (the welcome bonus) of `count` new members."""
    numbers = iter(range(count))
    found: dict[str, int] = {}

    async def registrar() -> None:
        for n in numbers:  # the tasks share the iterator: each number is registered once
            done = await ledger.register_member(f"+7998{n + 1:07d}", first_name="Till")
            found[done.member.card_number] = done.member.balance

    await asyncio.gather(*(registrar() for _ in range(tasks)))
    return found


async def _prepare(engine: AsyncEngine, args: argparse.Namespace) -> tuple[Customers, str]:
    """Migrate, register the members (not timed), create an API key."""
    rules = load_rules(ROOT / "rules.toml")
    await upgrade_schema(engine)
    tasks = 1 if engine.dialect.name == "sqlite" else 8
    balances = await _register_members(LedgerService(engine, rules), args.members, tasks)
    cards = sorted(balances)
    _key, secret = await ApiKeyService(engine).create("bench")
    partitions = [cards[w :: args.clients] for w in range(args.clients)]
    return Customers(rules=rules, partitions=partitions, balances=balances), secret


async def run_backend(
    backend: str, url: str, args: argparse.Namespace, probe: Probe | None = None
) -> Result:
    result = Result(backend, expected=args.warmup + args.requests)
    print(
        f"- {backend}: {args.members:,} members, {args.warmup} warm-up + {args.requests:,} "
        f"purchases, {args.clients} clients",
        file=sys.stderr,
    )
    engine = create_engine(url, pool_size=args.pool_size)
    try:
        customers, secret = await _prepare(engine, args)
        profile = f"{args.profile}.{backend}" if args.profile else None
        async with ServerProcess("api", url, args.pool_size, profile) as server:
            result.api = await measure(
                server,
                PURCHASE_PATH,
                {"Authorization": f"Bearer {secret}"},
                customers.body,
                customers.balances,
                args,
                f"{backend}-{secrets.token_hex(3)}",
                probe,
            )
        if profile:
            print(f"  cProfile of the server's timed phase written to {profile}", file=sys.stderr)
        result.violations = [str(v) for v in await check_ledger(engine)]
        async with engine.connect() as conn:
            stored = await conn.execute(select(func.count()).select_from(purchases))
            result.stored = int(stored.scalar_one())
    finally:
        await engine.dispose()
    async with ServerProcess("floor", "", 0, None) as floor:
        floor_headers = {"Authorization": "Bearer floor"}
        result.floor = await measure(
            floor, FLOOR_PATH, floor_headers, customers.body, None, args, "floor"
        )
    return result


def print_table(results: list[Result], clients: int) -> None:
    header = (
        f"{'backend':<12}{'clients':>8}{'requests':>10}{'purch/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'floor/s':>10}{'floor p99':>11}{'ratio':>7}  targets"
    )
    print(header)
    print("-" * (len(header) + 40))
    for r in results:
        targets = ", ".join(f"{label}: {'met' if ok else 'NOT met'}" for label, ok in r.checks())
        print(
            f"{r.backend:<12}{clients:>8}{len(r.api.latencies):>10,}{r.api.rate:>10,.0f}"
            f"{r.api.p(0.5):>9.2f}{r.api.p(0.99):>9.2f}{r.floor.rate:>10,.0f}"
            f"{r.floor.p(0.99):>11.2f}{r.ratio:>7.2f}  {targets}"
        )
    print()
    for r in results:
        ledger = "no violations" if not r.violations else f"{len(r.violations)} VIOLATIONS"
        stored = "" if r.stored == r.expected else f" (expected {r.expected:,}: MISMATCH)"
        errors = f"; {len(r.api.errors)} ERRORS {dict(r.api.statuses)}" if r.api.errors else ""
        print(
            f"{r.backend}: check_ledger: {ledger}; {r.stored:,} purchases stored{stored}; "
            f"{r.api.redeemed:,} of {len(r.api.latencies):,} redeemed points{errors}"
        )
        for line in (r.violations + r.api.errors)[:5]:
            print(f"    {line}")
        n, fn = max(1, len(r.api.latencies)), max(1, len(r.floor.latencies))
        db = f" PostgreSQL {r.api.db_cpu / n * 1000:.2f} ms," if r.api.db_cpu is not None else ""
        print(
            f"    CPU per purchase: server {r.api.server_cpu / n * 1000:.2f} ms,"
            f" client {r.api.client_cpu / n * 1000:.2f} ms,{db}"
            f" whole machine {r.api.machine_cpu / n * 1000:.2f} ms"
            f" (wall {r.api.seconds / n * 1000:.2f} ms); floor per request:"
            f" server {r.floor.server_cpu / fn * 1000:.2f} ms,"
            f" client {r.floor.client_cpu / fn * 1000:.2f} ms,"
            f" whole machine {r.floor.machine_cpu / fn * 1000:.2f} ms"
        )
        if r.api.server_cpu:
            print(
                f"    the server's own CPU bound: {n / r.api.server_cpu:,.0f} purchases/s per core"
                f" it has to itself (floor: {fn / max(r.floor.server_cpu, 1e-9):,.0f} requests/s)"
            )
        stats = r.api.server
        if stats.get("statements"):
            verbs = ", ".join(
                f"{verb} {count / n:.2f}" for verb, count in Counter(stats["by_verb"]).most_common()
            )
            print(
                f"    server SQL per purchase through SQLAlchemy's execution (storage.fast and"
                f" the sync SQLite engine not counted): {stats['statements'] / n:.2f} statements"
                f" ({verbs})"
            )
        if stats:
            print(
                f"    server pool (async engine): {stats['checkouts'] / n:.2f} checkouts per"
                f" purchase; {stats['connects']:,} new database connections opened in the timed"
                " phase"
            )


async def main(args: argparse.Namespace) -> int:
    current = asyncio.current_task()
    if current is not None and hasattr(signal, "SIGTERM"):
        # SIGTERM cancels the run: the server child is stopped and the scratch database dropped.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    wanted = [b.strip() for b in args.only.split(",")] if args.only else list(BACKENDS)
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        print(f"unknown backend(s): {sorted(unknown)}; choose from {BACKENDS}")
        return 2
    if args.skip_postgres:
        wanted = [b for b in wanted if b != "postgresql"]
    postgres_missing = None
    if "postgresql" in wanted:
        try:
            await pg_fetch("SELECT 1")
        except Exception as exc:
            postgres_missing = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
            wanted = [b for b in wanted if b != "postgresql"]
            print(f"{postgres_missing}; skipping the PostgreSQL row", file=sys.stderr)
    for line in await machine_info(with_postgres="postgresql" in wanted):
        print(line)
    print(f"aiohttp {aiohttp.__version__}; server in a child process, pool_size {args.pool_size}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        for backend in wanted:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'api.db'}"
                results.append(await run_backend(backend, url, args))
                continue
            name = f"loyalty_bench_api_{os.getpid()}"
            url, _dsn = pg_urls(name)
            await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await pg_admin(f"CREATE DATABASE {name}")
            try:
                results.append(await run_backend(backend, url, args, backend_probe(name)))
            finally:
                await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print()
    print_table(results, args.clients)
    status = 1 if any(r.failed for r in results) else 0
    if args.strict and not all(ok for r in results for _, ok in r.checks()):
        status = 1
    if postgres_missing:
        print(f"\n{postgres_missing}: PostgreSQL row skipped")
        if os.environ.get("CI", "").lower() == "true":
            print("CI=true: PostgreSQL must be reachable")
            status = 1
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=5_000, help="timed purchases per backend (default 5000)"
    )
    parser.add_argument(
        "--clients", type=int, default=32, help="concurrent clients = connector limit (32)"
    )
    parser.add_argument("--members", type=int, default=1_000, help="members (default 1000)")
    parser.add_argument(
        "--warmup", type=int, default=500, help="untimed requests first (default 500)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=PG_POOL_SIZE,
        help=f"the server engine's pool_size on PostgreSQL (default {PG_POOL_SIZE})",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {BACKENDS}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the server's timed phase; writes PATH.<backend>"
    )
    parser.add_argument("--serve", choices=("api", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.members < args.clients:
        parser.error("--clients must be at least 1 and --members at least --clients")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(asyncio.run(serve(arguments) if arguments.serve else main(arguments)))
