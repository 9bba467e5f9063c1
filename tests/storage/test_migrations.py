"""Migrations build exactly the schema the code declares, and can be rolled back and reapplied."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.engine import create_engine
from storage.migrate import (
    MIGRATION_FILE,
    alembic_config,
    current_revisions,
    downgrade_schema,
    head_revision,
    upgrade_schema,
)
from storage.schema import metadata
from tests.conftest import PG_ADMIN_URL, ROOT, _pg_admin, sqlite_url


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


def test_every_migration_file_is_named_after_its_revision_and_the_newest_is_the_head() -> None:
    """A start recognises a database at the newest migration by the files' names alone
    (storage.migrate.head_revision): they must say what Alembic says."""
    scripts = ScriptDirectory.from_config(alembic_config())
    revisions = list(scripts.walk_revisions())
    assert revisions
    for script in revisions:
        match = MIGRATION_FILE.fullmatch(Path(script.path).name)
        assert match is not None and match.group(1) == script.revision, script.path
    assert scripts.get_heads() == [head_revision()]


async def test_a_start_at_the_newest_migration_does_not_load_alembic(tmp_path: Path) -> None:
    """Alembic (with Mako and Pygments) is loaded only when there is a migration to run: a
    database at the newest one is checked without it, in a fresh interpreter."""
    url = sqlite_url(tmp_path / "at_head.db")
    engine = create_engine(url)
    try:
        await upgrade_schema(engine, "0010")
        async with engine.connect() as conn:
            assert await conn.run_sync(current_revisions) == ["0010"]
    finally:
        await engine.dispose()
    script = (
        "import asyncio, sys\n"
        "from storage.engine import create_engine\n"
        "from storage.migrate import upgrade_schema\n"
        "async def main():\n"
        "    engine = create_engine(sys.argv[1])\n"
        "    await upgrade_schema(engine)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('alembic', 'mako', 'pygments') if m in sys.modules))\n"
    )

    def start() -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", script, url], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert start() == "['alembic', 'mako', 'pygments']"  # 0010 -> 0011: Alembic runs it
    assert start() == "[]"  # at the newest: not loaded
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(current_revisions) == [head_revision()]
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


async def test_phone_hashes_stored_before_0007_are_keyed_and_still_recognise_the_phone(
    empty_url: str,
) -> None:
    """0005 kept sha256(phone) in the welcome bonus's key and the referral rewards, also for
    members who deleted their data: after the upgrade none is left, and those phones still get
    no second welcome bonus nor a second referral reward."""
    import hashlib
    from datetime import UTC, datetime

    from sqlalchemy import text

    from ledger.clock import ManualClock
    from ledger.rules import load_rules
    from ledger.service import LedgerService
    from tests.conftest import ROOT

    def plain(phone: str) -> str:
        return hashlib.sha256(phone.encode()).hexdigest()

    kept, erased = "+79990000001", "+79990000002"  # a member, and one who deleted their data
    engine = create_engine(empty_url)
    try:
        await upgrade_schema(engine, "0005")
        now = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            for member_id, phone, status in [(1, kept, "active"), (2, None, "erased")]:
                await conn.execute(
                    text(
                        "INSERT INTO members (card_number, phone, referral_code, status, "
                        "created_at) VALUES (:card, :phone, :code, :status, :now)"
                    ),
                    {
                        "card": f"12345678901{member_id}",
                        "phone": phone,
                        "code": f"code{member_id}",
                        "status": status,
                        "now": now,
                    },
                )
            for member_id, phone in [(1, kept), (2, erased)]:  # ids in the order of insertion
                await conn.execute(
                    text(
                        "INSERT INTO operations (key, kind, member_id, request_hash, result, "
                        "created_at) VALUES (:key, 'welcome', :member, '', '{}', :now)"
                    ),
                    {"key": f"welcome:{plain(phone)}", "member": member_id, "now": now},
                )
            await conn.execute(
                text(
                    "INSERT INTO referral_rewards (invited_phone_hash, inviter_id, invited_id, "
                    "created_at) VALUES (:hash, 1, 2, :now)"
                ),
                {"hash": plain(erased), "now": now},
            )
        await upgrade_schema(engine)
        async with engine.connect() as conn:
            keys = set((await conn.execute(text("SELECT key FROM operations"))).scalars())
            rewards = set(
                (
                    await conn.execute(text("SELECT invited_phone_hash FROM referral_rewards"))
                ).scalars()
            )
        stored = " ".join(keys | rewards)
        assert plain(kept) not in stored and plain(erased) not in stored
        assert len(keys) == 2 and len(rewards) == 1

        clock = ManualClock(datetime.now(UTC))
        ledger = LedgerService(engine, load_rules(ROOT / "rules.toml"), clock)
        try:
            again = await ledger.register_member(erased, referral_code="code1")
            assert again.created and again.welcome_points == 0
            await ledger.purchase(
                receipt_id="R-1", member_id=again.member.member_id, amount_kopecks=100_000
            )
            assert (await ledger.balance(1)).balance == 0  # no second referral reward
            assert (await ledger.register_member(kept)).welcome_points == 0
        finally:
            ledger.close()
    finally:
        await engine.dispose()
