"""Broadcasts on the generated dataset: materialising 200,000 recipients, and sending.

Run from the repository root (BENCH_DATA_DIR=/work/data where the templates live):

    .venv/bin/python -m bench.broadcasts                     # both parts, both databases
    .venv/bin/python -m bench.broadcasts --quick             # 20,000 members, 1,000 messages
    .venv/bin/python -m bench.broadcasts --only sqlite --part send --messages 10000 --rate 25

1. `materialise` (--members, default 200,000; each backend in --only): on a fresh copy of
   the dataset (`bench.prepared.prepared`), the program's services as `python -m bot` builds
   them (`bot.build.build_services`), and `Broadcasts.create` of a broadcast to everyone
   (an empty filter) with a 10% control group, as a marketer's "send now". Timed: the
   create (drawing the members in batches, the control group, the counts), the first
   `tick()` (it queues the first batch of recipients in the outbox), and `progress()` on the
   broadcast. The process's VmRSS is sampled every 20 ms from /proc in a thread during the
   whole run (the peak is the figure; VmHWM, the kernel's own peak, is printed too).
   Targets (issue 15): create < 20 s, RSS < 300 MB throughout.
2. `send` (--send-members, default 20,000; each backend in --only): the whole program
   (`bot.run.Application`, i.e. `bot.run.running`: polling, the scheduler with every job,
   the broadcasts' tick every 2 s, the outbox's sender, the HTTP API) in this process with
   the Bot API emulator as Telegram, a chat for every member of the dataset with one (the
   unreachable blocked; `bench.api.add_dataset_chats`) and the clock at 12:00 Moscow today
   (outside quiet hours in most members' time zones). A first start at a high send rate with
   the emulator's limiter off lets the scheduler's catch-up (burn warnings, birthdays) go
   out; then the program starts again with SEND_RATE_PER_SECOND = --rate (default 25) and
   the emulator's rate limiter ON with Telegram's limits (`emulator.faults.RateLimitConfig`:
   30 sends/s per bot overall, one per second per chat). Through the program's own
   `Broadcasts.create`, a broadcast to everyone (10% control); once the emulator has recorded
   --messages of its messages (default 10,000) the broadcast is cancelled (the marketer's
   Cancel) and what was in flight settles. Meanwhile --askers members of the control group
   (default 100; they get no offer, so the bot's answers to them cannot collide with an offer
   in the same chat) press "Balance" at --ask-rate per second in all (default 3), and each
   answer's latency is measured as bench.updates does (update enqueued -> answer recorded).
   The bot's answers count against the same 30/s as the sender's messages (Telegram's
   limit is per bot), so --rate + --ask-rate must stay under 30.
   Figures: messages/s from the first to the --messages-th send of the broadcast in the
   emulator's call log, 429 answers (the emulator's limiter, and `Sender.retry_after_seen`),
   members' p50/p99, and how much the process's RSS grew while sending (peak less before;
   the process also holds the emulator and every message it recorded: the program's own
   memory is what part 1 and bench.memory measure). Checked: every chat got at most one
   copy, the chats that got one are exactly the outbox rows recorded sent, no control
   member got one, and the progress adds up.
   Targets (issue 15): >= 95% of --rate sustained, zero 429, members' p99 < 200 ms.

Exits 1 when a check fails; on a missed target only with --strict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, delete, func, insert, literal, select, text, update

from bench.common import ROOT, Figure, ShiftedClock, machine_info, percentile, report
from bench.memory import proc_status
from bench.prepared import BACKENDS, discard, prepared
from bot.build import Services, build_services, close_services
from bot.run import Application, freeze_what_start_made
from bot.settings import Settings
from marketing.broadcasts import OUTCOMES, Broadcast, Broadcasts, Draft, Progress
from storage.schema import broadcast_members, members, outbox
from storage.schema import broadcasts as broadcasts_table

if TYPE_CHECKING:  # the sending part's; the materialising child imports what the program does
    from bench.updates import SimUser
    from emulator import BotAPIEmulator

TOKEN = "700003:BENCH-BROADCASTS"
MARKER = "BENCH-OFFER"
OFFER_TEXT = f"<b>{{first_name}}</b>, your balance is {{balance}}: come by this week! {MARKER}"
NOON_MOSCOW = timedelta(hours=9)
TARGET_CREATE_S = 20.0
TARGET_RSS_MB = 300.0
TARGET_SHARE = 0.95
TARGET_P99_MS = 200.0
EMULATOR_LIMIT = 30  # RateLimitConfig.global_per_second: Telegram's ~30 messages/s per bot
ASK_WAIT_S = 10.0
ASK_PAUSE_S = 2.0  # a member presses again at the earliest this long after an answer
SEND_METHODS = ("sendmessage", "sendphoto")
LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def noon_moscow() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + NOON_MOSCOW


def settings_for(url: str, rate: float, emulator_url: str = "http://127.0.0.1:1") -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=TOKEN,
        telegram_api_url=emulator_url,
        database_url=url,
        secret_key="bench-broadcasts-secret",
        rules_file=ROOT / "rules.toml",
        api_host="127.0.0.1",
        api_port=0,
        redis_url=None,
        log_level="WARNING",
        send_rate_per_second=rate,
    )


def everyone(broadcasts: Broadcasts) -> Draft:
    return Draft(filter=broadcasts.parse_filter({}), text=OFFER_TEXT, control_percent=10)


class RssSampler:
    """The process's VmRSS (MB) every `interval` seconds, in a thread: the peak seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())


