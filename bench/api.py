"""HTTP purchases per second against the whole program, as production runs it, with receipts.

Run from the repository root (BENCH_DATA_DIR=/work/data where the datasets are prepared):

    .venv/bin/python -m bench.api                    # 200,000 members, both databases
    .venv/bin/python -m bench.api --quick            # 20,000 members, fewer purchases
    .venv/bin/python -m bench.api --only sqlite --profile /tmp/api.pstats

Three processes per database, so that none shares another's event loop (with 2 cores they and
the database still compete for CPU):

* the program: `python -m bench.api --serve app ...` runs `bot.run.running()`, the assembly
  `python -m bot` runs (bot.build's services, polling, the HTTP API, the scheduler with every
  job, the outbox sender), with the settings a deployment gives it through its environment
  (TELEGRAM_API_URL pointing at the emulator below, DATABASE_URL, SEND_RATE_PER_SECOND; see
  --send-rate), and `freeze_what_start_made()` as `run_app` does once started. It prints its
  API's address once the leader's catch-up run of every job has finished, then takes commands
  on stdin (trigger every job now; start/stop the profiler);
* the Telegram Bot API emulator (`emulator.BotAPIEmulator`, rate limiter off) with a chat for
  every member of the dataset that has one (the unreachable ones blocked);
* this process: the clients, and the checks.

The data: a fresh copy of the generated dataset (`bench.prepared.prepared(backend, members)`,
--members, default 200,000; --quick 20,000), discarded at the end. The clients buy for the
active, reachable members with a chat (about 83% of the dataset), so every purchase queues a
receipt in its own transaction that the sender must deliver.

The load: --clients concurrent clients (default 32, one keep-alive connection each) POST
/api/v1/purchases with an API key, the customer by card number, a unique receipt id (the
idempotency key), a random 100-5,000 RUB amount and in about 20% of them points to redeem
within the allowed cap and the till's no-confirmation limit (each client owns its members and
tracks their balances from the answers). Every answer must be 201.

Phases, one after the other, each timed on its own:
1. warm-up (--warmup purchases, not timed);
2. `purchases`: --requests purchases; the jobs run on their own intervals as in production
   (the runs that fell in the window are printed);
3. `purchases while every job runs`: every scheduled job is made due now through the
   scheduler itself (APScheduler's `modify_job(next_run_time=now)`: the same path, job log and
   max_instances as a run on its interval), and the clients keep buying until every job has
   finished and at least --requests purchases were timed, or --jobs-timeout seconds (60)
   have passed (a job still running then is printed as NOT finished);
4. receipts: every timed purchase's receipt must reach its chat in the emulator (a message
   in that chat that names the receipt id) within --drain-timeout seconds; the run fails
   otherwise. Then `check_ledger` must find nothing and the database must hold exactly the
   purchases sent.
5. the floor: the same clients, count and bodies against a bare aiohttp handler in a child
   process answering a fixed JSON body with 201: no auth, no database, no work: what HTTP
   over loopback with these clients costs on this machine at the moment.

Memory: the program's RSS once started and caught up, before any load (idle), and the highest
RSS sampled every 0.1 s under load (peak; VmHWM, the kernel's high-water mark since start, is
printed too).

The send rate: the sender's overall limit (SEND_RATE_PER_SECOND, 25/s by default, Telegram's
broadcast limit) cannot carry a receipt for each of 800 purchases a second; the benchmark runs
the program with --send-rate (default 2,000/s) so that the receipts keep pace with the
purchases: the sender's work then falls inside the timed windows, as it would with a raised
limit (the per-chat limit of one a second stays).

Targets: >= 800 purchases/s on SQLite, >= 1,000/s on PostgreSQL, p99 < 150 ms; p99 < 200 ms
while every job runs; idle RSS < 200 MB, peak < 300 MB. Exits 1 on a lost receipt, ledger
violations, a purchase count that does not match, or a non-201 answer; on a missed target only
with --strict.

--profile PATH: cProfile in the program's event-loop thread (timed by that thread's CPU clock)
during phase 2, written to PATH.<backend>, and during phase 3, to PATH.<backend>.jobs.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Connection, Engine, event, func, select

from api.keys import ApiKeyService
from bench.common import (
    MAX_AMOUNT_KOPECKS,
    MIN_AMOUNT_KOPECKS,
    PG_ADMIN_URL,
    REDEEM_SHARE,
    ROOT,
    Figure,
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
from ledger.rules import Rules, load_rules
from storage.engine import READ_ONLY, create_engine
from storage.schema import job_runs, members, outbox, purchases

TARGETS = {"sqlite": 800, "postgresql": 1_000}
TARGET_P99_MS = 150.0
TARGET_JOBS_P99_MS = 200.0
TARGET_IDLE_MB = 200.0
TARGET_PEAK_MB = 300.0
BACKENDS = ("sqlite", "postgresql")
PURCHASE_PATH = "/api/v1/purchases"
FLOOR_PATH = "/floor"
SECRET_KEY = "bench-api-secret"
BOT_TOKEN = "424242:BENCH"
BOT_USERNAME = "loyalty_bench_bot"
FLOOR_BODY = {
    "receipt_id": "floor",
    "member_id": 1,
    "card_number": "400000000006",
    "accrued": 30,
    "redeemed": 0,
    "balance": 130,
    "tier": "base",
}


# ------------------------------------------------------------------------- child processes


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_app(args: argparse.Namespace) -> int:
    """The program as `python -m bot` assembles it, against the emulator at --emulator."""
    from bot.run import configure_logging, freeze_what_start_made, running
    from bot.settings import Settings
    from ledger.clock import SystemClock

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=BOT_TOKEN,
        telegram_api_url=args.emulator,
        database_url=args.url,
        admin_ids=(),
        api_host="127.0.0.1",
        api_port=0,
        secret_key=SECRET_KEY,
        redis_url=None,
        rules_file=ROOT / "rules.toml",
        log_level="WARNING",
        send_rate_per_second=args.send_rate,
    )
    configure_logging(settings.log_level)
    # Every COMMIT of a transaction that may write, on every engine (the async one and the
    # ledger's own SQLite ones; reads run with READ_ONLY): how many a purchase costs.
    commits = [0]

    def count_commit(conn: Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            commits[0] += 1

    event.listen(Engine, "commit", count_commit)
    async with running(settings, SystemClock()) as app:
        freeze_what_start_made()  # as run_app does once started
        engine = app.services.engine
        runner_id = app.jobs.runner_id
        names = list(app.scheduler.intervals)

        async def finished_since(since: datetime | None) -> dict[str, dict[str, Any]]:
            query = select(job_runs).where(
                job_runs.c.runner == runner_id, job_runs.c.finished_at.is_not(None)
            )
            if since is not None:
                query = query.where(job_runs.c.finished_at >= since)
            async with engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            return {
                row.job: {
                    "started": row.started_at.isoformat(),
                    "seconds": (row.finished_at - row.started_at).total_seconds(),
                    "result": row.result,
                }
                for row in rows
            }

        async def wait_for_jobs(since: datetime | None, seconds: float) -> dict[str, Any]:
            deadline = time.monotonic() + seconds
            done: dict[str, dict[str, Any]] = {}
            while time.monotonic() < deadline:
                done = await finished_since(since)
                if set(names) <= set(done):
                    break
                await asyncio.sleep(0.2)
            return {"done": done, "missing": sorted(set(names) - set(done))}

        caught_up = await wait_for_jobs(None, args.catch_up_timeout)
        print(f"READY {app.api_url} {json.dumps(caught_up)}", flush=True)
        reader = await _stdin_lines()
        profiler: cProfile.Profile | None = None
        while line := (await reader.readline()).decode().strip():
            if line == "jobs":
                since = datetime.now(UTC)
                for name in names:
                    app.scheduler.scheduler.modify_job(name, next_run_time=since)
                print("JOBS-STARTED", flush=True)
                outcome = await wait_for_jobs(since, args.jobs_timeout)
                print(f"JOBS {json.dumps(outcome)}", flush=True)
            elif line == "ran":  # the job runs finished so far, to tell which fell in a window
                print(f"RAN {json.dumps(await finished_since(None))}", flush=True)
            elif line == "commits":
                print(f"COMMITS {commits[0]}", flush=True)
            elif line == "start" and args.profile:
                profiler = cProfile.Profile(time.thread_time)
                profiler.enable()
            elif line.startswith("stop") and profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile + line.removeprefix("stop").strip())
                profiler = None
    return 0


async def serve_emulator(args: argparse.Namespace) -> int:
    """The Bot API emulator with a chat for every member that has one; on stdin, a path to a
    JSON list of [chat_id, receipt_id]: prints how many of those chats got a message naming
    that receipt."""
    from emulator import BotAPIEmulator

    emu = BotAPIEmulator(call_log_size=10_000)
    emu.add_bot(BOT_TOKEN, username=BOT_USERNAME, first_name="Bench")
    chats = await add_dataset_chats(emu, args.url)
    bot = emu.bot()
    base_url = await emu.start()
    print(f"EMULATOR {base_url} {chats}", flush=True)
    reader = await _stdin_lines()
    try:
        while line := (await reader.readline()).decode().strip():
            wanted = await asyncio.to_thread(_read_json, line)
            missing: list[Any]
            delivered, missing = 0, []
            for chat_id, receipt_id in wanted:
                chat = bot.chats.get(chat_id)
                texts = [m.text or "" for m in chat.bot_messages] if chat is not None else []
                if any(receipt_id in text for text in texts):
                    delivered += 1
                elif len(missing) < 5:
                    missing.append([chat_id, receipt_id])
            sent = emu.stats.calls["sendMessage"]
            print(f"DELIVERED {json.dumps([delivered, missing, sent])}", flush=True)
    finally:
        await emu.stop()
    return 0


async def add_dataset_chats(emu: Any, url: str, bot: str | None = None) -> int:
    """A chat in the emulator (`emulator.BotAPIEmulator`) for every member of the dataset at
    `url` that has one, in the member's language, blocked for the unreachable ones; how many."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(members.c.telegram_id, members.c.unreachable, members.c.language).where(
                        members.c.telegram_id.is_not(None)
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    state = emu.bot(bot)
    for telegram_id, unreachable, language in rows:
        emu.user(telegram_id, first_name="Member", language_code=language or "en", bot=bot)
        if unreachable:
            state.chats[telegram_id].blocked = True
    return len(rows)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as source:
        return json.load(source)


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out)


