"""Chat updates per second: the real bot long-polling the in-process emulator, and an echo floor.

Run from the repository root:

    .venv/bin/python -m bench.updates                 # on 200,000 generated members
    .venv/bin/python -m bench.updates --quick         # on 20,000, fewer updates
    .venv/bin/python -m bench.updates --users 200 --updates 3000 --concurrency 20
    .venv/bin/python -m bench.updates --only postgresql --profile /tmp/updates.pstats

Everything runs in one process and one event loop, as in the e2e tests: the Bot API emulator
(rate limiter off), the real `bot.run.Application` (long polling, the outbox's sender, the
scheduler with every job, the HTTP API; `freeze_what_start_made()` once started, as
`python -m bot` does) on a fresh copy of the generated dataset (`bench.prepared.prepared`:
--members, default 200,000, with 18 months of history; SQLite by default, `--only postgresql`)
and the simulated users. The emulator's and the users' CPU count against the bot; the echo
floor pays the same overhead. Nothing is gc.freeze()d before the timed phase: full collections
walk whatever the process holds then, as they would in production.

1. Start, not timed: the application's clock is the real one moved to 12:00 Moscow time today
   (outside the sender's quiet hours, whatever the hour of the run). Once leading, the scheduler
   catches up on every job (activate, burn, warn, tiers, birthdays) over the whole dataset and
   the sender starts delivering what they queue; the timed phase waits until the catch-up jobs
   have finished (their runs are read from job_runs), not for the outbox to empty: the sender
   keeps sending while the updates are timed, and any scheduled job that runs meanwhile is
   listed below the table.
2. Users: --users members of the dataset (random, active, with a chat, not blocked; their own
   language), and new users who join during the timed phase. Warm-up, not timed: every member
   asks for "Card" once (the PNG is rendered and uploaded, so later cards are re-sent by file_id,
   as the stored card_images make them in production) and "History" once (the message whose
   buttons are pressed later), then --warmup mixed updates.
3. Timed: --updates updates (default 3,000) in an exact, shuffled mix: 45% "Balance" text,
   27% history (a callback "hist:1"/"hist:0" turning the page of the member's history message
   when it has two pages or more, else the "History" button again), 18% "Card" (re-sent by
   file_id; checked), 10% joining: a new user's /start, the press on the consent button and
   the shared contact (three updates; registers the member). --concurrency workers (default
   20) each own a slice of the users and send the next update only when the previous answer
   arrived, so at most --concurrency updates are in flight and a user never has two.
   Latency: from enqueueing the update in the emulator to the moment the emulator records the
   answer (the message or edit that answers it: messages the outbox sends meanwhile, such as a
   burn warning, are not taken for answers). updates/s is the count divided by the wall time of
   the whole timed phase.
4. Floor: a bare aiogram Dispatcher polling the same emulator as a second bot, answering as the
   bot does: a text with a reply keyboard to a text, a photo with a caption and the keyboard to
   "Card" (a card PNG of the same size rendered once, uploaded on each user's first card and
   re-sent by file_id afterwards), the answered callback and an edited message to a page turn,
   and for joining an inline button to /start, a contact-request keyboard to the consent press
   and a menu keyboard to the contact. Same users count, warm-up, mix, concurrency and
   measurement. ratio = bot updates/s / echo updates/s. The ratio of updates per CPU second of
   the process is printed too: on a machine shared with other work it moves less than
   wall-clock rates.

Diagnostics printed for the bot: Bot API calls, updates per getUpdates, CPU share, garbage
collections, pydantic generic models rebuilt (aiogram's Response[...] types), SQL statements
per update through the async engine (overall and, one update at a time afterwards, per kind;
the ledger's reads on the sync SQLite engine and `storage.fast` statements are not seen), time
spent per SQL verb from the loop's side, new DB connections, the scheduled jobs and the
outbox's deliveries; --profile adds a cProfile of the timed phase grouped by package.

Targets (issue 14): >= 300 updates/s, p99 < 100 ms, ratio >= 0.3, with the scheduler and the
outbox running. The figures go through `bench.common.report`. This exits 1 on wrong or missing
answers, and on a missed target only with --strict.
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
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import I18n
from sqlalchemy import event, select

from bench.common import ROOT, Figure, ShiftedClock, percentile, report, verb
from bench.dataset import phone as dataset_phone
from bench.prepared import discard, prepared
from bot.run import Application, freeze_what_start_made
from bot.settings import Settings
from cards.render import CardFace, render_card
from emulator import BotAPIEmulator, BotMessage, EmulatedUser, UploadedFile, running_polling
from emulator.state import Signal
from storage.schema import job_runs, members

APP_TOKEN = "700001:BENCH-LOYALTY"
ECHO_TOKEN = "700002:BENCH-ECHO"
FIRST_JOINER_ID = 910_000_001  # new users; the dataset's chats are 5,000,000,000 + 7 * id
MIX = (("balance", 0.45), ("history", 0.27), ("card", 0.18), ("join", 0.10))
KINDS = tuple(kind for kind, _ in MIX)
JOIN_STEPS = 3  # /start, the consent button, the shared contact
TARGET_RATE = 300.0
TARGET_P99_MS = 100.0
TARGET_RATIO = 0.3
QUICK_MEMBERS = 20_000
SETUP_TIMEOUT = 60.0  # seconds per answer while warming up (not timed)
CATCH_UP_TIMEOUT = 600.0  # seconds to wait for the scheduler's first run of every job
CENSUS_UPDATES = 20  # per kind, one at a time after the timed phase, to count SQL per update
NOON_MOSCOW = timedelta(hours=9)  # after 00:00 UTC: 12:00 in Moscow

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


@dataclass(frozen=True)
class Texts:
    """What a user taps, and how the answers begin, in one language."""

    balance: str
    history: str
    card: str
    balance_answer: str  # the first line's beginning
    history_page: str  # "... page {page} of": the title up to the page count
    history_empty: str

    @classmethod
    def of(cls, i18n: I18n, language: str) -> Texts:
        def text(key: str) -> str:
            return str(i18n.gettext(key, locale=language))

        return cls(
            balance=text("menu-balance"),
            history=text("menu-history"),
            card=text("menu-card"),
            balance_answer=text("balance-usable").split("{", 1)[0],
            history_page=text("history-title").split("{pages}", 1)[0],
            history_empty=text("history-empty"),
        )


ECHO_TEXTS = Texts("💰 Balance", "📜 History", "💳 Card", "💰 Balance", "page {page}", "")


@dataclass
class SimUser:
    handle: EmulatedUser
    probe: AnswerProbe
    texts: Texts
    phone: str = ""  # a new user's, shared when joining
    history: BotMessage | None = None  # the message whose history buttons get pressed
    page: int = 0
    turns: bool = True  # history has two pages or more: "history" turns them
    join_step: int = 0  # a new user: the steps of joining done so far
    last: BotMessage | None = None  # a new user: the answer to the previous step


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
    history_turns: int = 0  # users whose "history" turns a page (the others tap History)
    turns: list[bool] = field(default_factory=list)  # per user, for the echo floor to copy
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

# Whether `answer` answers `kind` for this user (`page`: the history page just asked for).
Accepts = Callable[[str, SimUser, BotMessage, int], bool]


def loyalty_accepts(kind: str, sim: SimUser, answer: BotMessage, page: int) -> bool:
    text = answer.content or ""
    texts = sim.texts
    if kind == "balance":
        return text.startswith(texts.balance_answer)
    if kind == "history":
        if sim.turns:
            return text.startswith(texts.history_page.format(page=page + 1))
        return text.startswith(texts.history_page.format(page=1)) or text == texts.history_empty
    if kind == "card":
        return answer.kind == "photo"
    return _join_answer(sim.join_step, answer)


def echo_accepts(kind: str, sim: SimUser, answer: BotMessage, page: int) -> bool:
    if kind == "join":
        return _join_answer(sim.join_step, answer)
    if kind == "card":
        return answer.kind == "photo"
    if kind == "history" and sim.turns:
        return answer.text == f"page {page}"
    expected = {"balance": ECHO_TEXTS.balance, "history": ECHO_TEXTS.history}[kind]
    return answer.text == expected


def _join_answer(step: int, answer: BotMessage) -> bool:
    if step == 0:  # the greeting with the consent button
        return bool(answer.inline_buttons)
    if step == 1:  # the keyboard that shares the contact
        return len(answer.keyboard_texts) == 1
    return len(answer.keyboard_texts) > 1  # registered: the menu


async def step(
    sim: SimUser, kind: str, wait_s: float, accepts: Accepts
) -> tuple[float, str | None]:
    """Send one update and wait for its answer: (latency in seconds or -1, problem or None)."""
    user = sim.handle
    messages = user.chat.bot_messages
    count = len(messages)
    page = 1 - sim.page
    found: list[BotMessage] = []

    def answered_by_message() -> bool:
        for message in messages[count:]:
            if accepts(kind, sim, message, page):
                found.append(message)
                return True
        return False

    if kind == "history" and sim.turns:
        target = sim.history
        assert target is not None, "history message missing: warm-up did not run"
        seen = len(target.edits)
        waiter = sim.probe.expect(
            lambda: len(target.edits) > seen and accepts(kind, sim, target, page)
        )
        started = time.perf_counter()
        await user.press(target, f"hist:{page}")
    else:
        waiter = sim.probe.expect(answered_by_message)
        started = time.perf_counter()
        if kind == "join":
            await _join_step(sim)
        else:
            texts = sim.texts
            await user.send_text(
                {"balance": texts.balance, "history": texts.history}.get(kind, texts.card)
            )
    try:
        async with asyncio.timeout(wait_s):
            stamp = await waiter
    except TimeoutError:
        if kind == "history" and sim.turns:
            sim.page = page  # a late edit lands on this page; the next press must turn it back
        if kind == "join":
            sim.join_step = JOIN_STEPS  # this user is done with; the next join takes another
        last = messages[-1] if len(messages) > count else None
        seen_text = f"; last message: {last.kind} {last.content[:60]!r}" if last else ""
        return -1.0, f"user {user.id}: no answer to {kind} within {wait_s}s{seen_text}"
    if kind == "history" and sim.turns:
        sim.page = page
    if kind == "join":
        sim.last = found[0] if found else None
        sim.join_step += 1
    return stamp - started, None


async def _join_step(sim: SimUser) -> None:
    user = sim.handle
    if sim.join_step == 0:
        await user.send_command("/start")
    elif sim.join_step == 1:
        assert sim.last is not None
        await user.press_button(sim.last, sim.last.inline_buttons[0].text)
    else:
        assert sim.last is not None
        await user.press_reply_button(sim.last.keyboard_texts[0], phone_number=sim.phone)


def mixed_kinds(total: int, seed: int) -> list[str]:
    """An exact mix (largest remainder), shuffled."""
    counts = {kind: int(total * share) for kind, share in MIX}
    by_remainder = sorted(MIX, key=lambda item: -(total * item[1]) % 1)
    for kind, _ in by_remainder[: total - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(kinds)
    return kinds


class Joiners:
    """New users, made as they are needed: an id and a phone no member of the dataset has."""

    def __init__(self, emu: BotAPIEmulator, token: str, taken_phones: set[str]) -> None:
        self.emu = emu
        self.token = token
        self.taken = taken_phones
        self.made = 0
        self._number = 0

    def new(self) -> SimUser:
        while True:
            self._number += 1
            phone = f"+7999{self._number:07d}"
            if phone not in self.taken:
                break
        user_id = FIRST_JOINER_ID + self.made
        language = "ru" if self.made % 2 else "en"
        self.made += 1
        handle = self.emu.user(user_id, f"New{user_id}", language_code=language, bot=self.token)
        probe = AnswerProbe()
        handle.chat.changed = probe
        return SimUser(handle, probe, ECHO_TEXTS, phone=phone)


async def drive(
    sims: Sequence[SimUser],
    joiners: Joiners,
    kinds: Sequence[str],
    concurrency: int,
    wait_s: float,
    accepts: Accepts,
    run: Run | None,
) -> float:
    """Play `kinds` with `concurrency` workers, each owning a slice of the members and its own
    new users (one at a time, through the steps of joining); wall seconds."""
    workers = max(1, min(concurrency, len(sims)))
    errors: list[str] = run.errors if run is not None else []

    async def worker(w: int) -> None:
        own = sims[w::workers]
        joiner: SimUser | None = None
        for i, kind in enumerate(kinds[w::workers]):
            sim = own[i % len(own)]
            if kind == "join":
                if joiner is None or joiner.join_step >= JOIN_STEPS:
                    joiner = joiners.new()
                sim = joiner
            latency, problem = await step(sim, kind, wait_s, accepts)
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
    kind: str,
    concurrency: int,
    wait_s: float,
    accepts: Accepts,
    keep: Callable[[SimUser, BotMessage], None] | None = None,
) -> None:
    """Every user sends the `kind` button's text once and waits for the answer (warm-up)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(sim: SimUser) -> None:
        async with gate:
            messages = sim.handle.chat.bot_messages
            count = len(messages)
            text = sim.texts.card if kind == "card" else sim.texts.history
            await sim.handle.send_text(text)
            deadline = time.perf_counter() + wait_s
            while time.perf_counter() < deadline:
                answer = next(
                    (m for m in messages[count:] if _first_answer(kind, sim, m, accepts)), None
                )
                if answer is not None:
                    if keep is not None:
                        keep(sim, answer)
                    return
                await asyncio.sleep(0.01)
            raise RuntimeError(f"user {sim.handle.id}: no answer to the first {kind}")

    await asyncio.gather(*(one(sim) for sim in sims))