def rss_mb(field_name: str = "VmRSS") -> float:
    try:
        return proc_status().get(field_name, 0.0)
    except OSError:
        return 0.0


async def timed(what: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await what()
    return result, time.perf_counter() - started


# ------------------------------------------------------------------------ materialising


async def materialise(backend: str, members_count: int) -> tuple[list[str], list[Figure]]:
    label, where = LABEL[backend], f"{LABEL[backend]}, {members_count:,} members"
    url = await prepared(backend, members_count, quiet=True)
    try:
        services = await build_services(settings_for(url, 25.0), ShiftedClock(noon_moscow()))
        try:
            broadcasts = services.broadcasts
            expected = (await services.segments.preview(everyone(broadcasts).filter)).count
            idle = rss_mb()
            with RssSampler() as sampler:
                (broadcast, _created), create_s = await timed(
                    lambda: broadcasts.create(everyone(broadcasts), actor="tg:1")
                )
                _shown, tick_s = await timed(broadcasts.tick)
                progress, progress_s = await timed(lambda: broadcasts.progress(broadcast))
            async with services.engine.connect() as conn:
                fed = (
                    await conn.execute(
                        select(func.count()).where(outbox.c.broadcast_id == broadcast.id)
                    )
                ).scalar_one()
            late = await late_in_sending(services, broadcast)
        finally:
            await close_services(services)
    finally:
        await discard(url)
    print(
        f"{label}: {broadcast.audience:,} members drawn, {broadcast.control:,} in the control"
        f" group, {broadcast.recipients:,} recipients; create {create_s:.2f} s, first tick"
        f" {tick_s * 1000:.0f} ms, progress {progress_s * 1000:.0f} ms ({progress.to_json()});"
        f" RSS {idle:.0f} MB before, peak {sampler.peak:.0f} MB, VmHWM {rss_mb('VmHWM'):.0f} MB",
        flush=True,
    )
    print(
        f"{label}, late in sending ({late['rows']:,} outbox rows of the broadcast, the last"
        f" {broadcasts.feed_window} queued): progress {late['progress'] * 1000:.0f} ms, tick"
        f" {late['tick'] * 1000:.0f} ms, the sender's claim of {late['claimed']:.0f}"
        f" {late['claim'] * 1000:.0f} ms",
        flush=True,
    )
    problems = []
    if broadcast.audience != expected:
        problems.append(f"{broadcast.audience} drawn, the segment's count is {expected}")
    if broadcast.control != (broadcast.audience * 10 + 50) // 100:
        problems.append(f"control group of {broadcast.control}")
    if fed != min(broadcasts.feed_window, broadcast.recipients):
        problems.append(f"the first tick queued {fed} recipients")
    if progress.done > fed or progress.sent:
        problems.append(f"progress before any send: {progress.to_json()}")
    for problem in problems:
        print(f"  CHECK FAILED ({label}): {problem}")
    return problems, [
        Figure(
            "broadcasts",
            f"materialise a broadcast to everyone (10% control), {where}",
            create_s,
            "s",
            f"< {TARGET_CREATE_S:.0f} s",
            create_s < TARGET_CREATE_S,
        ),
        Figure(
            "broadcasts",
            f"RSS peak while materialising (sampled every 20 ms), {where}",
            sampler.peak,
            "MB",
            f"< {TARGET_RSS_MB:.0f} MB",
            sampler.peak < TARGET_RSS_MB,
        ),
        Figure("broadcasts", f"first tick (queues the first batch), {where}", tick_s * 1000, "ms"),
        Figure("broadcasts", f"progress() of the broadcast, {where}", progress_s * 1000, "ms"),
        Figure(
            "broadcasts",
            f"progress() late in sending (every recipient in the outbox), {where}",
            late["progress"] * 1000,
            "ms",
        ),
        Figure("broadcasts", f"tick() late in sending, {where}", late["tick"] * 1000, "ms"),
        Figure(
            "broadcasts",
            f"the sender's claim of a batch late in sending, {where}",
            late["claim"] * 1000,
            "ms",
        ),
    ]


async def late_in_sending(services: Services, broadcast: Broadcast) -> dict[str, float]:
    """The outbox as a broadcast nearly sent leaves it (every recipient recorded sent but the
    last `feed_window`, still queued; written here in one statement, not sent), then the
    queries that run on it every few seconds, timed: progress(), tick() (the feed's count of
    what is queued ahead, the last feed, the finish check) and the sender's claim."""
    broadcasts, outbox_ = services.broadcasts, services.outbox
    now = services.clock.now()
    bm = broadcast_members.c
    key = literal(f"broadcast:{broadcast.id}:") + cast(bm.member_id, String)
    values = [
        key, bm.member_id, func.coalesce(members.c.telegram_id, 0), literal("offer"),
        literal(""), literal("sent"), literal(now), literal(now), literal(now),
        literal("broadcast"), literal(broadcast.id),
    ]  # fmt: skip
    rows = (
        select(*values)
        .join(members, members.c.id == bm.member_id)
        .where(bm.broadcast_id == broadcast.id, bm.control.is_(False))
    )
    columns = [
        "dedup_key", "member_id", "chat_id", "category", "text", "status", "not_before",
        "created_at", "sent_at", "kind", "broadcast_id",
    ]  # fmt: skip
    mine = outbox.c.broadcast_id == broadcast.id
    async with services.engine.begin() as conn:
        await conn.execute(delete(outbox).where(mine))
        await conn.execute(insert(outbox).from_select(columns, rows))
        last = select(outbox.c.id).where(mine).order_by(outbox.c.id.desc())
        await conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(last.limit(broadcasts.feed_window).scalar_subquery()))
            .values(status="queued", sent_at=None)
        )
        top = select(func.max(bm.member_id)).where(bm.broadcast_id == broadcast.id)
        await conn.execute(
            update(broadcasts_table)
            .where(broadcasts_table.c.id == broadcast.id)
            .values(fed_through=top.scalar_subquery())
        )
        count = (await conn.execute(select(func.count()).where(mine))).scalar_one()
    if services.engine.dialect.name == "postgresql":
        await pg_analyze(services)
    _progress, progress_s = await timed(lambda: broadcasts.progress(broadcast))
    _shown, tick_s = await timed(broadcasts.tick)
    epoch = await outbox_.take_epoch("bench")
    claimed, claim_s = await timed(lambda: outbox_.claim_due(25, epoch=epoch))
    return {
        "rows": count,
        "progress": progress_s,
        "tick": tick_s,
        "claim": claim_s,
        "claimed": len(claimed),
    }