async def _floor_handler(_request: web.Request) -> web.Response:
    return web.json_response(FLOOR_BODY, status=201)


async def serve_floor(_args: argparse.Namespace) -> int:
    app = web.Application()
    app.router.add_post(FLOOR_PATH, _floor_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(f"FLOOR http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    reader = await _stdin_lines()
    try:
        while await reader.readline():
            pass
    finally:
        await runner.cleanup()
    return 0


class Child:
    """A `python -m bench.api --serve KIND ...` child: commands on stdin, answers on stdout."""

    def __init__(self, kind: str, *argv: str) -> None:
        self.argv = [sys.executable, "-m", "bench.api", "--serve", kind, *argv]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, expect: str, wait: float) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**24,
        )
        return await self.expect(expect, wait)

    async def expect(self, word: str, wait: float) -> str:
        """The rest of the next line that starts with `word` (earlier lines are skipped)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), wait)
            if not raw:
                raise RuntimeError(f"{self.argv[4]} child ended (exit {await self.proc.wait()})")
            line = raw.decode().strip()
            if line.startswith(word + " ") or line == word:
                return line[len(word) :].strip()

    async def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    def rss_mb(self, field: str = "VmRSS") -> float:
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def cpu(self) -> float:
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ---------------------------------------------------------------------- the load generator


@dataclass
class Phase:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    redeemed: int = 0
    refused: int = 0  # redemptions above what the member had by then (422, nothing changed)
    receipts: list[tuple[int, str]] = field(default_factory=list)  # (chat, receipt id)
    server_cpu: float = 0.0
    machine_cpu: float = 0.0
    peak_rss_mb: float = 0.0
    jobs: dict[str, Any] = field(default_factory=dict)
    load: float = 0.0
    commits: int = 0  # write transactions the program committed in the phase

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


@dataclass
class Customer:
    card: str
    chat: int
    balance: int


@dataclass
class Customers:
    rules: Rules
    partitions: list[list[Customer]]

    def body(self, client: int, rng: random.Random, receipt_id: str) -> tuple[Customer, dict]:
        customer = rng.choice(self.partitions[client])
        amount = rng.randint(MIN_AMOUNT_KOPECKS, MAX_AMOUNT_KOPECKS)
        redeem = 0
        if rng.random() < REDEEM_SHARE:
            cap = policy.redeemable_points(self.rules, amount, customer.balance)
            cap = min(cap, self.rules.member_confirm_above)  # no confirmation asked at the till
            if cap > 0:
                redeem = rng.randint(1, cap)
        return customer, {
            "receipt_id": receipt_id,
            "customer": customer.card,
            "amount": policy.format_amount(amount),
            "redeem_points": redeem,
        }


BodyFactory = Callable[[int, random.Random, str], tuple[Customer, dict]]


async def drive(
    url: str,
    headers: dict[str, str],
    clients: int,
    make_body: BodyFactory,
    prefix: str,
    seed: int,
    phase: Phase,
    *,
    count: int,
    until: asyncio.Event | None = None,
    sample: Child | None = None,
) -> None:
    """POSTs from `clients` concurrent clients, each waiting for its previous answer: `count`
    in all, or (with `until`) at least `count` and on until `until` is set."""
    connector = aiohttp.TCPConnector(limit=clients, keepalive_timeout=60)
    done = 0

    async def client(w: int, n: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        rng = random.Random(seed * 1000 + w)
        i = 0
        while i < n or (until is not None and not until.is_set()):
            customer, body = make_body(w, rng, f"{prefix}-c{w}-{i}")
            i += 1
            started = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    payload = await response.json()
                    status = response.status
            except Exception as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            if status == 422 and payload.get("error", {}).get("code") == "redeem_above_limit":
                # Points burnt or spent since this client last saw the balance (a job ran):
                # the till hears how many it may take, as a real one would.
                customer.balance = min(customer.balance, int(payload["error"]["allowed"]))
                phase.refused += 1
                continue
            if status != 201:
                phase.errors.append(f"HTTP {status}: {payload}")
                continue
            customer.balance = payload.get("balance", customer.balance)
            phase.latencies.append(elapsed)
            phase.redeemed += 1 if body["redeem_points"] else 0
            phase.receipts.append((customer.chat, body["receipt_id"]))
            done += 1

    async def sampler() -> None:
        assert sample is not None
        while True:
            phase.peak_rss_mb = max(phase.peak_rss_mb, sample.rss_mb())
            await asyncio.sleep(0.1)

    sampling = asyncio.create_task(sampler()) if sample is not None else None
    cpu, busy = (sample.cpu() if sample else 0.0), machine_busy()
    phase.load = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(
                *(client(w, n, session) for w, n in enumerate(split(count, clients)))
            )
    finally:
        phase.seconds = time.perf_counter() - started
        phase.server_cpu = (sample.cpu() - cpu) if sample else 0.0
        phase.machine_cpu = machine_busy() - busy
        if sampling is not None:
            sampling.cancel()


# -------------------------------------------------------------------------------- running


@dataclass
class Result:
    backend: str
    members: int
    plain: Phase = field(default_factory=Phase)
    jobs: Phase = field(default_factory=Phase)
    floor: Phase = field(default_factory=Phase)
    idle_mb: float = 0.0
    hwm_mb: float = 0.0
    catch_up: dict[str, Any] = field(default_factory=dict)
    ran_in_plain: list[str] = field(default_factory=list)
    receipts_expected: int = 0
    receipts_delivered: int = 0
    receipts_missing: list[Any] = field(default_factory=list)
    plain_in_window: int = 0  # the plain phase's receipts delivered by its end
    drain_s: float = 0.0  # from the end of the jobs phase until every receipt had arrived
    violations: list[str] = field(default_factory=list)
    stored: int = 0
    expected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(
            self.problems
            or self.violations
            or self.plain.errors
            or self.jobs.errors
            or self.stored != self.expected
            or self.receipts_delivered != self.receipts_expected
        )

    def figures(self, clients: int) -> list[Figure]:
        name = "SQLite" if self.backend == "sqlite" else "PostgreSQL"
        where = f"{name}, {clients} clients, {self.members:,} members"
        target = TARGETS[self.backend]
        floor = self.floor.rate
        peak = max(self.plain.peak_rss_mb, self.jobs.peak_rss_mb)
        return [
            Figure(
                "api",
                f"HTTP purchases with receipts, {where}",
                self.plain.rate,
                "/s",
                f">= {target:,}/s",
                self.plain.rate >= target,
                floor,
                self.plain.rate / floor if floor else None,
            ),
            Figure("api", f"p50, {where}", self.plain.p(0.5), "ms"),
            Figure(
                "api",
                f"p99, {where}",
                self.plain.p(0.99),
                "ms",
                f"< {TARGET_P99_MS:.0f} ms",
                self.plain.p(0.99) < TARGET_P99_MS,
                self.floor.p(0.99),
            ),
            Figure(
                "api",
                f"HTTP purchases while every job runs, {where}",
                self.jobs.rate,
                "/s",
                floor=floor,
                ratio=self.jobs.rate / floor if floor else None,
            ),
            Figure("api", f"p50 while every job runs, {where}", self.jobs.p(0.5), "ms"),
            Figure(
                "api",
                f"p99 while every job runs, {where}",
                self.jobs.p(0.99),
                "ms",
                f"< {TARGET_JOBS_P99_MS:.0f} ms",
                self.jobs.p(0.99) < TARGET_JOBS_P99_MS,
            ),
            Figure(
                "api",
                f"receipts of the timed purchases delivered to the emulator, {name}",
                self.receipts_delivered,
                f"of {self.receipts_expected:,}",
                "all",
                self.receipts_delivered == self.receipts_expected,
            ),
            Figure(
                "api",
                f"program RSS idle (started, caught up, before load), {name}",
                self.idle_mb,
                "MB",
                f"< {TARGET_IDLE_MB:.0f} MB",
                self.idle_mb < TARGET_IDLE_MB,
            ),
            Figure(
                "api",
                f"program RSS peak under load (sampled every 0.1 s), {name}",
                peak,
                "MB",
                f"< {TARGET_PEAK_MB:.0f} MB",
                peak < TARGET_PEAK_MB,
            ),
        ]


async def _customers(url: str, rules: Rules, clients: int) -> tuple[Customers, str]:
    """The active, reachable members with a chat, split among the clients; a new API key."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(members.c.card_number, members.c.telegram_id, members.c.balance)
                    .where(
                        members.c.telegram_id.is_not(None),
                        members.c.status == "active",
                        members.c.unreachable.is_(False),
                        members.c.erased_at.is_(None),
                    )
                    .order_by(members.c.id)
                )
            ).all()
        _key, secret = await ApiKeyService(engine).create("bench")
    finally:
        await engine.dispose()
    everyone = [Customer(card, chat, balance) for card, chat, balance in rows]
    return Customers(rules, [everyone[w::clients] for w in range(clients)]), secret