def _first_answer(kind: str, sim: SimUser, message: BotMessage, accepts: Accepts) -> bool:
    if kind == "card":
        return message.kind == "photo"
    return bool(message.inline_buttons) or accepts("history", sim, message, 0)


def keep_history(sim: SimUser, answer: BotMessage) -> None:
    sim.history, sim.page = answer, 0
    sim.turns = any(b.callback_data == "hist:1" for b in answer.inline_buttons)


async def timed(
    run: Run,
    sims: Sequence[SimUser],
    joiners: Joiners,
    args: argparse.Namespace,
    accepts: Accepts,
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

    run.turns = [sim.turns for sim in sims]
    run.history_turns = sum(run.turns)
    run.notes.append(
        f"objects the garbage collector walks at the start of the timed phase:"
        f" {len(gc.get_objects()):,} (frozen when the bot started, not walked:"
        f" {gc.get_freeze_count():,})"
    )
    gc.callbacks.append(on_gc)
    loop_cpu, process_cpu = time.thread_time(), time.process_time()
    if profiler is not None:
        profiler.enable()
    try:
        run.seconds = await drive(
            sims, joiners, kinds, args.concurrency, args.timeout, accepts, run
        )
    finally:
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(on_gc)
    run.loop_cpu = time.thread_time() - loop_cpu
    run.process_cpu = time.process_time() - process_cpu
    run.api_calls = Counter(emu.stats.calls)
    run.api_calls.subtract(calls_before)
    run.generic_models = GENERIC_MODELS_BUILT - built_before


# ------------------------------------------------------------------------ the loyalty bot


@dataclass
class Dataset:
    """The members the simulated users are, and every phone the dataset has (new users must
    not share one)."""

    chosen: list[tuple[int, int, str, str]]  # (member id, telegram id, language, first name)
    phones: set[str]


async def choose_members(app: Application, args: argparse.Namespace) -> Dataset:
    async with app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    members.c.id, members.c.telegram_id, members.c.language, members.c.first_name
                )
                .where(
                    members.c.status == "active",
                    members.c.telegram_id.is_not(None),
                    members.c.unreachable.is_(False),
                )
                .order_by(members.c.id)
            )
        ).all()
        count = (await conn.execute(select(members.c.id).order_by(members.c.id.desc()))).first()
    if len(rows) < args.users:
        raise RuntimeError(
            f"the dataset has {len(rows)} members with a chat; --users is {args.users}"
        )
    chosen = random.Random(args.seed).sample(list(rows), args.users)
    last_id = int(count[0]) if count else 0
    phones = {dataset_phone(member_id) for member_id in range(1, last_id + 1)}
    return Dataset(
        [(int(r.id), int(r.telegram_id), str(r.language), str(r.first_name or "")) for r in chosen],
        phones,
    )


