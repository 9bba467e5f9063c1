"""Memory of the real process: `python -m bot` with everything started, idle and under a load.

Run from the repository root:

    .venv/bin/python -m bench.memory --quick          # 20,000 generated members
    .venv/bin/python -m bench.memory                  # 200,000
    .venv/bin/python -m bench.memory --quick --env MALLOC_ARENA_MAX=2   # a deployment setting

1. Import baselines, each in a fresh interpreter: `import aiogram` (the library alone) and
   `import bot.run` (everything the running process imports), peak RSS (VmHWM).
2. The process: the Bot API emulator in this process, a fresh copy of the generated dataset
   (`bench.prepared`), and `python -m bot` started on them as production starts it (long
   polling, the HTTP API, the scheduler, the outbox's sender; SQLite or PostgreSQL). Once it
   polls, this waits --settle seconds (default 20) and reads the process's VmRSS from /proc:
   the idle figure (the smallest and largest of the window's samples are printed too). On a
   new copy the first start's jobs catch up (points burnt, burn warnings and birthday bonuses
   queued, the outbox sending them at its rate): --restart starts the process once first,
   stops it after the window, and measures the second start, as a restart in production.
3. A short load through the chat (not timed): --users members of the dataset (default 200,
   --concurrency at a time) each press /start, "Balance" and "Card" (a QR card drawn and
   uploaded), twice over; then --purchases purchases (default 5,000) through its HTTP API by
   --clients clients at once (default 32; a receipt queued for every member with a chat).
   VmRSS is sampled every 0.1 s during each load; the larger peak is the peak under load.
   VmHWM, the process's own peak since it started (start-up included), is printed too.
   bench.api measures the API's throughput; this measures memory only, nothing is timed.

Targets (issue 14): idle < 200 MB; peak under load < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from api.keys import ApiKeyService
from bench.common import ROOT, Figure, machine_info, report
from bench.prepared import BACKENDS, discard, prepared
from emulator import BotAPIEmulator, BotMessage, EmulatedUser
from storage.engine import create_engine

TOKEN = "123456:BENCH-MEMORY"
IDLE_TARGET_MB = 200.0
PEAK_TARGET_MB = 300.0
IMPORTS = {
    "import aiogram": "import aiogram",
    "import bot.run": "import bot.cli, bot.run",
}
_STATUS = "import sys; print(open('/proc/self/status').read(), file=sys.stderr)"


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of a process, in MB (from /proc/PID/status)."""
    figures: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        figures.update(_parse_status(status.read()))
    return figures


def _parse_status(text: str) -> dict[str, float]:
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    figures: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            figures[name] = int(rest.split()[0]) / 1024  # kB
    return figures