async def _count_purchases(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            counted = await conn.execute(select(func.count()).select_from(purchases))
            return int(counted.scalar_one())
    finally:
        await engine.dispose()


async def _check(url: str, result: Result) -> None:
    engine = create_engine(url)
    try:
        result.violations = [str(v) for v in await check_ledger(engine)]
        async with engine.connect() as conn:
            statuses = (
                await conn.execute(
                    select(outbox.c.status, func.count())
                    .where(outbox.c.kind == "purchase", outbox.c.status != "sent")
                    .group_by(outbox.c.status)
                )
            ).all()
        if statuses:
            print(f"  receipts not sent, by status: {dict(statuses)}", file=sys.stderr)
    finally:
        await engine.dispose()


async def _delivered(
    emulator: Child, receipts: list[tuple[int, str]], path: str
) -> tuple[int, list, int]:
    await asyncio.to_thread(_write_json, path, receipts)
    await emulator.send(path)
    answer = await emulator.expect("DELIVERED", 120)
    delivered, missing, sent = json.loads(answer)
    return int(delivered), missing, int(sent)


async def run_backend(backend: str, args: argparse.Namespace) -> Result:
    result = Result(backend, args.members)
    rules = load_rules(ROOT / "rules.toml")
    print(f"- {backend}: preparing a copy of {args.members:,} members", file=sys.stderr)
    url = await prepared(backend, args.members, quiet=True)
    emulator = Child("emulator", "--url", url)
    app: Child | None = None
    tag = secrets.token_hex(3)
    try:
        emu_url = (await emulator.start("EMULATOR", 300)).split()[0]
        app_argv = ["--url", url, "--emulator", emu_url, "--send-rate", str(args.send_rate)]
        app_argv += ["--catch-up-timeout", str(args.catch_up_timeout)]
        app_argv += ["--jobs-timeout", str(args.jobs_timeout)]
        if args.profile:
            app_argv += ["--profile", f"{args.profile}.{backend}"]
        app = Child("app", *app_argv)
        started = time.perf_counter()
        api_url, caught_up = (await app.start("READY", args.catch_up_timeout + 120)).split(" ", 1)
        result.catch_up = json.loads(caught_up)
        print(
            f"  started and caught up in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{n} {d['seconds']:.1f} s" for n, d in result.catch_up["done"].items())
            + (
                f"; NOT finished: {result.catch_up['missing']}"
                if result.catch_up["missing"]
                else ""
            ),
            file=sys.stderr,
        )
        await asyncio.sleep(1.0)
        result.idle_mb = app.rss_mb()
        # After the catch-up (its burns change balances): whom the clients buy for.
        customers, secret = await _customers(url, rules, args.clients)
        before = await _count_purchases(url)
        headers = {"Authorization": f"Bearer {secret}"}
        target = f"{api_url}{PURCHASE_PATH}"
        warm = Phase()
        await drive(
            target, headers, args.clients, customers.body, f"w{tag}", args.seed + 1, warm,
            count=args.warmup,
        )  # fmt: skip
        if warm.errors:
            result.problems.append(f"warm-up: {warm.errors[:3]}")
        await app.send("ran")
        ran_before = await app.expect("RAN", 30)
        window_start = datetime.now(UTC)
        await app.send("commits")
        commits_before = int(await app.expect("COMMITS", 30))
        await app.send("start")
        await drive(
            target, headers, args.clients, customers.body, f"p{tag}", args.seed, result.plain,
            count=args.requests, sample=app,
        )  # fmt: skip
        await app.send("stop")
        # How far the sender kept up: the plain phase's receipts already in their chats.
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-api-{tag}.json")
        result.plain_in_window = (await _delivered(emulator, result.plain.receipts, path))[0]
        await app.send("commits")
        result.plain.commits = int(await app.expect("COMMITS", 30)) - commits_before
        await app.send("ran")
        ran_after = await app.expect("RAN", 30)
        before_runs, after_runs = json.loads(ran_before), json.loads(ran_after)
        result.ran_in_plain = [
            f"{n} ({d['seconds']:.1f} s)"
            for n, d in after_runs.items()
            if before_runs.get(n, {}).get("started") != d["started"]
            and datetime.fromisoformat(d["started"]) >= window_start
        ]
        # Every job now, purchases on until they have all finished.
        jobs_done = asyncio.Event()

        async def trigger() -> None:
            assert app is not None
            await app.send("jobs")
            await app.expect("JOBS-STARTED", 30)
            outcome = await app.expect("JOBS", args.jobs_timeout + 60)
            result.jobs.jobs = json.loads(outcome)
            jobs_done.set()

        await app.send("start")
        triggering = asyncio.create_task(trigger())
        await drive(
            target, headers, args.clients, customers.body, f"j{tag}", args.seed + 2, result.jobs,
            count=args.requests, until=jobs_done, sample=app,
        )  # fmt: skip
        await triggering
        await app.send("stop .jobs")
        result.hwm_mb = app.rss_mb("VmHWM")
        # Every receipt of the timed purchases must reach its chat.
        timed = result.plain.receipts + result.jobs.receipts
        result.receipts_expected = len(timed)
        deadline = time.monotonic() + args.drain_timeout
        drain_started = time.monotonic()
        try:
            while True:
                delivered, missing, _sent = await _delivered(emulator, timed, path)
                if delivered == len(timed) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        result.receipts_delivered, result.receipts_missing = delivered, missing
        result.drain_s = time.monotonic() - drain_started
        await app.close()
        app = None
        await _check(url, result)
        result.stored = await _count_purchases(url) - before
        result.expected = (
            len(warm.latencies) + len(result.plain.latencies) + len(result.jobs.latencies)
        )
    finally:
        if app is not None:
            await app.close()
        await emulator.close()
        await discard(url)
        if url.startswith("sqlite"):  # the scheduler's leader lock beside the file
            with contextlib.suppress(OSError):
                os.unlink(url.removeprefix("sqlite+aiosqlite:///") + "-leader")
    floor = Child("floor")
    try:
        floor_url = await floor.start("FLOOR", 60)
        headers = {"Authorization": "Bearer floor"}
        flat = Customers(rules, customers.partitions)
        await drive(
            f"{floor_url}{FLOOR_PATH}", headers, args.clients, flat.body, "fw", 1, Phase(),
            count=args.warmup,
        )  # fmt: skip
        await drive(
            f"{floor_url}{FLOOR_PATH}", headers, args.clients, flat.body, "f", args.seed,
            result.floor, count=args.requests, sample=floor,
        )  # fmt: skip
    finally:
        await floor.close()
    return result