async def wait_for_catch_up(app: Application, limit_s: float) -> list[str]:
    """Wait until the scheduler's catch-up has run every job once; lines saying how long each
    took."""
    names = set(app.jobs.all())
    deadline = time.perf_counter() + limit_s
    while True:
        async with app.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(job_runs.c.job, job_runs.c.started_at, job_runs.c.finished_at)
                    .where(job_runs.c.finished_at.is_not(None))
                    .order_by(job_runs.c.id)
                )
            ).all()
        done = {row.job: row for row in rows}
        if names <= set(done):
            return [
                f"{name} {(done[name].finished_at - done[name].started_at).total_seconds():.1f}s"
                for name in app.jobs.all()
            ]
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"the scheduler's catch-up did not finish in {limit_s:.0f}s:"
                f" {sorted(names - set(done))} missing"
            )
        await asyncio.sleep(0.5)


async def jobs_between(app: Application, start: datetime, end: datetime) -> list[str]:
    """The scheduled jobs that ran (or were running) between `start` and `end` (app clock)."""
    async with app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(job_runs.c.job, job_runs.c.started_at, job_runs.c.finished_at)
                .where(job_runs.c.started_at < end)
                .order_by(job_runs.c.id)
            )
        ).all()
    found = []
    for row in rows:
        if row.finished_at is not None and row.finished_at <= start:
            continue
        took = (
            f"{(row.finished_at - row.started_at).total_seconds():.1f}s"
            if row.finished_at is not None
            else "still running"
        )
        found.append(f"{row.job} ({took})")
    return found