def import_baseline(statement: str, env: dict[str, str]) -> dict[str, float]:
    """Peak and current RSS of a fresh interpreter that runs `statement` and nothing else."""
    done = subprocess.run(
        [sys.executable, "-c", f"{statement}\n{_STATUS}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return _parse_status(done.stderr)


def process_env(extra: dict[str, str]) -> dict[str, str]:
    settings = {"BOT_TOKEN", "DATABASE_URL", "TELEGRAM_API_URL", "SECRET_KEY", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


MEMBERS_QUERY = (
    "SELECT telegram_id, card_number FROM members WHERE telegram_id IS NOT NULL"
    " AND status = 'active' AND erased_at IS NULL AND unreachable = {false} ORDER BY id"
)


async def members_to_drive(url: str, count: int, seed: int) -> list[tuple[int, str]]:
    """(Telegram id, card number) of `count` active members with a reachable chat, picked
    at random among the first 20 * count."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite+aiosqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db:
            query = MEMBERS_QUERY.format(false="0") + " LIMIT ?"
            rows = [tuple(row) for row in db.execute(query, (count * 20,))]
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            query = MEMBERS_QUERY.format(false="false") + " LIMIT $1"
            rows = [tuple(row) for row in await conn.fetch(query, count * 20)]
        finally:
            await conn.close()
    random.Random(seed).shuffle(rows)
    return [(int(row[0]), str(row[1])) for row in rows[:count]]


async def api_key(url: str) -> str:
    """A new API key in the copy (before the bot starts on it)."""
    engine = create_engine(url)
    try:
        _key, secret = await ApiKeyService(engine).create("bench-memory")
    finally:
        await engine.dispose()
    return secret


async def purchases(
    api_url: str, key: str, cards: list[str], total: int, clients: int, seed: int
) -> int:
    """`total` purchases through the HTTP API by `clients` clients at once (each one a new
    receipt for a member from `cards`; members with a chat get a receipt through the outbox).
    Returns how many were answered 201."""
    rng = random.Random(seed)
    bodies = [
        {
            "receipt_id": f"MEM-{seed}-{i}",
            "customer": rng.choice(cards),
            "amount": f"{rng.randint(100, 5_000)}.00",
            "redeem_points": 0,
        }
        for i in range(total)
    ]
    headers = {"Authorization": f"Bearer {key}"}
    created = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal created
        while bodies:
            body = bodies.pop()
            async with session.post(f"{api_url}/api/v1/purchases", json=body) as answer:
                await answer.read()
                created += answer.status == 201

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return created


def api_url_from(log: Path) -> str:
    found = re.search(r"HTTP API on (http://\S+)", log.read_text())
    if found is None:
        raise _failed("the bot did not say where its HTTP API listens", log)
    return found.group(1)


class PeakWatch:
    """The largest VmRSS of a process, sampled every 0.1 s while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> PeakWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])


@contextlib.asynccontextmanager
async def bot_process(
    emulator: BotAPIEmulator, database_url: str, workdir: Path, extra_env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot` on the emulator and the database; SIGTERM when the block ends."""
    env = process_env(
        {
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": emulator.base_url,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-memory-secret",
            "RULES_FILE": str(ROOT / "rules.toml"),
            "API_PORT": "0",
            **extra_env,
        }
    )
    log = (workdir / "bot.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=workdir, env=env, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def wait_polling(
    emulator: BotAPIEmulator, process: asyncio.subprocess.Process, log: Path
) -> float:
    """Seconds from now until the process asks for updates (it has started everything)."""
    started = time.perf_counter()
    while not emulator.calls_to("getUpdates"):
        if process.returncode is not None:
            raise _failed(f"the bot exited with {process.returncode}", log)
        if time.perf_counter() - started > 300:
            raise _failed("the bot did not start polling in 300 s", log)
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


def _failed(why: str, log: Path) -> SystemExit:
    return SystemExit(f"{why}; its output:\n{log.read_text()}")


async def sample(pid: int, seconds: float, every: float = 0.5) -> list[float]:
    """VmRSS (MB) every `every` seconds for `seconds`."""
    values: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        values.append(proc_status(pid)["VmRSS"])
        await asyncio.sleep(every)
    values.append(proc_status(pid)["VmRSS"])
    return values


def _button(user: EmulatedUser, emoji: str) -> str:
    for text in user.reply_keyboard_texts:
        if text.startswith(emoji):
            return text
    raise AssertionError(f"no {emoji} button on the menu: {user.reply_keyboard_texts}")


async def answer(user: EmulatedUser, what: str, wanted: Callable[[BotMessage], bool]) -> None:
    """Read the chat until the answer arrives (a receipt, a reminder or a greeting the
    outbox sends in between is passed over)."""
    for _ in range(20):
        if wanted(await user.wait_message(timeout=30)):
            return
    raise AssertionError(f"no {what} in chat {user.chat_id}")


def _with_menu(message: BotMessage) -> bool:
    return "keyboard" in (message.reply_markup or {})


async def one_member(user: EmulatedUser) -> None:
    """/start, then Balance and Card from the menu (in the member's language)."""
    await user.send_command("/start")
    await answer(user, "menu", _with_menu)
    await user.press_reply_button(_button(user, "💰"))
    await answer(user, "balance", lambda message: (message.text or "").startswith("💰"))
    await user.press_reply_button(_button(user, "💳"))
    await answer(user, "card", lambda message: message.kind == "photo")


async def drive(users: list[EmulatedUser], concurrency: int, rounds: int) -> None:
    queue: asyncio.Queue[EmulatedUser] = asyncio.Queue()
    for _ in range(rounds):
        for user in users:
            queue.put_nowait(user)

    async def worker() -> None:
        while not queue.empty():
            await one_member(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def idle_figure(args: argparse.Namespace, pid: int, window: list[float]) -> Figure:
    status = proc_status(pid)
    print(
        f"idle VmRSS {status['VmRSS']:.1f} MB (min {min(window):.1f}, max {max(window):.1f}"
        f" over the window), RssAnon {status['RssAnon']:.1f}, RssFile {status['RssFile']:.1f},"
        f" VmHWM {status['VmHWM']:.1f}"
    )
    started = "a restart" if args.restart else "the first start on a new copy"
    return Figure(
        "memory",
        f"python -m bot idle RSS, {args.backend}, {args.members:,} members, {started}",
        status["VmRSS"],
        "MB",
        target=f"< {IDLE_TARGET_MB:.0f} MB",
        met=status["VmRSS"] < IDLE_TARGET_MB,
    )


async def chat_peak(
    args: argparse.Namespace, emulator: BotAPIEmulator, pid: int, members: list[int]
) -> Figure:
    users = [emulator.user(member, language_code=None) for member in members]
    async with PeakWatch(pid) as watch:
        began = time.perf_counter()
        await drive(users, args.concurrency, rounds=2)
    took = time.perf_counter() - began
    print(f"chat: {len(users)} members x 2 rounds x 3 updates in {took:.1f} s")
    label = f"python -m bot peak RSS, chat load ({len(users)} members x /start, Balance, Card)"
    return Figure("memory", label, watch.peak, "MB")


async def http_peak(
    args: argparse.Namespace, pid: int, log: Path, key: str, cards: list[str]
) -> Figure:
    api_url = api_url_from(log)
    async with PeakWatch(pid) as watch:
        began = time.perf_counter()
        created = await purchases(api_url, key, cards, args.purchases, args.clients, args.seed)
    took = time.perf_counter() - began
    print(f"HTTP: {created} purchases created in {took:.1f} s by {args.clients} clients")
    if created != args.purchases:
        raise _failed(f"only {created} of {args.purchases} purchases were created", log)
    label = (
        f"python -m bot peak RSS, HTTP load ({args.purchases:,} purchases with receipts,"
        f" {args.clients} clients)"
    )
    return Figure("memory", label, watch.peak, "MB")


async def run_process(
    args: argparse.Namespace, url: str, members: list[tuple[int, str]], key: str
) -> list[Figure]:
    """Start the process on the copy, read it idle, then under the loads."""
    figures: list[Figure] = []
    emulator = BotAPIEmulator()
    emulator.add_bot(TOKEN, username="loyalty_memory_bot", first_name="Loyalty")
    await emulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
            log = Path(scratch) / "bot.log"
            async with bot_process(emulator, url, Path(scratch), args.env) as process:
                start = await wait_polling(emulator, process, log)
                print(f"polling {start:.1f} s after the start; idle for {args.settle} s")
                window = await sample(process.pid, args.settle)
                figures.append(idle_figure(args, process.pid, window))
                loads: list[Figure] = []
                if args.users:
                    chat = [member for member, _ in members[: args.users]]
                    loads.append(await chat_peak(args, emulator, process.pid, chat))
                if args.purchases:
                    cards = [card for _, card in members]
                    loads.append(await http_peak(args, process.pid, log, key, cards))
                figures.extend(loads)
                if loads:
                    peak = max(figure.value for figure in loads)
                    figures.append(
                        Figure(
                            "memory",
                            f"python -m bot peak RSS under load, {args.backend},"
                            f" {args.members:,} members",
                            peak,
                            "MB",
                            target=f"< {PEAK_TARGET_MB:.0f} MB",
                            met=peak < PEAK_TARGET_MB,
                        )
                    )
                high = proc_status(process.pid)["VmHWM"]
                figures.append(Figure("memory", "python -m bot VmHWM (start included)", high, "MB"))
    finally:
        await emulator.stop()
    return figures


async def measure(args: argparse.Namespace) -> list[Figure]:
    args.env = dict(item.split("=", 1) for item in args.env)
    figures: list[Figure] = []
    for label, statement in IMPORTS.items():
        baseline = import_baseline(statement, process_env(args.env))
        figures.append(
            Figure("memory", f"{label}: peak RSS in a fresh interpreter", baseline["VmHWM"], "MB")
        )
    for line in await machine_info(with_postgres=args.backend == "postgresql"):
        print(line)
    url = await prepared(args.backend, args.members)
    try:
        members = await members_to_drive(url, max(args.users, 1_000), args.seed)
        key = await api_key(url)
        if args.restart:
            print("a first start (its jobs catch up on the new copy), stopped after the window")
            first = argparse.Namespace(**{**vars(args), "users": 0, "purchases": 0})
            await run_process(first, url, members, key)
        figures.extend(await run_process(args, url, members, key))
    finally:
        await discard(url)
        if url.startswith("sqlite"):  # the scheduler's leadership lock beside the copy
            _remove(Path(f"{url.removeprefix('sqlite+aiosqlite:///')}-leader"))
    return figures


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 members")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--settle", type=float, default=20.0, help="idle seconds before reading")
    parser.add_argument("--users", type=int, default=200, help="members driven (0: no load)")
    parser.add_argument("--concurrency", type=int, default=20, help="chat members at once")
    parser.add_argument(
        "--purchases", type=int, default=5_000, help="HTTP purchases after the chat (0: none)"
    )
    parser.add_argument("--clients", type=int, default=32, help="HTTP clients at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the bot's environment"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="measure a second start on the copy (the first one's jobs have caught up)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.members = 20_000
    figures = asyncio.run(measure(args))
    report(figures)
    missed = any(figure.met is False for figure in figures)
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
