"""The scheduled jobs and who runs them.

Every job is idempotent and state-based (it looks at what is due *now*, not at what happened
since its last run), so a job that runs twice does nothing the second time, and a bot that was
off for a day catches up on its first run. With several processes on one PostgreSQL, only the
holder of an advisory lock runs jobs and drains the outbox; when it dies, its connection closes,
the lock is released, and another process takes over at its next attempt. Several processes on
one SQLite file (on one host) do the same with an exclusive lock on a file beside the database,
which the kernel releases when its holder dies. An in-memory database has one process: it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Connection, bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.service import LedgerService
from ledger.views import Burnt
from messaging.notifier import Notifier, Recipient
from messaging.sender import Sender
from scheduler.due import TierNews, burn_warnings_due, recipients_of, tier_news_due, tier_rank
from storage.engine import sqlite_file
from storage.schema import job_runs, members

try:
    import fcntl
except ImportError:  # Windows: no flock; a SQLite deployment there is one process
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("loyalty.scheduler")

LEADER_LOCK_KEY = 7_340_002
NEWS_BATCH = 200  # tier news (and the tiers they tell) per write transaction

# name -> seconds between runs
JOB_INTERVALS: dict[str, int] = {
    "activate": 600,
    "burn": 600,
    "warn": 1800,
    "tier_news": 60,
    "birthdays": 3600,
}
# name -> the time of day it runs, in the shop's time zone (rules.messages.default_timezone);
# like every job, it also runs when a process starts leading (a restart applies new rules).
# The tier pass: purchases leave the window one day at a time, so once a day, just after the
# day turns, covers them; purchases and refunds set their member's tier themselves.
DAILY_JOBS: dict[str, time] = {
    "tiers": time(0, 5),
}


class Jobs:
    """The jobs themselves; each returns a small summary for the job log."""

    def __init__(self, ledger: LedgerService, notifier: Notifier, runner_id: str) -> None:
        self.ledger = ledger
        self.notifier = notifier
        self.runner_id = runner_id

    @property
    def engine(self) -> AsyncEngine:
        return self.ledger.engine

    async def activate(self) -> dict[str, Any]:
        return {"points": await self.ledger.activate_due()}

    async def burn(self) -> dict[str, Any]:
        """Burn what is due and tell each member, in the burn's own transaction."""

        def tell(conn: Connection, burnt: list[Burnt]) -> None:
            recipients = recipients_of(conn, [item.member_id for item in burnt])
            for item in burnt:
                if item.member_id in recipients:
                    self.notifier.points_burnt(conn, recipients[item.member_id], item)

        points = await self.ledger.expire_due(tell)
        if points:
            self.notifier.outbox.wakeup.set()
        return {"points": points}

    async def warn(self) -> dict[str, Any]:
        warnings = await burn_warnings_due(self.engine, self.ledger.rules, self.ledger.clock.now())
        # Most are queued already (due for days, the job runs every half hour): one read
        # instead of a write transaction each that would find its key taken.
        known = await self.notifier.outbox.queued([warning.dedup_key for warning in warnings])
        messages = [
            message
            for warning in warnings
            if warning.dedup_key not in known
            and (
                message := self.notifier.burn_warning(
                    warning.recipient,
                    warning.points,
                    warning.burns_at,
                    dedup_key=warning.dedup_key,
                    relevant_until=warning.relevant_until,
                )
            )
            is not None
        ]
        # A few hundred to a write transaction (a catch-up finds thousands due).
        queued = await self.notifier.outbox.enqueue_many(messages)
        return {"due": len(warnings), "queued": queued}

    async def tiers(self) -> dict[str, Any]:
        """The daily pass: every member's tier from the window's spend (purchases leave it,
        thresholds change), then the news of it."""
        changed = await self.ledger.recompute_tiers()
        return {"recomputed": len(changed), **await self.tier_news()}

    async def tier_news(self) -> dict[str, Any]:
        """Tell members who went up a tier (a purchase, the daily pass); a fall is remembered
        silently. Cheap when there is no news: a partial index holds the members it reads."""
        news = await tier_news_due(self.engine, self.ledger.rules)
        today = self.ledger.clock.now().date().isoformat()
        rules = self.ledger.rules
        told = 0
        # A batch to a write transaction of the ledger's (not aiosqlite's, whose write lock
        # held across thread hops made the purchases wait): the news and the tier it tells.
        for start in range(0, len(news), NEWS_BATCH):
            batch = news[start : start + NEWS_BATCH]
            messages = [
                message
                for item in batch
                if tier_rank(rules, item.tier) > tier_rank(rules, item.announced)
                and (message := self.notifier.tier_up(item.recipient, item.tier, today)) is not None
            ]
            told += await self.ledger.db.write(
                functools.partial(self._announce, batch=batch, messages=messages), long=True
            )
        if told:
            self.notifier.outbox.wakeup.set()
        return {"told": told}

    def _announce(
        self, conn: Connection, batch: list[TierNews], messages: list[dict[str, Any]]
    ) -> int:
        told = self.notifier.outbox.queue_in(conn, messages)
        # A fall is not news; remember it so the next rise is. (Only if the tier is still the
        # one read: a purchase meanwhile leaves it to the next run.)
        conn.execute(
            update(members)
            .where(members.c.id == bindparam("member_key"), members.c.tier == bindparam("new_tier"))
            .values(tier_announced=bindparam("new_tier")),
            [{"member_key": item.recipient.member_id, "new_tier": item.tier} for item in batch],
        )
        return told

    async def birthdays(self) -> dict[str, Any]:
        credited = 0
        for member_id in await self.ledger.birthday_candidates():
            points = await self.ledger.credit_birthday(member_id)
            member = await self.ledger.get_member(member_id)
            year = self.ledger.birthday_year(member)
            if year is None or not await self.ledger.has_birthday_bonus(member_id, year):
                continue
            credited += points
            valid_until = self.ledger.clock.now() + timedelta(
                days=self.ledger.rules.birthday.valid_days
            )
            recipient = Recipient(
                member.member_id, member.telegram_id, member.language, member.timezone
            )
            await self.notifier.birthday(
                recipient, self.ledger.rules.birthday.points, valid_until, year
            )
        return {"credited": credited}

    def all(self) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
        """In the order a catch-up run should take them: activate before burning and warning,
        tiers after the day's changes."""
        return {
            "activate": self.activate,
            "burn": self.burn,
            "warn": self.warn,
            "tiers": self.tiers,
            "tier_news": self.tier_news,
            "birthdays": self.birthdays,
        }

    async def run(self, name: str) -> dict[str, Any]:
        """Run one job and record it in job_runs."""
        clock = self.ledger.clock
        async with self.engine.begin() as conn:
            run_id = (
                await conn.execute(
                    job_runs.insert()
                    .values(job=name, runner=self.runner_id, started_at=clock.now())
                    .returning(job_runs.c.id)
                )
            ).scalar_one()
        result = await self.all()[name]()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id)
                .values(finished_at=clock.now(), result=json.dumps(result))
            )
        return result

    async def run_all(self) -> dict[str, dict[str, Any]]:
        return {name: await self.run(name) for name in self.all()}


