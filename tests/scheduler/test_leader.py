"""Several bot processes on one PostgreSQL: one runs the jobs; another takes over if it dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.i18n import build_i18n
from handlers.notifications import Notifier
from ledger.clock import ManualClock
from ledger.rules import Rules
from ledger.service import LedgerService
from scheduler.jobs import Jobs, Leadership, SchedulerRunner
from scheduler.outbox import Outbox, Sender
from storage.engine import create_engine
from storage.schema import job_runs


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Advisory locks are PostgreSQL's; SQLite deployments are one process by design."""
    return str(request.param)


class Process:
    """What one bot process holds: its own engine, leadership and scheduler runner."""

    def __init__(self, url: str, rules: Rules, clock: ManualClock, name: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        ledger = LedgerService(self.engine, rules, clock)
        outbox = Outbox(self.engine, clock)
        self.jobs = Jobs(ledger, Notifier(build_i18n(), ledger, outbox), name)
        self.leadership = Leadership(self.engine)
        sender = Sender(outbox, bot=None, rules=rules.messages)  # type: ignore[arg-type]
        self.runner = SchedulerRunner(self.jobs, sender, self.leadership)

    async def tick(self) -> None:
        """What APScheduler does on every interval: check leadership, run a job if leading."""
        if await self.leadership.try_lead():
            await self.runner._run_job("burn")
            await self.runner._run_job("tiers")

    async def die(self) -> None:
        """The process is killed: its connections vanish with it."""
        conn = self.leadership._conn
        assert conn is not None
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with self.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await self.engine.dispose()


@pytest.fixture
async def processes(
    database_url: str, rules: Rules, clock: ManualClock
) -> AsyncIterator[tuple[Process, Process]]:
    first = Process(database_url, rules, clock, "first")
    second = Process(database_url, rules, clock, "second")
    yield first, second
    for process in (first, second):
        await process.leadership.resign()
        await process.engine.dispose()


async def _runners(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(job_runs.c.runner))).scalars())


async def test_only_one_of_two_processes_runs_the_jobs(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    for _ in range(5):
        await asyncio.gather(first.tick(), second.tick())
    runners = await _runners(first.engine)
    assert len(runners) == 10 and len(set(runners)) == 1
    leader = first if runners[0] == "first" else second
    follower = second if leader is first else first
    assert leader.leadership.is_leader and not follower.leadership.is_leader


async def test_another_process_takes_over_when_the_leader_dies(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    await first.tick()
    await second.tick()
    await first.die()
    await second.tick()
    assert second.leadership.is_leader
    runners = await _runners(second.engine)
    assert runners == ["first", "first", "second", "second"]


async def test_a_leader_that_lost_its_connection_steps_down(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    await first.tick()
    conn = first.leadership._conn
    assert conn is not None
    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with second.engine.connect() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await second.tick()  # the lock was released with the connection
    assert second.leadership.is_leader
    assert not await first.leadership.try_lead()  # first notices and does not run jobs
    assert not first.leadership.is_leader
