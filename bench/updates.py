"""Chat updates per second: the real bot long-polling the in-process emulator, and an echo floor.

Run from the repository root:

    .venv/bin/python -m bench.updates
    .venv/bin/python -m bench.updates --users 200 --updates 3000 --concurrency 20
    .venv/bin/python -m bench.updates --profile /tmp/updates.pstats

Everything runs in one process and one event loop, as in the e2e tests: the Bot API emulator
(rate limiter off), the real `bot.run.Application` (fresh SQLite WAL file database in a temp
dir, long polling, outbox sender, scheduler, HTTP API) and the simulated users. The emulator's
and the users' CPU therefore count against the bot; the echo floor pays the same overhead.

1. Register N users (default 200, language "en") through the chat, not timed: /start, press
   the consent button, share the own contact. Then seed purchases straight through
   `app.services.ledger.purchase` (default 15 per member: 16 journal entries, 2 history pages).
2. Warm-up, not timed: every user asks for "💳 Card" once (the PNG is rendered and uploaded,
   so later cards are re-sent by file_id) and "📜 History" once (the message whose buttons are
   pressed later); then --warmup mixed updates.
3. Timed: --updates updates (default 3,000) in an exact, shuffled mix: 50% "💰 Balance" text,
   30% history page turns (a callback "hist:1"/"hist:0" on the user's history message,
   alternating so each one really changes the page; the edit is the answer), 20% "💳 Card"
   (re-sent by file_id; checked). --concurrency workers (default 20) each own a slice of the
   users and send the next update only when the previous answer arrived, so at most
   --concurrency updates are in flight and a user never has two.
   Latency: from enqueueing the update in the emulator to the moment the emulator records the
   answer (sendMessage/sendPhoto stored, or editMessageText applied). updates/s is the count
   divided by the wall time of the whole timed phase. Before it, the set-up heap (registration,
   warm-up, the emulator's state) is gc.freeze()d so that full collections timed below walk
   only what the timed phase creates (--no-gc-freeze to keep them; they pause everything).
4. Floor: a bare aiogram Dispatcher (one message handler answering the text, one callback
   handler that answers the query and edits the message) polling the same emulator as a second
   bot, with the same users count, warm-up, mix, concurrency and measurement. ratio = bot
   updates/s / echo updates/s. The ratio of updates per CPU second of the process is printed
   too: on a machine shared with other work it moves less than wall-clock rates.

Diagnostics printed for the bot: Bot API calls, updates per getUpdates, CPU share, pydantic
generic models rebuilt (aiogram's Response[...] types), SQL statements per update through the
async engine (overall and, one update at a time afterwards, per kind; the ledger's reads on the
sync SQLite engine and `storage.fast` statements are not seen), time spent per SQL verb from
the loop's side, new DB connections; --profile adds a cProfile of the timed phase grouped by
package.

Targets: >= 300 updates/s, p99 < 100 ms, ratio >= 0.3. This prints figures; it exits 1 on wrong
or missing answers, and on a missed target only with --strict.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy import event, update

from bench.common import ROOT, percentile, verb
from bot.run import Application, freeze_what_start_made
from bot.settings import Settings
from emulator import BotAPIEmulator, BotMessage, EmulatedUser, UploadedFile, running_polling
from emulator.state import Signal
from storage.schema import outbox

APP_TOKEN = "700001:BENCH-LOYALTY"
ECHO_TOKEN = "700002:BENCH-ECHO"
FIRST_USER_ID = 910_000_001
BALANCE, HISTORY, CARD = "💰 Balance", "📜 History", "💳 Card"
MIX = (("balance", 0.5), ("history", 0.3), ("card", 0.2))
KINDS = tuple(kind for kind, _ in MIX)
TARGET_RATE = 300.0
TARGET_P99_MS = 100.0
TARGET_RATIO = 0.3
SETUP_TIMEOUT = 60.0  # seconds per answer while registering and warming up (not timed)
CENSUS_UPDATES = 20  # per kind, one at a time after the timed phase, to count SQL per update

Checker = Callable[[str, "SimUser", BotMessage, int], "str | None"]


# ---------------------------------------------------------------------- diagnostics

GENERIC_MODELS_BUILT = Counter[str]()  # aiogram Response[...] models created, by name


def count_generic_models() -> None:
    """Count the creations of aiogram's `Response[...]` models (aiogram parametrizes them on every
    API call and pydantic caches the result only weakly), through pydantic's public
    `__pydantic_init_subclass__` hook, which leaves the creation itself unchanged."""
    from aiogram.methods.base import Response

    def created(cls: type, **_kwargs: Any) -> None:
        GENERIC_MODELS_BUILT[cls.__name__] += 1

    Response.__pydantic_init_subclass__ = classmethod(created)  # type: ignore[assignment,method-assign]


# ------------------------------------------------------------------------- measuring


class AnswerProbe(Signal):
    """A chat's change signal that also stamps the moment an awaited answer is recorded.

    Installed as `chat.changed`: the emulator calls `notify()` synchronously inside the API
    method that stored the bot's message or edit, so the stamp is not delayed by the waiting
    coroutine's turn in the event loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._condition: Callable[[], bool] | None = None
        self._waiter: asyncio.Future[float] | None = None

    def expect(self, condition: Callable[[], bool]) -> asyncio.Future[float]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._condition = condition
        return self._waiter

    def notify(self) -> None:
        super().notify()
        if self._condition is not None and self._condition():
            stamp = time.perf_counter()
            waiter, self._waiter, self._condition = self._waiter, None, None
            if waiter is not None and not waiter.done():
                waiter.set_result(stamp)