class Leadership:
    """Who runs the jobs and polls the chat: on PostgreSQL the holder of an advisory lock,
    kept on its own connection for as long as the process lives; on a SQLite file the holder
    of an exclusive lock on `<database>-leader` (the kernel drops it with its process); with
    an in-memory database (one process by nature), this process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None
        self._file: _FileLock | None = None
        self._always = False
        if engine.dialect.name != "postgresql":
            database = sqlite_file(engine.url.render_as_string(hide_password=False))
            if database is None or fcntl is None:  # no file, or no flock (Windows)
                self._always = True
            else:
                self._file = _FileLock(f"{database}-leader")

    @property
    def is_leader(self) -> bool:
        if self._file is not None:
            return self._file.held
        return self._always or self._conn is not None

    async def try_lead(self) -> bool:
        """Take the lock if free; check that a held one is still held."""
        if self._always:
            return True
        if self._file is not None:
            return self._file.take()
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection died: so did the lock
                log.warning("lost the scheduler lock")
                await self._drop()
        conn = await self.engine.connect()
        try:
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}
                )
            ).scalar_one()
            await conn.commit()
        except Exception:
            await conn.close()
            raise
        if got:
            self._conn = conn
            log.info("this process runs the scheduled jobs")
            return True
        await conn.close()
        return False

    async def resign(self) -> None:
        if self._file is not None:
            self._file.release()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK_KEY}
                )
                await self._conn.commit()
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class _FileLock:
    """An exclusive, non-blocking flock on one file, held while the file stays open (the
    file itself stays: deleting it would let a newcomer lock a new file beside a held one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._unlockable = False  # the file system cannot lock: this process leads alone

    @property
    def held(self) -> bool:
        return self._fd is not None or self._unlockable

    def take(self) -> bool:
        if self.held:
            return True
        assert fcntl is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            return self._lead_without(error)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            return self._lead_without(error)
        self._fd = fd
        log.info("this process runs the scheduled jobs")
        return True

    def _lead_without(self, error: OSError) -> bool:
        log.warning(
            "cannot lock %s (%s): this process runs the jobs without it; run only one",
            self.path,
            error.strerror,
        )
        self._unlockable = True
        return True

    def release(self) -> None:
        self._unlockable = False
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the lock


def new_runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[:64]


class SchedulerRunner:
    """APScheduler in the bot's event loop: tries to lead every `lead_interval` seconds;
    the leader runs each job on its interval (or daily, at its time in the shop's time zone),
    drains the outbox and (`on_lead`, `on_resign`) takes the chat's updates: Telegram gives
    them to one poller at a time."""

    def __init__(
        self,
        jobs: Jobs,
        sender: Sender,
        leadership: Leadership,
        *,
        lead_interval: int = 15,
        intervals: dict[str, int] | None = None,
        daily: dict[str, time] | None = None,
        on_lead: Callable[[], Awaitable[None]] | None = None,
        on_resign: Callable[[], Awaitable[None]] | None = None,
        sweeps: dict[str, tuple[float, Callable[[], Awaitable[object]]]] | None = None,
    ) -> None:
        self.jobs = jobs
        # name -> (seconds between runs, what to run): frequent, quick passes over what is due
        # (expiring confirmations), given by the assembly; run by the leader, not logged.
        self.sweeps = sweeps or {}
        self.sender = sender
        self.leadership = leadership
        self.on_lead = on_lead
        self.on_resign = on_resign
        self.lead_interval = lead_interval
        self.intervals = intervals or JOB_INTERVALS
        self.daily = DAILY_JOBS if daily is None else daily
        self.zone = ZoneInfo(jobs.ledger.rules.messages.default_timezone)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._sending: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._lead_failures = 0

    async def start(self) -> None:
        self.scheduler.add_job(
            self._lead,
            "interval",
            seconds=self.lead_interval,
            id="lead",
            max_instances=1,
            coalesce=True,
        )
        for name, seconds in self.intervals.items():
            self.scheduler.add_job(
                self._run_job,
                "interval",
                seconds=seconds,
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
            )
        for name, at in self.daily.items():
            self.scheduler.add_job(
                self._run_job,
                CronTrigger(hour=at.hour, minute=at.minute, timezone=self.zone),
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # a busy loop at 00:05 must not skip the day
            )
        for name, (every, sweep) in self.sweeps.items():
            self.scheduler.add_job(
                self._sweep,
                "interval",
                seconds=every,
                args=[name, sweep],
                id=f"sweep:{name}",
                max_instances=1,
                coalesce=True,
            )
        self.scheduler.start()
        await self._lead()

    async def _catch_up(self) -> None:
        for name in self.jobs.all():
            await self._run_job(name)

    async def _lead(self) -> None:
        try:
            leading = await self.leadership.try_lead()
        except Exception as error:
            self._lead_failures += 1
            if self._lead_failures == 1:  # in full once; then a line (every 15 s otherwise)
                log.exception("could not reach the database to take the scheduler lock")
            else:
                log.warning("still cannot reach the database (%s)", type(error).__name__)
            leading = False
        else:
            self._lead_failures = 0
        if leading and self._sending is not None and self.sender.superseded:
            # The lock came back (its connection had dropped) after another process led for
            # a while: this sender claims nothing more, so it starts over with a later epoch.
            await self._stop_sending()
        if leading and self._sending is None:
            self._sending = asyncio.create_task(self.sender.run(), name="outbox-sender")
            # Newly leading (at start, or taking over from a process that died): catch up at
            # once instead of waiting for each job's interval.
            self.scheduler.add_job(self._catch_up, id="catch-up", replace_existing=True)
            if self.on_lead is not None:
                await self.on_lead()
        elif not leading and self._sending is not None:
            await self._stop_sending()
            if self.on_resign is not None:
                await self.on_resign()

    async def _run_job(self, name: str) -> None:
        if not self.leadership.is_leader:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            result = await self.jobs.run(name)
        except Exception:
            log.exception("job %s failed", name)
            return
        finally:
            if task is not None:
                self._running.discard(task)
        log.info("job %s: %s", name, result)

    async def _sweep(self, name: str, sweep: Callable[[], Awaitable[object]]) -> None:
        if not self.leadership.is_leader:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await sweep()
        except Exception:
            log.exception("sweep %s failed", name)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _stop_sending(self) -> None:
        if self._sending is not None:
            self.sender.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending
            self._sending = None
            self.sender.restart()

    async def stop(self) -> None:
        """Stop scheduling, let running jobs finish (they are short and idempotent), stop the
        sender, give up the lock. A second call (also one made while the first is waiting)
        does nothing."""
        if self._stopped or not self.scheduler.running:
            return
        self._stopped = True
        # Pause first: shutting down cancels the jobs still running, mid-transaction.
        self.scheduler.pause()
        running = [task for task in self._running if task is not asyncio.current_task()]
        if running:
            await asyncio.wait(running, timeout=30)
        self.scheduler.shutdown(wait=False)
        await self._stop_sending()
        await self.leadership.resign()  # (what on_lead started is its owner's to stop)