async def bench_loyalty(emu: BotAPIEmulator, args: argparse.Namespace, url: str) -> Run:
    run = Run("loyalty bot")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=APP_TOKEN,
        telegram_api_url=emu.base_url,
        database_url=url,
        secret_key="bench-secret-key",
        rules_file=ROOT / "rules.toml",
        api_port=0,
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    app = Application(settings, clock=ShiftedClock(today + NOON_MOSCOW))
    started = time.perf_counter()
    await app.start()
    freeze_what_start_made()  # as bot.run.run_app does once started
    try:
        assert app.services is not None and app.engine is not None
        catch_up = await wait_for_catch_up(app, CATCH_UP_TIMEOUT)
        run.notes.append(
            f"start and the scheduler's catch-up over {args.members:,} members:"
            f" {time.perf_counter() - started:.1f}s (jobs: {', '.join(catch_up)})"
        )
        dataset = await choose_members(app, args)
        sims: list[SimUser] = []
        i18n = app.i18n
        for _member_id, telegram_id, language, first_name in dataset.chosen:
            handle = emu.user(
                telegram_id, first_name or "Member", language_code=language, bot=APP_TOKEN
            )
            probe = AnswerProbe()
            handle.chat.changed = probe
            sims.append(SimUser(handle, probe, Texts.of(i18n, language)))
        joiners = Joiners(emu, APP_TOKEN, dataset.phones)

        started = time.perf_counter()
        await first_answers(sims, "card", args.concurrency, SETUP_TIMEOUT, loyalty_accepts)
        await first_answers(
            sims, "history", args.concurrency, SETUP_TIMEOUT, loyalty_accepts, keep_history
        )
        await drive(
            sims,
            joiners,
            mixed_kinds(args.warmup, args.seed + 1),
            args.concurrency,
            SETUP_TIMEOUT,
            loyalty_accepts,
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
        wall_start, app_start = time.time(), app.services.clock.now()
        outbox_before = await app.services.outbox.counts()
        try:
            await timed(run, sims, joiners, args, loyalty_accepts, emu, profiler)
            app_end = app.services.clock.now()
            outbox_after = await app.services.outbox.counts()
            for kind in KINDS:  # one at a time, so every statement belongs to that update
                sink[0] = run.census[kind] = Counter()
                await drive(
                    sims, joiners, [kind] * CENSUS_UPDATES, 1, args.timeout, loyalty_accepts, None
                )
        finally:
            event.remove(sync_engine, "connect", opened)
            event.remove(sync_engine, "before_cursor_execute", before)
            event.remove(sync_engine, "after_cursor_execute", after)
        if profiler is not None:
            profiler.dump_stats(args.profile)
            run.notes.append(f"cProfile of the timed phase written to {args.profile}")
            run.notes.extend(profile_breakdown(profiler, args.profile_top))

        ran = await jobs_between(app, app_start, app_end)
        run.notes.append(
            "scheduled jobs during the timed phase: " + (", ".join(ran) if ran else "none")
        )
        moved = {
            status: outbox_after.get(status, 0) - outbox_before.get(status, 0)
            for status in sorted(set(outbox_after) | set(outbox_before))
        }
        run.notes.append(
            "outbox during the timed phase (change per status; messages to chats the emulator"
            " does not have end as failed): "
            + ", ".join(f"{status} {n:+,}" for status, n in moved.items() if n)
        )
        app_bot = emu.bot(APP_TOKEN).id
        photos = [
            c
            for c in emu.calls
            if c.method == "sendPhoto" and c.bot_id == app_bot and c.time >= wall_start
        ]
        uploads = sum(isinstance(c.params.get("photo"), UploadedFile) for c in photos)
        run.notes.append(
            f"cards in the timed phase: {len(photos)} sent, {uploads} uploaded;"
            f" {joiners.made} new users joined (after the warm-up's)"
            f"; {run.history_turns} of {args.users} members turn history pages"
        )
        if uploads:  # a card whose face changed, or whose file_id was not stored yet
            uploaded = [c for c in photos if isinstance(c.params.get("photo"), UploadedFile)]
            chats = len({c.params.get("chat_id") for c in uploaded})
            run.notes.append(
                f"{uploads} cards were rendered and uploaded in the timed phase and the census"
                f" (to {chats} chats), not re-sent by file_id"
            )
    finally:
        await app.stop()
    return run


# ---------------------------------------------------------------------------- echo floor


ECHO_PAGES = InlineKeyboardMarkup(
    inline_keyboard=[
        [
            InlineKeyboardButton(text="‹ Newer", callback_data="hist:0"),
            InlineKeyboardButton(text="Older ›", callback_data="hist:1"),
        ]
    ]
)
ECHO_CONSENT = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="I agree", callback_data="consent")]]
)
ECHO_SHARE = ReplyKeyboardMarkup(
    keyboard=[[KeyboardButton(text="Share my number", request_contact=True)]],
    resize_keyboard=True,
    one_time_keyboard=True,
)
ECHO_MENU = ReplyKeyboardMarkup(
    keyboard=[
        [KeyboardButton(text=ECHO_TEXTS.card), KeyboardButton(text=ECHO_TEXTS.balance)],
        [KeyboardButton(text=ECHO_TEXTS.history), KeyboardButton(text="🎁 Invite a friend")],
        [KeyboardButton(text="⚙️ Settings"), KeyboardButton(text="💬 Support")],
    ],
    resize_keyboard=True,
)


