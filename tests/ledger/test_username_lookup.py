"""Finding a member (or a staff member) by @username reads an index, not every row."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from bench.dataset import build_dataset
from ledger.members import MEMBER_BY_USERNAME
from ledger.rules import Rules
from ledger.service import LedgerService
from storage.schema import staff_languages


async def _plan(conn: AsyncConnection, statement: Select[tuple[object, ...]]) -> str:
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = (await conn.execute(text(explain + sql))).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


async def test_a_cashier_finds_a_member_by_username_through_the_index_not_a_scan(
    engine: AsyncEngine, rules: Rules
) -> None:
    await build_dataset(engine, 2_000, seed=3, now=datetime(2026, 12, 1, tzinfo=UTC), rules=rules)
    async with engine.connect() as conn:
        wanted = (
            await conn.execute(text("SELECT id, username FROM members WHERE username LIKE 'B%'"))
        ).first()
        assert wanted is not None and wanted.username != wanted.username.lower()
        plan = await _plan(conn, MEMBER_BY_USERNAME.params(username=wanted.username.lower()))

    assert "ix_members_username_lower" in plan, plan
    ledger = LedgerService(engine, rules)
    try:
        found = await ledger.member_by_username("@" + wanted.username.upper())
    finally:
        ledger.close()
    assert found is not None and found.member_id == wanted.id


async def test_staff_are_found_by_username_through_the_index(engine: AsyncEngine) -> None:
    # The statement of staff.roles.StaffService.find_by_username.
    statement = (
        select(staff_languages.c.telegram_id)
        .where(func.lower(staff_languages.c.username) == "someone")
        .order_by(staff_languages.c.seen_at.desc())
        .limit(1)
    )
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A handful of staff: a scan is cheaper there, so PostgreSQL is asked to show
            # whether the index can serve the query at all.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = await _plan(conn, statement)
    assert "ix_staff_languages_username_lower" in plan, plan