async def pg_analyze(services: Services) -> None:
    """As autovacuum would soon after such a change: the planner sees the new rows."""
    async with services.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE outbox"))


async def materialise_in_child(backend: str, members_count: int) -> tuple[list[str], list[Figure]]:
    """`materialise` in a fresh interpreter (`--serve-materialise`): its RSS is a program's,
    not this process's (the emulator, the dataset's build, the other backend's run)."""
    argv = ["-m", "bench.broadcasts", "--serve-materialise", backend]
    child = await asyncio.create_subprocess_exec(
        sys.executable, *argv, "--members", str(members_count), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    outcome: dict[str, Any] = {"problems": ["the child ended without a result"], "figures": []}
    while raw := await child.stdout.readline():
        line = raw.decode().rstrip("\n")
        if line.startswith("RESULT "):
            outcome = json.loads(line.removeprefix("RESULT "))
        else:
            print(line, flush=True)
    if status := await child.wait():
        outcome["problems"].append(f"the child exited with {status}")
    return outcome["problems"], [Figure(**figure) for figure in outcome["figures"]]


async def serve_materialise(backend: str, members_count: int) -> int:
    problems, figures = await materialise(backend, members_count)
    result = {"problems": problems, "figures": [asdict(figure) for figure in figures]}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------ sending


@dataclass
class Sending:
    backend: str
    sends: list[tuple[float, int]] = field(default_factory=list)  # (time, chat) of each offer
    latencies: list[float] = field(default_factory=list)
    ask_errors: list[str] = field(default_factory=list)
    emulator_429: int = 0
    sender_429: int = 0
    after_cancel: int | None = None  # offers the emulator got after cancel() returned
    start_mb: float = 0.0  # started, caught up, before the broadcast
    peak_mb: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rate(self, messages: int) -> float:
        first = self.sends[: max(2, messages)]
        if len(first) < 2:
            return 0.0
        return (len(first) - 1) / (first[-1][0] - first[0][0])


def offer_sends(emu: BotAPIEmulator) -> list[tuple[float, int]]:
    """(arrival, chat) of every offer the emulator accepted, in order."""
    found = []
    for call in list(emu.calls):
        if call.status != 200 or call.method.lower() not in SEND_METHODS:
            continue
        text = str(call.params.get("text") or call.params.get("caption") or "")
        if MARKER in text:
            found.append((call.time, int(call.params["chat_id"])))
    return found


def limited(emu: BotAPIEmulator) -> list[str]:
    """Each 429 the emulator answered: to what, and the sends it had accepted in the second
    before (offers and other messages: the bot's answers share the per-bot limit)."""
    calls = [c for c in list(emu.calls) if c.method.lower() in emu.rate_limiter.config.methods]
    lines = []
    for call in calls:
        if call.status != 429:
            continue
        text = str(call.params.get("text") or call.params.get("caption") or "")
        before = [c for c in calls if c.status == 200 and call.time - 1.0 < c.time <= call.time]
        offers = sum(MARKER in str(c.params.get("text") or c.params.get("caption")) for c in before)
        same = sum(str(c.params.get("chat_id")) == str(call.params.get("chat_id")) for c in before)
        lines.append(
            f"429 to {'an offer' if MARKER in text else call.method} ({call.description});"
            f" accepted in the second before: {offers} offers, {len(before) - offers} others,"
            f" {same} to the same chat"
        )
    return lines


async def outbox_due(app: Application) -> int:
    async with app.engine.connect() as conn:
        query = select(func.count()).where(
            outbox.c.status.in_(("queued", "sending")), outbox.c.not_before <= app.clock.now()
        )
        return int((await conn.execute(query)).scalar_one())


async def start_app(emu: BotAPIEmulator, url: str, rate: float) -> Application:
    app = Application(settings_for(url, rate, emu.base_url), clock=ShiftedClock(noon_moscow()))
    await app.start()
    freeze_what_start_made()  # as bot.run.run_app does once started
    return app


async def catch_up(emu: BotAPIEmulator, url: str, notes: list[str]) -> None:
    """A first start: the scheduler's catch-up runs and what it queued goes out (limiter off,
    a high rate), so that the measured start begins with an empty outbox."""
    from bench.updates import wait_for_catch_up

    started = time.perf_counter()
    app = await start_app(emu, url, 1_000.0)
    try:
        jobs = await wait_for_catch_up(app, 600.0)
        for _ in range(2_400):  # at most 20 minutes
            if not await outbox_due(app):
                break
            await asyncio.sleep(0.5)
    finally:
        await app.stop()
    notes.append(f"first start, catch-up ({', '.join(jobs)}) and its messages sent:"
                 f" {time.perf_counter() - started:.1f} s")  # fmt: skip


async def catch_up_done(app: Application) -> None:
    from bench.updates import wait_for_catch_up

    await wait_for_catch_up(app, 600.0)


async def askers(
    app: Application, emu: BotAPIEmulator, broadcast: Broadcast, n: int
) -> list[SimUser]:
    """`n` members of the control group with a chat that the bot can reach."""
    from bench.updates import AnswerProbe, SimUser, Texts

    async with app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(members.c.telegram_id, members.c.language)
                .join(broadcast_members, broadcast_members.c.member_id == members.c.id)
                .where(
                    broadcast_members.c.broadcast_id == broadcast.id,
                    broadcast_members.c.control.is_(True),
                    members.c.status == "active",
                    members.c.telegram_id.is_not(None),
                    members.c.unreachable.is_(False),
                )
            )
        ).all()
    sims = []
    for telegram_id, language in random.Random(7).sample(list(rows), min(n, len(rows))):
        handle = emu.user(telegram_id, bot=TOKEN)
        probe = AnswerProbe()
        handle.chat.changed = probe
        sims.append(SimUser(handle, probe, Texts.of(app.i18n, language or "en")))
    return sims


