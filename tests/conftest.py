"""Shared fixtures: a migrated database per test, on SQLite and on PostgreSQL.

SQLite: the schema is migrated once into a template file, copied for each test.
PostgreSQL: one database per test session (`loyalty_test_<pid>`), migrated once and truncated
between tests. Without a reachable server the PostgreSQL tests skip with the reason, except
under CI (`CI=true`), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import ManualClock
from ledger.rules import Rules, load_rules
from ledger.service import LedgerService
from storage.engine import create_engine
from storage.migrate import upgrade_schema
from storage.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 12:00 in Moscow
BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on its own loop in another thread, so that session
    fixtures never disturb the event loops pytest-asyncio manages."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    run_in_thread(_migrate(sqlite_url(path)))
    return path


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session."""
    name = f"loyalty_test_{os.getpid()}"
    try:
        run_in_thread(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        run_in_thread(_pg_admin(f"CREATE DATABASE {name}"))
    except (TimeoutError, OSError, Exception) as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    base = PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    url = base.rsplit("/", 1)[0] + f"/{name}"
    run_in_thread(_migrate(url))
    yield url
    run_in_thread(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def truncate_all(engine: AsyncEngine) -> None:
    names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> str:
    """A freshly migrated, empty database of the test's backend."""
    if backend == "sqlite":
        path = tmp_path / "loyalty.db"
        shutil.copy(sqlite_template, path)
        return sqlite_url(path)
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)

    async def reset() -> None:
        try:
            await truncate_all(engine)
        finally:
            await engine.dispose()

    await reset()
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(ROOT / "rules.toml")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ledger(engine: AsyncEngine, rules: Rules, clock: ManualClock) -> Iterator[LedgerService]:
    service = LedgerService(engine, rules, clock)
    yield service
    service.close()


@dataclass
class Phones:
    """Valid, distinct Russian mobile numbers for tests."""

    counter: int = 0

    def next(self) -> str:
        self.counter += 1
        return f"+7999{self.counter:07d}"


@pytest.fixture
def phones() -> Phones:
    return Phones()
