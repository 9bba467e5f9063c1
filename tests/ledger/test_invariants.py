"""The invariant check finds a ledger that does not add up and names the member."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from ledger.invariants import check_ledger
from ledger.service import LedgerService
from storage.schema import entries, lots, members
from tests.conftest import ROOT, Phones

RUB = 100


async def _fill(ledger: LedgerService, phones: Phones) -> list[int]:
    ids = []
    for i in range(3):
        member_id = (await ledger.register_member(phones.next())).member.member_id
        await ledger.purchase(receipt_id=f"R-{i}", member_id=member_id, amount_kopecks=2000 * RUB)
        ids.append(member_id)
    await ledger.purchase(
        receipt_id="R-x", member_id=ids[0], amount_kopecks=1000 * RUB, redeem_points=100
    )
    await ledger.refund(refund_id="RF-x", receipt_id="R-x", amount_kopecks=500 * RUB)
    return ids


def _check_cli(url: str) -> subprocess.CompletedProcess[str]:
    return _cli(url, "ledger", "check")


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow  # runs the command line in a real process
async def test_a_filled_ledger_passes_the_check(
    ledger: LedgerService, phones: Phones, database_url: str
) -> None:
    await _fill(ledger, phones)
    assert await check_ledger(ledger.engine) == []
    result = _check_cli(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger OK: 3 members" in result.stdout


@pytest.mark.slow  # runs the command line in a real process
def test_admin_commands_refuse_a_sqlite_database_that_is_not_there(tmp_path: Path) -> None:
    """The wrong directory or DATABASE_URL: said so, and no empty database is made for keys
    that nobody would ever check."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'loyalty.db'}"
    result = _check_cli(url)
    assert result.returncode == 2 and "no database at" in result.stderr
    created = _cli(url, "api-key", "create", "--name", "till")
    assert created.returncode == 2 and "no database at" in created.stderr
    assert created.stdout == "" and not (tmp_path / "data" / "loyalty.db").exists()


@pytest.mark.slow  # runs the command line in a real process
async def test_a_tampered_balance_is_reported_with_the_member(
    ledger: LedgerService, phones: Phones, database_url: str
) -> None:
    ids = await _fill(ledger, phones)
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(members).where(members.c.id == ids[1]).values(balance=members.c.balance + 5)
        )
    violations = await check_ledger(ledger.engine)
    assert {v.rule for v in violations} == {"balance != active lots", "balance != journal"}
    assert {v.member_id for v in violations} == {ids[1]}
    result = _check_cli(database_url)
    assert result.returncode == 1
    assert f"member {ids[1]}: balance != journal" in result.stdout


async def test_a_lot_changed_behind_the_journal_is_reported(
    ledger: LedgerService, phones: Phones
) -> None:
    ids = await _fill(ledger, phones)
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(lots).where(lots.c.member_id == ids[2]).values(remaining=lots.c.remaining - 1)
        )
        await conn.execute(
            update(members).where(members.c.id == ids[2]).values(balance=members.c.balance - 2)
        )
    rules = {v.rule for v in await check_ledger(ledger.engine)}
    assert "lot does not match its spends" in rules and "balance != journal" in rules


async def test_a_debt_next_to_usable_points_is_reported(
    ledger: LedgerService, phones: Phones
) -> None:
    ids = await _fill(ledger, phones)
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(members)
            .where(members.c.id == ids[0])
            .values(debt=7, entries_count=members.c.entries_count + 1)
        )
        await conn.execute(
            entries.insert().values(
                member_id=ids[0],
                kind="debt",
                points=0,
                pending=0,
                debt=7,
                created_at=ledger.clock.now(),
            )
        )
    violations = await check_ledger(ledger.engine)
    assert [(v.rule, v.member_id) for v in violations] == [("debt with usable points", ids[0])]


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL is backed up with pg_dump
@pytest.mark.slow  # runs the command line in a real process
async def test_a_backup_of_the_sqlite_database_is_a_consistent_copy(
    ledger: LedgerService, phones: Phones, database_url: str, tmp_path: Path
) -> None:
    await _fill(ledger, phones)  # in WAL: the latest pages are in the -wal file
    target = tmp_path / "copy.db"
    result = _cli(database_url, "backup", str(target))
    assert result.returncode == 0, result.stderr
    copy = _check_cli(f"sqlite+aiosqlite:///{target}")
    assert copy.returncode == 0 and "ledger OK: 3 members" in copy.stdout
    assert _cli(database_url, "backup", str(target)).returncode == 2  # never overwrites


async def test_a_wrong_count_of_entries_is_reported_with_the_member(
    ledger: LedgerService, phones: Phones
) -> None:
    """History pages say "page X of Y" from the member's stored count of entries: a count that
    drifted from the journal (one too few, or an entry written without counting it) is found."""
    ids = await _fill(ledger, phones)
    assert await check_ledger(ledger.engine) == []
    counts = [(await ledger.history(member_id)).total for member_id in ids]
    assert min(counts) > 0
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(members)
            .where(members.c.id == ids[1])
            .values(entries_count=members.c.entries_count - 1)
        )
        await conn.execute(
            entries.insert().values(
                member_id=ids[2], kind="adjustment", points=0, created_at=ledger.clock.now()
            )
        )
    violations = await check_ledger(ledger.engine)
    assert [(v.rule, v.member_id) for v in violations] == [
        ("entries count != journal", ids[1]),
        ("entries count != journal", ids[2]),
    ]
    assert violations[0].detail == f"stored {counts[1] - 1}, journal has {counts[1]}"
    assert violations[1].detail == f"stored {counts[2]}, journal has {counts[2] + 1}"