async def ask(sims: list[SimUser], per_second: float, stop: asyncio.Event, result: Sending) -> None:
    """Members press "Balance" at `per_second` in all, each at most once in ASK_PAUSE_S
    (Telegram allows about one message a second per chat: a member pressing twice within a
    second would meet that limit, not the broadcast's)."""
    from bench.updates import loyalty_accepts, step

    idle = list(sims)
    tasks: set[asyncio.Task] = set()
    rng = random.Random(3)

    async def one(sim: SimUser) -> None:
        latency, problem = await step(sim, "balance", ASK_WAIT_S, loyalty_accepts)
        if problem:
            result.ask_errors.append(problem)
        else:
            result.latencies.append(latency)
        await asyncio.sleep(ASK_PAUSE_S)
        idle.append(sim)

    while not stop.is_set():
        if idle:
            sim = idle.pop(rng.randrange(len(idle)))
            task = asyncio.create_task(one(sim))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(1.0 / per_second)
    if tasks:
        await asyncio.gather(*tasks)


async def send(backend: str, args: argparse.Namespace) -> Sending:
    from bench.api import add_dataset_chats
    from emulator import BotAPIEmulator

    result = Sending(backend)
    emu = BotAPIEmulator(rate_limit=False, call_log_size=None)
    emu.add_bot(TOKEN, username="broadcasts_bench_bot", first_name="Bench")
    await emu.start()
    url = await prepared(backend, args.send_members, quiet=True)
    try:
        chats = await add_dataset_chats(emu, url, TOKEN)
        result.notes.append(f"{chats:,} chats in the emulator")
        await catch_up(emu, url, result.notes)
        emu.calls.clear()
        emu.stats.reset()
        emu.rate_limiter.configure(enabled=True)  # Telegram's limits from here on
        app = await start_app(emu, url, args.rate)
        try:
            await catch_up_done(app)
            with RssSampler(0.1) as sampler:
                result.start_mb = rss_mb()
                result.notes.append(f"RSS before the broadcast: {result.start_mb:.0f} MB")
                result = await broadcast_and_measure(app, emu, args, result)
            result.peak_mb = sampler.peak
            result.sender_429 = app.sender.retry_after_seen
        finally:
            await app.stop()
        result.emulator_429 = emu.stats.rate_limited
        result.notes += limited(emu)[:10]
    finally:
        await emu.stop()
        await discard(url)
    return result