def print_details(result: Result, clients: int) -> None:
    r = result
    print(
        f"{r.backend}: {len(r.plain.latencies):,} purchases in {r.plain.seconds:.1f} s"
        f" ({r.plain.rate:,.0f}/s, p50 {r.plain.p(0.5):.1f} ms, p99 {r.plain.p(0.99):.1f} ms,"
        f" load {r.plain.load:.2f}; {r.plain.redeemed:,} redeemed points,"
        f" {r.plain.refused} refused for want of points); jobs that ran in that window:"
        f" {', '.join(r.ran_in_plain) or 'none'}"
    )
    jobs = r.jobs.jobs.get("done", {})
    print(
        f"    while every job runs: {len(r.jobs.latencies):,} purchases in {r.jobs.seconds:.1f} s"
        f" ({r.jobs.rate:,.0f}/s, p50 {r.jobs.p(0.5):.1f} ms, p99 {r.jobs.p(0.99):.1f} ms,"
        f" load {r.jobs.load:.2f}; {r.jobs.refused} redemptions refused); jobs: "
        + ", ".join(f"{n} {d['seconds']:.2f} s" for n, d in jobs.items())
        + (f"; NOT finished: {r.jobs.jobs.get('missing')}" if r.jobs.jobs.get("missing") else "")
    )
    print(
        f"    floor (bare aiohttp, fixed JSON, no auth, no database): {r.floor.rate:,.0f}/s,"
        f" p99 {r.floor.p(0.99):.1f} ms; ratio {r.plain.rate / max(r.floor.rate, 1e-9):.2f}"
    )
    for label, phase in (("purchases", r.plain), ("with jobs", r.jobs), ("floor", r.floor)):
        n = max(1, len(phase.latencies))
        print(
            f"    CPU per request ({label}): server {phase.server_cpu / n * 1000:.2f} ms,"
            f" whole machine {phase.machine_cpu / n * 1000:.2f} ms"
        )
    print(
        f"    write transactions (COMMITs of all but read-only ones) of the program per purchase"
        f" in the plain phase (purchases, receipts sent, everything else):"
        f" {r.plain.commits / max(1, len(r.plain.latencies)):.2f}"
    )
    print(
        f"    receipts of the plain phase in their chats when it ended: {r.plain_in_window:,} of"
        f" {len(r.plain.receipts):,}; all receipts there {r.drain_s:.1f} s after the jobs phase"
    )
    print(
        f"    receipts delivered: {r.receipts_delivered:,} of {r.receipts_expected:,}"
        + (f" MISSING e.g. {r.receipts_missing}" if r.receipts_missing else "")
    )
    print(
        f"    RSS: idle {r.idle_mb:.0f} MB, peak sampled"
        f" {max(r.plain.peak_rss_mb, r.jobs.peak_rss_mb):.0f} MB, VmHWM {r.hwm_mb:.0f} MB"
    )
    ledger = "no violations" if not r.violations else f"{len(r.violations)} VIOLATIONS"
    stored = "" if r.stored == r.expected else f" (expected {r.expected:,}: MISMATCH)"
    print(f"    check_ledger: {ledger}; {r.stored:,} purchases stored{stored}")
    for line in (r.problems + r.violations + r.plain.errors + r.jobs.errors)[:8]:
        print(f"    {line}")