class EchoBot:
    """The floor's handlers: what the bot answers, without the work behind the answers."""

    def __init__(self) -> None:
        # A card PNG as the bot renders one (same size and format), made once.
        self.card = render_card(
            CardFace(
                program_name="Loyalty",
                first_name="Member",
                card_number="2123456789012",
                tier_label="Silver",
                deep_link="https://t.me/echo_bench_bot?start=c_" + "x" * 43,
                caption_label="Card number",
                tier="silver",
            ),
            opaque=True,
        )
        self.photos: dict[int, str] = {}  # chat -> file_id of the card uploaded there

    def dispatcher(self) -> Dispatcher:
        dispatcher = Dispatcher()
        dispatcher.message.register(self.message)
        dispatcher.callback_query.register(self.callback)
        return dispatcher

    async def message(self, message: Message) -> None:
        text = message.text or ""
        if message.contact is not None:
            await message.answer("Welcome", reply_markup=ECHO_MENU)
        elif text.startswith("/start"):
            await message.answer(text, reply_markup=ECHO_CONSENT)
        elif text == ECHO_TEXTS.card:
            file_id = self.photos.get(message.chat.id)
            photo: str | BufferedInputFile = file_id or BufferedInputFile(self.card, "card.png")
            sent = await message.answer_photo(photo, caption=text, reply_markup=ECHO_MENU)
            if file_id is None and sent.photo:
                self.photos[message.chat.id] = sent.photo[-1].file_id
        elif text == ECHO_TEXTS.history:
            await message.answer(text, reply_markup=ECHO_PAGES)
        else:
            await message.answer(text, reply_markup=ECHO_MENU)

    async def callback(self, query: CallbackQuery, bot: Bot) -> None:
        await query.answer()
        if query.message is None:
            return
        if query.data == "consent":
            await bot.send_message(
                query.message.chat.id, "Share your number", reply_markup=ECHO_SHARE
            )
            return
        await bot.edit_message_text(
            text=f"page {(query.data or ':?').split(':')[-1]}",
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
            reply_markup=ECHO_PAGES,
        )