async def broadcast_and_measure(
    app: Application, emu: BotAPIEmulator, args: argparse.Namespace, result: Sending
) -> Sending:
    broadcasts = app.services.broadcasts
    (broadcast, _), create_s = await timed(
        lambda: broadcasts.create(everyone(broadcasts), actor="tg:1")
    )
    result.notes.append(
        f"broadcast to {broadcast.audience:,} members, {broadcast.control:,} in the control"
        f" group, {broadcast.recipients:,} recipients, created in {create_s:.2f} s"
    )
    sims = await askers(app, emu, broadcast, args.askers)
    stop = asyncio.Event()
    asking = asyncio.create_task(ask(sims, args.ask_rate, stop, result))
    started = time.perf_counter()
    last_print = started
    try:
        while True:
            sent = len(offer_sends(emu))
            progress = await broadcasts.progress(broadcast)
            if progress.done + progress.pending != broadcast.recipients:
                result.problems.append(f"progress does not add up: {progress.to_json()}")
            if sent >= args.messages or progress.pending == 0:
                break
            if time.perf_counter() - started > args.messages / args.rate * 3 + 120:
                result.problems.append(
                    f"only {sent} offers sent in {time.perf_counter() - started:.0f} s"
                )
                break
            if time.perf_counter() - last_print > 30:
                last_print = time.perf_counter()
                print(f"  {sent:,} offers sent, {progress.to_json()}", file=sys.stderr)
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asking
    cancelled_at = None
    if broadcast.recipients > args.messages:
        broadcast = await broadcasts.cancel(broadcast, actor="tg:1")
        cancelled_at = len(offer_sends(emu))
    # What was in flight settles: nothing queued, sending or held any more.
    for _ in range(120):
        if not await unsettled(app, broadcast):
            break
        await asyncio.sleep(0.5)
    if cancelled_at is not None:
        await asyncio.sleep(2.0)  # a send in flight reaches the emulator
        result.after_cancel = len(offer_sends(emu)) - cancelled_at
    await check(app, broadcast, await broadcasts.progress(broadcast), emu, result)
    return result