@dataclass
class SimUser:
    handle: EmulatedUser
    probe: AnswerProbe
    history: BotMessage | None = None  # the message whose history buttons get pressed
    page: int = 0


@dataclass
class Run:
    """One timed phase."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    process_cpu: float = 0.0  # CPU seconds of the process (all threads) in the timed phase
    loop_cpu: float = 0.0  # CPU seconds of the event loop's thread in the timed phase
    api_calls: Counter[str] = field(default_factory=Counter)
    sql: Counter[str] = field(default_factory=Counter)
    sql_seconds: dict[str, list[float]] = field(default_factory=dict)  # per verb, each statement
    census: dict[str, Counter[str]] = field(default_factory=dict)  # SQL by update kind, serial
    connections_opened: int = 0  # new DB connections (pool overflow churn) in the timed phase
    generic_models: Counter[str] = field(default_factory=Counter)  # Response[...] rebuilds
    gc_runs: Counter[int] = field(default_factory=Counter)  # garbage collections by generation
    gc_seconds: float = 0.0  # time spent in them (the loop is stopped meanwhile)
    gc_longest: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]

    @property
    def count(self) -> int:
        return len(self.all_latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def cpu_rate(self) -> float:
        """Updates per CPU second of the process: less sensitive to other processes' load."""
        return self.count / self.process_cpu if self.process_cpu else 0.0

    def p(self, q: float, kind: str | None = None) -> float:
        values = self.all_latencies if kind is None else self.latencies[kind]
        return percentile(values, q) * 1000


# ----------------------------------------------------------------------------- users


def make_users(emu: BotAPIEmulator, token: str, count: int) -> list[SimUser]:
    sims = []
    for i in range(count):
        handle = emu.user(FIRST_USER_ID + i, f"Bench{i}", language_code="en", bot=token)
        probe = AnswerProbe()
        handle.chat.changed = probe
        sims.append(SimUser(handle, probe))
    return sims


async def step(sim: SimUser, kind: str, wait_s: float, check: Checker) -> tuple[float, str | None]:
    """Send one update and wait for its answer: (latency in seconds or -1, problem or None)."""
    user = sim.handle
    messages = user.chat.bot_messages
    page = 1 - sim.page
    target = sim.history
    count = len(messages)
    if kind == "history":
        assert target is not None, "history message missing: warm-up did not run"
        edited = target
        seen = len(edited.edits)
        waiter = sim.probe.expect(lambda: len(edited.edits) > seen)
        started = time.perf_counter()
        await user.press(edited, f"hist:{page}")
    else:
        waiter = sim.probe.expect(lambda: len(messages) > count)
        started = time.perf_counter()
        await user.send_text(BALANCE if kind == "balance" else CARD)
    try:
        async with asyncio.timeout(wait_s):
            answered = await waiter
    except TimeoutError:
        if kind == "history":
            sim.page = page  # a late edit lands on this page; the next press must turn it back
        return -1.0, f"user {user.id}: no answer to {kind} within {wait_s}s"
    if kind == "history" and target is not None:
        sim.page = page
        return answered - started, check(kind, sim, target, page)
    return answered - started, check(kind, sim, messages[count], page)