async def bench_echo(emu: BotAPIEmulator, args: argparse.Namespace, turns: list[bool]) -> Run:
    """The floor, with as many users turning history pages as the bot's run had."""
    run = Run("echo floor")
    echo = EchoBot()
    dispatcher = echo.dispatcher()
    bot = emu.aiogram_bot(ECHO_TOKEN)
    sims: list[SimUser] = []
    for i in range(args.users):
        handle = emu.user(5_000_000_000 + i, f"Echo{i}", language_code="en", bot=ECHO_TOKEN)
        probe = AnswerProbe()
        handle.chat.changed = probe
        sims.append(SimUser(handle, probe, ECHO_TEXTS))
    joiners = Joiners(emu, ECHO_TOKEN, set())
    async with running_polling(
        dispatcher, bot, allowed_updates=dispatcher.resolve_used_update_types()
    ):
        await first_answers(sims, "card", args.concurrency, SETUP_TIMEOUT, echo_accepts)
        await first_answers(
            sims, "history", args.concurrency, SETUP_TIMEOUT, echo_accepts, keep_history
        )
        for sim, turning in zip(sims, turns, strict=False):
            sim.turns = turning
        await drive(
            sims,
            joiners,
            mixed_kinds(args.warmup, args.seed + 1),
            args.concurrency,
            SETUP_TIMEOUT,
            echo_accepts,
            None,
        )
        await timed(run, sims, joiners, args, echo_accepts, emu)
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


