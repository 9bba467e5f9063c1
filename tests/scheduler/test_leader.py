"""Several bot processes on one database: one runs the jobs; another takes over if it dies.
(PostgreSQL: an advisory lock; a SQLite file: a lock on a file beside it.)"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.i18n import build_i18n
from emulator import BotAPIEmulator
from ledger.clock import ManualClock
from ledger.rules import Rules
from ledger.service import LedgerService
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from messaging.sender import Sender
from scheduler.jobs import Jobs, Leadership, SchedulerRunner
from storage.engine import create_engine
from storage.schema import job_runs
from tests.conftest import ROOT

Spawned = asyncio.subprocess.Process
# Waits (up to 5 s) until the backend is gone: without a timeout it returns once signalled,
# and its advisory lock may still be held for a moment.
TERMINATE = "SELECT pg_terminate_backend(:pid, 5000)"


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
        """The process is killed: its connections and open files vanish with it."""
        lock = self.leadership._file
        if lock is not None:
            assert lock._fd is not None
            os.close(lock._fd)  # as the kernel does for a dead process
            lock._fd = None
            await self.engine.dispose()
            return
        conn = self.leadership._conn
        assert conn is not None
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with self.engine.connect() as other:
            await other.execute(text(TERMINATE), {"pid": pid})
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


@pytest.mark.parametrize("backend", ["postgresql"])  # a SQLite lock is no connection
async def test_a_leader_that_lost_its_connection_steps_down(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    await first.tick()
    conn = first.leadership._conn
    assert conn is not None
    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with second.engine.connect() as other:
        await other.execute(text(TERMINATE), {"pid": pid})
    await second.tick()  # the lock was released with the connection
    assert second.leadership.is_leader
    assert not await first.leadership.try_lead()  # first notices and does not run jobs
    assert not first.leadership.is_leader


@pytest.mark.parametrize("backend", ["postgresql"])  # a SQLite lock is no connection
async def test_a_leader_that_takes_its_lock_back_after_another_led_sends_again(
    processes: tuple[Process, Process],
) -> None:
    """The first process's lock connection drops; the second leads for a while (its sender
    takes a later epoch, so the first's claims nothing more) and goes; the first takes the
    lock back at its next look: its sender starts over with a newer epoch and sends again."""
    first, second = processes
    for process in (first, second):
        process.runner.sender.poll_interval = 0.01

    async def epoch_taken(process: Process) -> bool:
        return process.runner.sender.epoch is not None

    await first.runner._lead()
    assert await _until(lambda: epoch_taken(first), 5)
    conn = first.leadership._conn
    assert conn is not None
    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with second.engine.connect() as other:
        await other.execute(text(TERMINATE), {"pid": pid})
    await second.runner._lead()
    assert await _until(lambda: epoch_taken(second), 5)
    later = second.runner.sender.epoch
    await second.runner._stop_sending()
    await second.leadership.resign()

    async def superseded() -> bool:
        return first.runner.sender.superseded

    assert await _until(superseded, 5)
    await first.runner._lead()  # notices the dropped connection and takes the lock back
    try:
        assert first.leadership.is_leader
        assert await _until(lambda: epoch_taken(first), 5)
        epoch = first.runner.sender.epoch
        assert epoch is not None and later is not None and epoch > later
        assert not first.runner.sender.superseded
    finally:
        await first.runner._stop_sending()


# ------------------------------------------------------------- two real processes


async def _spawn_bot(token: str, emulator: BotAPIEmulator, url: str, cwd: Path) -> Spawned:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BOT_TOKEN", "DATABASE_URL", "TELEGRAM_API_URL", "SECRET_KEY"}
    }
    env.update(
        PYTHONPATH=str(ROOT),
        BOT_TOKEN=token,
        TELEGRAM_API_URL=emulator.base_url,
        DATABASE_URL=url,
        RULES_FILE=str(ROOT / "rules.toml"),
        API_PORT="0",
        SECRET_KEY="two-processes-test-secret",
    )
    await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _runner_pids(engine: AsyncEngine) -> list[int]:
    """The process ids in job_runs.runner ("host:pid:random"), in the order the runs began."""
    async with engine.connect() as conn:
        runners = (await conn.execute(select(job_runs.c.runner).order_by(job_runs.c.id))).scalars()
        return [int(runner.split(":")[1]) for runner in runners]


async def _until(predicate: Callable[[], Awaitable[bool]], limit: float) -> bool:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return await predicate()


@pytest.mark.slow  # two real processes; waits for the lock
async def test_two_real_bot_processes_run_the_jobs_once_and_the_survivor_takes_over(
    database_url: str, tmp_path: Path
) -> None:
    """`python -m bot` twice for one bot on one database: only the first runs the jobs and
    polls; when it is killed (SIGKILL: no goodbye, its connections just drop), the second takes
    the lock within one lead interval, catches up at once and takes the chat over."""
    engine = create_engine(database_url)
    token = "111:SHOP"
    async with BotAPIEmulator() as emulator:
        emulator.add_bot(token, username="shop_bot")
        first = await _spawn_bot(token, emulator, database_url, tmp_path / "first")
        second: Spawned | None = None
        try:
            assert await _until(lambda: _has_runs(engine), 60), "the first bot ran no job"
            second = await _spawn_bot(token, emulator, database_url, tmp_path / "second")
            started = lambda: _calls(emulator, "getMe", token, 2)  # noqa: E731
            assert await _until(started, 60), "the second bot never started"
            await asyncio.sleep(3)  # it has tried for the lock (and caught up, had it led)
            pids = await _runner_pids(engine)
            assert set(pids) == {first.pid}, pids  # every job so far ran in the first process
            first.kill()
            await first.wait()
            polled = len(emulator.calls_to("getUpdates", bot=token))
            took_over = lambda: _ran_in(engine, second.pid)  # type: ignore[union-attr]  # noqa: E731
            assert await _until(took_over, 40), "the second bot never took over the jobs"
            polls = lambda: _calls(emulator, "getUpdates", token, polled + 1)  # noqa: E731
            assert await _until(polls, 10), "the second bot never took over the chat"
            pids = await _runner_pids(engine)
            assert set(pids) == {first.pid, second.pid}
            # Runs of one process never interleave with the other's: a clean hand-over.
            switch = pids.index(second.pid)
            assert set(pids[:switch]) == {first.pid} and set(pids[switch:]) == {second.pid}
        finally:
            for process in (first, second):
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()
            await engine.dispose()


async def _has_runs(engine: AsyncEngine) -> bool:
    return bool(await _runner_pids(engine))


async def _ran_in(engine: AsyncEngine, pid: int) -> bool:
    return pid in await _runner_pids(engine)


async def _calls(emulator: BotAPIEmulator, method: str, token: str, at_least: int) -> bool:
    return len(emulator.calls_to(method, bot=token)) >= at_least