def loyalty_check(kind: str, sim: SimUser, answer: BotMessage, page: int) -> str | None:
    text = answer.content or ""
    if kind == "balance" and text.startswith("💰 Balance:"):
        return None
    if kind == "history" and text.startswith(f"📜 History, page {page + 1} of "):
        return None
    if kind == "card" and answer.kind == "photo":
        return None
    return f"user {sim.handle.id}: unexpected answer to {kind}: {answer.kind} {text[:60]!r}"


def echo_check(kind: str, sim: SimUser, answer: BotMessage, page: int) -> str | None:
    expected = {"balance": BALANCE, "card": CARD, "history": f"page {page}"}[kind]
    if answer.text == expected:
        return None
    return f"user {sim.handle.id}: unexpected echo to {kind}: {answer.text!r}"


def mixed_kinds(total: int, seed: int) -> list[str]:
    """An exact mix (largest remainder), shuffled."""
    counts = {kind: int(total * share) for kind, share in MIX}
    by_remainder = sorted(MIX, key=lambda item: -(total * item[1]) % 1)
    for kind, _ in by_remainder[: total - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(kinds)
    return kinds


async def drive(
    sims: Sequence[SimUser],
    kinds: Sequence[str],
    concurrency: int,
    wait_s: float,
    check: Checker,
    run: Run | None,
) -> float:
    """Play `kinds` with `concurrency` workers, each owning a slice of the users; wall seconds."""
    workers = max(1, min(concurrency, len(sims)))
    errors: list[str] = run.errors if run is not None else []

    async def worker(w: int) -> None:
        own = sims[w::workers]
        for i, kind in enumerate(kinds[w::workers]):
            latency, problem = await step(own[i % len(own)], kind, wait_s, check)
            if problem is not None:
                errors.append(problem)
            if latency >= 0 and run is not None:
                run.latencies[kind].append(latency)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - started
    if run is None and errors:
        raise RuntimeError(f"warm-up failed: {errors[:3]}")
    return elapsed


async def first_answers(
    sims: Sequence[SimUser],
    text: str,
    concurrency: int,
    wait_s: float,
    keep: Callable[[SimUser, BotMessage], None] | None = None,
) -> None:
    """Every user sends `text` once and waits for the answer (warm-up)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(sim: SimUser) -> None:
        async with gate:
            await sim.handle.send_text(text)
            answer = await sim.handle.wait_message(wait_s)
            if keep is not None:
                keep(sim, answer)

    for sim in sims:
        sim.handle.mark_read()
    await asyncio.gather(*(one(sim) for sim in sims))


def keep_history(sim: SimUser, answer: BotMessage) -> None:
    sim.history, sim.page = answer, 0


async def timed(
    run: Run,
    sims: Sequence[SimUser],
    args: argparse.Namespace,
    check: Checker,
    emu: BotAPIEmulator,
    profiler: cProfile.Profile | None = None,
) -> None:
    kinds = mixed_kinds(args.updates, args.seed)
    calls_before = Counter(emu.stats.calls)
    built_before = Counter(GENERIC_MODELS_BUILT)
    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started.append(time.perf_counter())
        elif gc_started:
            spent = time.perf_counter() - gc_started.pop()
            run.gc_runs[info["generation"]] += 1
            run.gc_seconds += spent
            run.gc_longest = max(run.gc_longest, spent)

    if args.gc_freeze:
        # Registration, warm-up and the emulator's state are a large, long-lived heap that the
        # bot in production does not carry: keep it out of the full collections timed below.
        gc.collect()
        gc.freeze()
    gc.callbacks.append(on_gc)
    loop_cpu, process_cpu = time.thread_time(), time.process_time()
    if profiler is not None:
        profiler.enable()
    try:
        run.seconds = await drive(sims, kinds, args.concurrency, args.timeout, check, run)
    finally:
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
    run.loop_cpu = time.thread_time() - loop_cpu
    run.process_cpu = time.process_time() - process_cpu
    run.api_calls = Counter(emu.stats.calls)
    run.api_calls.subtract(calls_before)
    run.generic_models = GENERIC_MODELS_BUILT - built_before


# ------------------------------------------------------------------------ the loyalty bot


async def join(user: EmulatedUser, phone: str, wait_s: float) -> None:
    """/start, press the consent button, share the own contact (as tests/e2e/conftest.join)."""
    await user.send_command("/start")
    greeting = await user.wait_message(wait_s)
    await user.press_button(greeting, greeting.inline_buttons[0].text)
    share = await user.wait_message(wait_s)
    await user.press_reply_button(share.keyboard_texts[0], phone_number=phone)
    welcome = await user.wait_message(wait_s)
    if not welcome.keyboard_texts:
        raise RuntimeError(f"user {user.id} was not registered: {welcome.text!r}")


async def bench_loyalty(emu: BotAPIEmulator, args: argparse.Namespace, tmp: Path) -> Run:
    run = Run("loyalty bot")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=APP_TOKEN,
        telegram_api_url=emu.base_url,
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        secret_key="bench-secret-key",
        rules_file=ROOT / "rules.toml",
        api_port=0,
    )
    app = Application(settings)
    await app.start()
    freeze_what_start_made()  # as bot.run.run_app does once started
    try:
        assert app.services is not None and app.engine is not None
        ledger = app.services.ledger
        sims = make_users(emu, APP_TOKEN, args.users)

        started = time.perf_counter()
        gate = asyncio.Semaphore(args.concurrency)

        async def register(i: int, sim: SimUser) -> None:
            async with gate:
                await join(sim.handle, f"+7999{i + 1:07d}", SETUP_TIMEOUT)

        await asyncio.gather(*(register(i, sim) for i, sim in enumerate(sims)))
        rng = random.Random(args.seed)
        for sim in sims:
            member = await ledger.member_by_telegram(sim.handle.id)
            assert member is not None
            for k in range(args.purchases):
                await ledger.purchase(
                    receipt_id=f"S-{sim.handle.id}-{k}",
                    member_id=member.member_id,
                    amount_kopecks=rng.randint(100_00, 5_000_00),
                )
        # The seeded purchases are history: their receipts (queued with them) went out long
        # ago. Those the sender has not taken yet are marked sent; what it had taken arrives
        # now and is read, so the timed chat starts with nothing unread.
        async with app.engine.begin() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.status == "queued", outbox.c.dedup_key.like("receipt:purchase:S-%"))
                .values(status="sent")
            )
        await asyncio.sleep(2)
        for sim in sims:
            sim.handle.mark_read()
        setup = time.perf_counter() - started
        run.notes.append(
            f"set-up: {args.users} users registered through the chat and {args.purchases}"
            f" purchases each seeded via the ledger in {setup:.1f}s"
        )

        started = time.perf_counter()
        await first_answers(sims, CARD, args.concurrency, SETUP_TIMEOUT)
        await first_answers(sims, HISTORY, args.concurrency, SETUP_TIMEOUT, keep_history)
        for sim in sims:
            text = (sim.history.text if sim.history else "") or ""
            if not text.startswith("📜 History, page 1 of ") or sim.history is None:
                raise RuntimeError(f"user {sim.handle.id}: no history page: {text[:60]!r}")
            if not any(b.callback_data == "hist:1" for b in sim.history.inline_buttons):
                raise RuntimeError(f"user {sim.handle.id}: history has one page only: {text!r}")
        await drive(
            sims,
            mixed_kinds(args.warmup, args.seed + 1),
            args.concurrency,
            SETUP_TIMEOUT,
            loyalty_check,
            None,
        )
        run.notes.append(
            f"warm-up: {args.users} card uploads, {args.users} history pages and"
            f" {args.warmup} mixed updates in {time.perf_counter() - started:.1f}s"
        )

        began: dict[int, float] = {}
        sink = [run.sql]  # where statements are counted: the timed phase, then the census

        def before(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
            sink[0][verb(statement)] += 1
            began[id(cursor)] = time.perf_counter()

        def after(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
            started = began.pop(id(cursor), None)
            if started is not None and sink[0] is run.sql:
                spent = time.perf_counter() - started
                run.sql_seconds.setdefault(verb(statement), []).append(spent)

        def opened(*_args: Any) -> None:
            if sink[0] is run.sql:
                run.connections_opened += 1

        sync_engine = app.engine.sync_engine
        event.listen(sync_engine, "connect", opened)
        event.listen(sync_engine, "before_cursor_execute", before)
        event.listen(sync_engine, "after_cursor_execute", after)
        profiler = cProfile.Profile() if args.profile else None
        wall_start = time.time()
        try:
            await timed(run, sims, args, loyalty_check, emu, profiler)
            for kind in KINDS:  # one at a time, so every statement belongs to that update
                sink[0] = run.census[kind] = Counter()
                await drive(sims, [kind] * CENSUS_UPDATES, 1, args.timeout, loyalty_check, None)
        finally:
            event.remove(sync_engine, "connect", opened)
            event.remove(sync_engine, "before_cursor_execute", before)
            event.remove(sync_engine, "after_cursor_execute", after)
        if profiler is not None:
            profiler.dump_stats(args.profile)
            run.notes.append(f"cProfile of the timed phase written to {args.profile}")
            run.notes.extend(profile_breakdown(profiler, args.profile_top))

        app_bot = emu.bot(APP_TOKEN).id
        photos = [
            c
            for c in emu.calls
            if c.method == "sendPhoto" and c.bot_id == app_bot and c.time >= wall_start
        ]
        uploads = sum(isinstance(c.params.get("photo"), UploadedFile) for c in photos)
        run.notes.append(f"cards in the timed phase: {len(photos)} sent, {uploads} uploaded")
        if uploads:
            run.errors.append(f"{uploads} cards were uploaded again instead of re-sent by file_id")
    finally:
        await app.stop()
    return run


# ---------------------------------------------------------------------------- echo floor


ECHO_KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[
        [
            InlineKeyboardButton(text="‹ Newer", callback_data="hist:0"),
            InlineKeyboardButton(text="Older ›", callback_data="hist:1"),
        ]
    ]
)


async def echo_message(message: Message) -> None:
    await message.answer(message.text or "?")


async def echo_callback(query: CallbackQuery, bot: Bot) -> None:
    await query.answer()
    if query.message is not None:
        await bot.edit_message_text(
            text=f"page {(query.data or ':?').split(':')[-1]}",
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
            reply_markup=ECHO_KEYBOARD,
        )


async def bench_echo(emu: BotAPIEmulator, args: argparse.Namespace) -> Run:
    run = Run("echo floor")
    dispatcher = Dispatcher()
    dispatcher.message.register(echo_message)
    dispatcher.callback_query.register(echo_callback)
    bot = emu.aiogram_bot(ECHO_TOKEN)
    sims = make_users(emu, ECHO_TOKEN, args.users)
    async with running_polling(
        dispatcher, bot, allowed_updates=dispatcher.resolve_used_update_types()
    ):
        await first_answers(sims, HISTORY, args.concurrency, SETUP_TIMEOUT, keep_history)
        await drive(
            sims,
            mixed_kinds(args.warmup, args.seed + 1),
            args.concurrency,
            SETUP_TIMEOUT,
            echo_check,
            None,
        )
        await timed(run, sims, args, echo_check, emu)
    return run


# ------------------------------------------------------------------------------ report


PROFILE_GROUPS: tuple[tuple[str, str], ...] = (
    ("/site-packages/aiogram/", "aiogram"),
    ("/site-packages/aiohttp/", "aiohttp (client + both servers)"),
    ("/site-packages/multidict/", "aiohttp (client + both servers)"),
    ("/site-packages/yarl/", "aiohttp (client + both servers)"),
    ("/site-packages/sqlalchemy/", "sqlalchemy"),
    ("/site-packages/aiosqlite/", "aiosqlite (loop side)"),
    ("/site-packages/pydantic", "pydantic"),
    ("/site-packages/babel/", "babel"),
    ("/site-packages/", "other libraries"),
    ("/emulator/", "emulator"),
    ("/bench/", "load generator"),
    ("/asyncio/", "asyncio"),
    ("/json/", "json"),
)
PROJECT_DIRS = ("/bot/", "/handlers/", "/ledger/", "/cards/", "/storage/", "/scheduler/")


def _group(filename: str, function: str) -> str:
    if filename == "~":
        if "poll" in function or "select" in function:
            return "idle (epoll wait)"
        return "builtins (json, socket, ...)"
    for marker, name in PROFILE_GROUPS:
        if marker in filename:
            return name
    if any(marker in filename for marker in PROJECT_DIRS) and "/site-packages/" not in filename:
        return "loyalty code (bot, handlers, ledger, ...)"
    return "stdlib, other"


def profile_breakdown(profiler: cProfile.Profile, top: int) -> list[str]:
    """Own time of the event loop's thread by package, then the top functions."""
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in raw.items():
        name = _group(filename, function)
        groups[name] = groups.get(name, 0.0) + own
    total = sum(groups.values()) or 1.0
    lines = ["own time of the event loop's thread during the timed phase, by package:"]
    lines += [
        f"  {name:<45} {sec:7.2f}s {100 * sec / total:5.1f}%"
        for name, sec in sorted(groups.items(), key=lambda item: -item[1])
    ]
    lines.append(f"top {top} functions by own time:")
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, function), (_cc, calls, own, cum, _callers) in ranked:
        where = filename.split("/site-packages/")[-1].replace(str(ROOT) + "/", "")
        lines.append(f"  {own:6.2f}s own {cum:6.2f}s cum {calls:8d}x  {where}:{line} {function}")
    return lines