async def unsettled(app: Application, broadcast: Broadcast) -> int:
    async with app.engine.connect() as conn:
        query = select(func.count()).where(
            outbox.c.broadcast_id == broadcast.id,
            outbox.c.status.in_(("queued", "sending", "held")),
        )
        return int((await conn.execute(query)).scalar_one())


async def check(
    app: Application, broadcast: Broadcast, progress: Progress, emu: BotAPIEmulator, r: Sending
) -> None:
    r.sends = offer_sends(emu)
    copies = Counter(chat for _time, chat in r.sends)
    async with app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.chat_id, outbox.c.status).where(
                    outbox.c.broadcast_id == broadcast.id
                )
            )
        ).all()
        control = set(
            (
                await conn.execute(
                    select(members.c.telegram_id)
                    .join(broadcast_members, broadcast_members.c.member_id == members.c.id)
                    .where(
                        broadcast_members.c.broadcast_id == broadcast.id,
                        broadcast_members.c.control.is_(True),
                        members.c.telegram_id.is_not(None),
                    )
                )
            ).scalars()
        )
    recorded_sent = {chat for chat, status in rows if status == "sent"}
    twice = [chat for chat, n in copies.items() if n > 1]
    if twice:
        r.problems.append(f"{len(twice)} chats got two copies or more, e.g. {twice[:3]}")
    if set(copies) & control:
        r.problems.append(f"{len(set(copies) & control)} control members got the offer")
    if set(copies) != recorded_sent:
        r.problems.append(
            f"chats with an offer {len(copies):,} != outbox rows sent {len(recorded_sent):,}"
        )
    by_status = Counter(status for _chat, status in rows)
    ended = sum(n for status, n in by_status.items() if status in OUTCOMES)
    if progress.sent != len(recorded_sent) or progress.done != ended:
        r.problems.append(f"progress {progress.to_json()} vs outbox rows {dict(by_status)}")
    if progress.done + progress.pending != broadcast.recipients:
        r.problems.append(f"progress does not add up to {broadcast.recipients}")
    r.notes.append(
        f"at the end: {broadcast.status}, progress {progress.to_json()}; outbox rows"
        f" {dict(by_status)}; {len(copies):,} chats got exactly "
        f"{'one copy' if not twice else 'MORE than one'}; control members reached: "
        f"{len(set(copies) & control)}"
    )


# A cancel stops what the sender claimed too (marketing.offer withdraws it): only the sends
# already handed to Telegram, one or two at 25/s, may arrive after it.
AFTER_CANCEL_MAX = 2