def print_report(app: Run, echo: Run | None, args: argparse.Namespace) -> list[Figure]:
    """The table and the details; returns the figures."""
    print()
    mix = ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX)
    print(
        f"{args.updates} timed updates per bot ({mix}), {args.users} users,"
        f" at most {args.concurrency} in flight"
    )
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
    for run in (app, echo):
        if run is not None:
            print_details(run)
    backend = "SQLite" if args.only == "sqlite" else "PostgreSQL"
    where = f"{backend}, {args.members:,} members, scheduler and outbox running"
    rate_met = app.rate >= TARGET_RATE and (echo is None or ratio >= TARGET_RATIO)
    return [
        Figure(
            benchmark="updates",
            name=f"chat updates, {where}",
            value=app.rate,
            unit="/s",
            target=f">= {TARGET_RATE:.0f}/s",
            met=rate_met,
            floor=echo.rate if echo is not None else None,
            ratio=ratio if echo is not None else None,
            ratio_target=f">= {TARGET_RATIO}" if echo is not None else "",
        ),
        Figure(
            benchmark="updates",
            name=f"chat updates p99, {where}",
            value=app.p(0.99),
            unit="ms",
            target=f"< {TARGET_P99_MS:.0f} ms",
            met=app.p(0.99) < TARGET_P99_MS,
        ),
    ]


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
        print(f"copying the {args.members:,}-member dataset ({args.only})", file=sys.stderr)
        url = await prepared(args.only, args.members, quiet=True)
        try:
            app = await bench_loyalty(emu, args, url)
        finally:
            await discard(url)
        print(f"loyalty bot: {app.rate:.0f} updates/s", file=sys.stderr)
        echo = None if args.skip_echo else await bench_echo(emu, args, app.turns)
    finally:
        await emu.stop()
    figures = print_report(app, echo, args)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(figures)
    all_met = all(f.met for f in figures)
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MEMBERS:,} members, 1,500 timed updates, 150 warm-up",
    )
    parser.add_argument(
        "--members",
        type=int,
        help=f"generated members in the database (200,000; --quick {QUICK_MEMBERS:,})",
    )
    parser.add_argument(
        "--only",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the database (default sqlite)",
    )
    parser.add_argument(
        "--users", type=int, default=200, help="members of the dataset chatting (default 200)"
    )
    parser.add_argument(
        "--updates", type=int, help="timed updates per bot (default 3000; --quick 1500)"
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
        help="untimed mixed updates after the first card/history (default 300; --quick 150)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for one timed answer before counting it as lost (default 10)",
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
        "--log-level",
        default="WARNING",
        help="logging level for the bot and aiogram (default WARNING)",
    )
    args = parser.parse_args(argv)
    for name, full, small in (
        ("members", 200_000, QUICK_MEMBERS),
        ("updates", 3_000, 1_500),
        ("warmup", 300, 150),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    if args.users < 1 or args.updates < 1 or args.concurrency < 1:
        parser.error("--users, --updates and --concurrency must be positive")
    args.concurrency = min(args.concurrency, args.users)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(main(arguments)))