def machine_info() -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs,"
        f" load average {load}",
    ]


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_report(app: Run, echo: Run | None, args: argparse.Namespace) -> bool:
    """The table; returns whether every target was met."""
    print()
    mix = ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX)
    print(
        f"{args.updates} timed updates per bot ({mix}), {args.users} users,"
        f" at most {args.concurrency} in flight"
    )
    if not args.gc_freeze:
        print("--no-gc-freeze: full collections also walk the set-up heap")
    print(
        f"{'':<14}{'updates/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU ms/upd':>12}{'upd/CPU-s':>11}"
    )
    for run in (app, echo):
        if run is None:
            continue
        cpu = 1000 * run.process_cpu / run.count if run.count else 0.0
        print(
            f"{run.name:<14}{run.rate:>10.0f}{run.p(0.5):>9.1f}{run.p(0.99):>9.1f}"
            f"{run.p(1.0):>9.1f}{cpu:>12.2f}{run.cpu_rate:>11.0f}"
        )
        for kind in KINDS:
            print(
                f"{'  ' + kind:<14}{'':>10}{run.p(0.5, kind):>9.1f}{run.p(0.99, kind):>9.1f}"
                f"{run.p(1.0, kind):>9.1f}"
            )
    ratio = app.rate / echo.rate if echo is not None and echo.rate else 0.0
    if echo is not None:
        cpu_ratio = app.cpu_rate / echo.cpu_rate if echo.cpu_rate else 0.0
        print(
            f"ratio bot/echo: {ratio:.2f} in updates/s; {cpu_ratio:.2f} in updates per CPU second"
        )
    checks = [
        (f">= {TARGET_RATE:.0f} updates/s", app.rate >= TARGET_RATE, f"{app.rate:.0f}/s"),
        (f"p99 < {TARGET_P99_MS:.0f} ms", app.p(0.99) < TARGET_P99_MS, f"{app.p(0.99):.1f} ms"),
    ]
    if echo is not None:
        checks.append((f"ratio >= {TARGET_RATIO}", ratio >= TARGET_RATIO, f"{ratio:.2f}"))
    print("targets:")
    for name, ok, value in checks:
        print(f"  {name:<20} {value:>10}  {_verdict(ok)}")
    for run in (app, echo):
        if run is not None:
            print_details(run)
    return all(ok for _, ok, _ in checks)