async def main(args: argparse.Namespace) -> int:
    current = asyncio.current_task()
    if current is not None and hasattr(signal, "SIGTERM"):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    wanted = [b.strip() for b in args.only.split(",")] if args.only else list(BACKENDS)
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        print(f"unknown backend(s): {sorted(unknown)}; choose from {BACKENDS}")
        return 2
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
    print(
        f"aiohttp {aiohttp.__version__}; the program in a child process (bot.run.running),"
        f" SEND_RATE_PER_SECOND {args.send_rate:g}; {args.clients} clients; {args.members:,}"
        f" members; {args.requests:,} timed purchases per phase"
    )
    results = []
    for backend in wanted:
        results.append(await run_backend(backend, args))
    print()
    figures: list[Figure] = []
    for result in results:
        print_details(result, args.clients)
        figures += result.figures(args.clients)
    print()
    report(figures)
    status = 1 if any(r.failed for r in results) else 0
    if args.strict and not all(f.met for f in figures if f.met is not None):
        status = 1
    if postgres_missing:
        print(f"\n{postgres_missing}: PostgreSQL row skipped")
        if os.environ.get("CI", "").lower() == "true":
            status = 1
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=None, help="dataset size (200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 members, 3,000 purchases")
    parser.add_argument("--requests", type=int, default=None, help="timed purchases per phase")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--send-rate", type=float, default=2_000.0, help="SEND_RATE_PER_SECOND of the program"
    )
    parser.add_argument("--catch-up-timeout", type=float, default=600.0)
    parser.add_argument(
        "--jobs-timeout", type=float, default=60.0, help="phase 3 ends then, jobs done or not"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {BACKENDS}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", metavar="PATH", help="cProfile of the program's phase 2")
    parser.add_argument("--serve", choices=("app", "emulator", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--emulator", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members is None:
        args.members = 20_000 if args.quick else 200_000
    if args.requests is None:
        args.requests = 3_000 if args.quick else 10_000
    return args


SERVE = {"app": serve_app, "emulator": serve_emulator, "floor": serve_floor}

if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        sys.exit(asyncio.run(SERVE[arguments.serve](arguments)))
    sys.exit(asyncio.run(main(arguments)))