def send_figures(r: Sending, args: argparse.Namespace) -> list[Figure]:
    where = f"{LABEL[r.backend]}, {args.send_members:,} members, rate {args.rate:g}/s"
    rate = r.rate(args.messages)
    n = min(len(r.sends), args.messages)
    p99 = percentile(r.latencies, 0.99) * 1000
    return [
        Figure(
            "broadcasts",
            f"offers sent/s over the first {n:,}, {where}",
            rate,
            "/s",
            f">= {TARGET_SHARE * args.rate:g}/s",
            rate >= TARGET_SHARE * args.rate and n >= args.messages,
        ),
        Figure(
            "broadcasts",
            f"429 answers (emulator's limiter; sender saw {r.sender_429}), {where}",
            r.emulator_429,
            "",
            "0",
            r.emulator_429 == 0 and r.sender_429 == 0,
        ),
        Figure(
            "broadcasts",
            f"members' Balance p50 while sending ({args.ask_rate:g}/s), {where}",
            percentile(r.latencies, 0.5) * 1000,
            "ms",
        ),
        Figure(
            "broadcasts",
            f"members' Balance p99 while sending ({len(r.latencies):,} answers), {where}",
            p99,
            "ms",
            f"< {TARGET_P99_MS:.0f} ms",
            p99 < TARGET_P99_MS and not r.ask_errors,
        ),
        *(
            [
                Figure(
                    "broadcasts",
                    f"offers that reached Telegram after cancel() returned, {where}",
                    r.after_cancel,
                    "",
                    f"<= {AFTER_CANCEL_MAX} (the sends in flight)",
                    r.after_cancel <= AFTER_CANCEL_MAX,
                )
            ]
            if r.after_cancel is not None
            else []
        ),
        Figure(
            "broadcasts",
            f"RSS growth while sending (peak less before; the process holds the emulator and"
            f" every message it recorded too), {where}",
            r.peak_mb - r.start_mb,
            "MB",
        ),
    ]


# ------------------------------------------------------------------------------ running


async def main(args: argparse.Namespace) -> int:
    backends = [b.strip() for b in args.only.split(",")] if args.only else list(BACKENDS)
    for line in await machine_info("postgresql" in backends):
        print(line)
    figures: list[Figure] = []
    failed = False
    if args.part in ("both", "materialise"):
        for backend in backends:
            problems, found = await materialise_in_child(backend, args.members)
            failed |= bool(problems)
            figures += found
    if args.part in ("both", "send"):
        for backend in backends:
            print(
                f"{LABEL[backend]}: sending {args.messages:,} offers at {args.rate:g}/s"
                f" on {args.send_members:,} members (emulator's limit {EMULATOR_LIMIT}/s)",
                file=sys.stderr,
            )
            result = await send(backend, args)
            for note in result.notes:
                print(f"  {LABEL[backend]}: {note}")
            for problem in result.problems + result.ask_errors[:5]:
                print(f"  {LABEL[backend]}: CHECK FAILED: {problem}")
            failed |= bool(result.problems or result.ask_errors)
            figures += send_figures(result, args)
    report(figures)
    missed = any(f.met is False for f in figures)
    return 1 if failed or (args.strict and missed) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=None, help="materialise: 200,000")
    parser.add_argument("--send-members", type=int, default=None, help="send: 20,000")
    parser.add_argument("--messages", type=int, default=None, help="offers timed (10,000)")
    parser.add_argument("--rate", type=float, default=25.0, help="SEND_RATE_PER_SECOND")
    parser.add_argument("--askers", type=int, default=100, help="members asking for balance")
    parser.add_argument("--ask-rate", type=float, default=3.0, help="their presses per second")
    parser.add_argument("--part", choices=("both", "materialise", "send"), default="both")
    parser.add_argument("--quick", action="store_true", help="20,000 members, 1,000 offers")
    parser.add_argument("--only", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve-materialise", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members is None:
        args.members = 20_000 if args.quick else 200_000
    if args.send_members is None:
        args.send_members = min(args.members, 20_000)
    if args.messages is None:
        args.messages = 1_000 if args.quick else 10_000
    if args.only and set(args.only.split(",")) - set(BACKENDS):
        parser.error(f"--only takes {', '.join(BACKENDS)}")
    if args.rate + args.ask_rate >= EMULATOR_LIMIT:
        parser.error(
            f"--rate + --ask-rate must stay under the emulator's {EMULATOR_LIMIT}/s (Telegram's"
            " limit per bot, which the bot's answers share with its broadcasts)"
        )
    return args


if __name__ == "__main__":
    if not os.environ.get("BENCH_DATA_DIR"):
        print("note: BENCH_DATA_DIR is not set; templates go to the temporary directory")
    arguments = parse_args()
    if arguments.serve_materialise:
        sys.exit(asyncio.run(serve_materialise(arguments.serve_materialise, arguments.members)))
    sys.exit(asyncio.run(main(arguments)))