def print_details(run: Run) -> None:
    calls = ", ".join(f"{m} {n}" for m, n in sorted(run.api_calls.items()) if n)
    print(f"{run.name}: Bot API calls in the timed phase: {calls}")
    polls = run.api_calls["getUpdates"]
    cpu_share = run.process_cpu / run.seconds if run.seconds else 0.0
    loop_share = run.loop_cpu / run.seconds if run.seconds else 0.0
    print(
        f"  {run.count / polls if polls else 0:.1f} updates per getUpdates; process CPU"
        f" {cpu_share:.0%} of wall time (event loop thread {loop_share:.0%})"
    )
    runs = ", ".join(f"gen{gen} {n}" for gen, n in sorted(run.gc_runs.items()))
    print(
        f"  garbage collections: {runs or 'none'}; {run.gc_seconds:.2f}s in total,"
        f" longest {1000 * run.gc_longest:.0f} ms"
    )
    built = sum(run.generic_models.values())
    if built:
        names = ", ".join(f"{name} {n}" for name, n in run.generic_models.most_common(4))
        print(f"  aiogram Response[...] models rebuilt in the timed phase: {built} ({names})")
    if run.sql:
        total = sum(run.sql.values())
        verbs = ", ".join(f"{v} {n / run.count:.1f}" for v, n in run.sql.most_common())
        print(f"  SQL statements per update, async engine only: {total / run.count:.1f} ({verbs})")
        print(f"  new DB connections opened in the timed phase: {run.connections_opened}")
        print(f"  SQL per update by kind (one at a time, {CENSUS_UPDATES} each):")
        for kind, counted in run.census.items():
            verbs = ", ".join(f"{v} {n / CENSUS_UPDATES:.1f}" for v, n in counted.most_common())
            print(f"    {kind:<8} {sum(counted.values()) / CENSUS_UPDATES:.1f} ({verbs})")
        print("  SQL statement time, from the loop's side (queue + lock wait + execution):")
        for sql_verb, spent in sorted(run.sql_seconds.items(), key=lambda item: -sum(item[1])):
            p50, p99 = 1000 * percentile(spent, 0.5), 1000 * percentile(spent, 0.99)
            print(
                f"    {sql_verb:<8} total {sum(spent):7.2f}s  p50 {p50:6.1f} ms"
                f"  p99 {p99:7.1f} ms  max {1000 * max(spent):7.1f} ms"
            )
    for note in run.notes:
        print(f"  {note}")


