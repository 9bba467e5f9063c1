"""Migrations build exactly the schema the code declares, and can be rolled back and reapplied."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.engine import create_engine
from storage.migrate import downgrade_schema, upgrade_schema
from storage.schema import metadata
from tests.conftest import PG_ADMIN_URL, _pg_admin, sqlite_url


@pytest.fixture
async def empty_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    request.getfixturevalue("postgres_url")  # skips or fails exactly like the other PG tests
    name = f"loyalty_migrations_{os.getpid()}"
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _pg_admin(f"CREATE DATABASE {name}")
    base = PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    yield base.rsplit("/", 1)[0] + f"/{name}"
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_match_the_declared_schema_and_roll_back(empty_url: str) -> None:
    engine = create_engine(empty_url)
    try:
        await upgrade_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            assert {"members", "entries", "lots", "operations"} <= await conn.run_sync(_tables)
        await downgrade_schema(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await upgrade_schema(engine)
        await upgrade_schema(engine)  # a second run at head changes nothing
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_upgrading_a_database_with_data_keeps_it(empty_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import text

    from ledger.invariants import check_ledger

    engine = create_engine(empty_url)
    try:
        await upgrade_schema(engine, "0003")
        now = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO members (card_number, phone, referral_code, created_at, "
                    "balance, tier) VALUES ('123456789012', '+79990000001', 'abc', :now, 5, "
                    "'silver')"
                ),
                {"now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO entries (member_id, kind, points, pending, debt, created_at) "
                    "VALUES (1, 'adjustment', 5, 0, 0, :now)"
                ),
                {"now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO lots (member_id, entry_id, points, remaining, status, "
                    "available_at, expires_at, created_at) VALUES (1, 1, 5, 5, 'active', "
                    ":now, :now, :now)"
                ),
                {"now": now},
            )
        await upgrade_schema(engine)
        async with engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT balance, tier, tier_announced FROM members"))
            ).one()
        assert tuple(row) == (5, "silver", "silver")  # nobody gets stale tier news
        assert await check_ledger(engine) == []
    finally:
        await engine.dispose()