# -------------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    count_generic_models()
    for line in machine_info():
        print(line)
    # The call log is only read for the cards of the timed phase; a short one keeps the heap
    # (and so the garbage collector's full passes) small.
    emu = BotAPIEmulator(rate_limit=False, call_log_size=3 * args.updates + 10_000)
    emu.add_bot(APP_TOKEN, username="loyalty_bench_bot", first_name="Loyalty")
    emu.add_bot(ECHO_TOKEN, username="echo_bench_bot", first_name="Echo")
    await emu.start()
    try:
        with tempfile.TemporaryDirectory(prefix="updates-bench-") as tmp:
            app = await bench_loyalty(emu, args, Path(tmp))
        print(f"loyalty bot: {app.rate:.0f} updates/s", file=sys.stderr)
        echo = None if args.skip_echo else await bench_echo(emu, args)
    finally:
        await emu.stop()
    all_met = print_report(app, echo, args)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    status = 0
    for run in (app, echo):
        if run is not None and run.errors:
            print(f"\n{run.name}: {len(run.errors)} problems, first ones:")
            for problem in run.errors[:10]:
                print(f"  {problem}")
            status = 1
    if args.strict and not all_met:
        status = 1
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.updates", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=200, help="simulated users (default 200)")
    parser.add_argument(
        "--updates", type=int, default=3_000, help="timed updates per bot (default 3000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=20,
        help="updates in flight at most: workers, each owning some users (default 20)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="untimed mixed updates after the first card/history (default 300)",
    )
    parser.add_argument(
        "--purchases",
        type=int,
        default=15,
        help="seeded purchases per member; 10+ gives 2 history pages (default 15)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for one timed answer before counting it as lost (default 30)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-echo", action="store_true", help="no echo floor")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile the bot's timed phase (the whole event loop) into PATH",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions to list")
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="do not gc.freeze() the set-up heap before each timed phase",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="logging level for the bot and aiogram (default WARNING)",
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.updates < 1 or args.concurrency < 1:
        parser.error("--users, --updates and --concurrency must be positive")
    if args.purchases < 10:
        parser.error("--purchases must be at least 10 so that history has 2 pages")
    args.concurrency = min(args.concurrency, args.users)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(main(arguments)))
