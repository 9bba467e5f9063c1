"""The ledger's invariants, checked over the whole database with set-based queries.

For every member: the stored balance equals the points left in active lots and the sum of the
journal's balance changes; the same for pending points; the debt equals the journal's debt
changes; the stored count of entries equals the journal's; no total is negative; a member with
debt has no usable points. For every lot: the points left are between zero and what it was
created with, and equal to what it was created with minus what entries took from it net of what
was given back. Operation keys are unique.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.schema import entries, lots, members, operations, spends


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant; `member_id` says whose ledger is off, when it is one member's."""

    rule: str
    member_id: int | None
    detail: str

    def __str__(self) -> str:
        who = f"member {self.member_id}" if self.member_id is not None else "ledger"
        return f"{who}: {self.rule}: {self.detail}"


async def check_ledger(engine: AsyncEngine) -> list[Violation]:
    """Every violation found; an empty list means the ledger adds up."""
    return [violation async for violation in ledger_violations(engine)]


async def ledger_violations(engine: AsyncEngine) -> AsyncIterator[Violation]:
    """The violations one by one. The comparisons run in the database, which sends back only
    the rows that break a rule (streamed), so memory does not grow with the ledger."""
    async with engine.connect() as conn:
        for query, violations_of in (
            (_members_off(), _member_violations),
            (_lots_off(), _lot_violations),
            (_duplicate_keys(), _duplicate_violations),
        ):
            result = await conn.stream(query)
            async for row in result:
                for violation in violations_of(row):
                    yield violation


def _members_off() -> Select[Any]:
    lot_sums = (
        select(
            lots.c.member_id.label("member_id"),
            func.sum(lots.c.remaining).filter(lots.c.status == "active").label("active"),
            func.sum(lots.c.remaining).filter(lots.c.status == "pending").label("pending"),
        )
        .group_by(lots.c.member_id)
        .subquery()
    )
    journal_sums = (
        select(
            entries.c.member_id.label("member_id"),
            func.sum(entries.c.points).label("points"),
            func.sum(entries.c.pending).label("pending"),
            func.sum(entries.c.debt).label("debt"),
            func.count().label("entries"),
        )
        .group_by(entries.c.member_id)
        .subquery()
    )
    zero = literal(0)
    lot_active = func.coalesce(lot_sums.c.active, zero)
    lot_pending = func.coalesce(lot_sums.c.pending, zero)
    journal_points = func.coalesce(journal_sums.c.points, zero)
    journal_pending = func.coalesce(journal_sums.c.pending, zero)
    journal_debt = func.coalesce(journal_sums.c.debt, zero)
    journal_entries = func.coalesce(journal_sums.c.entries, zero)
    return (
        select(
            members.c.id,
            members.c.balance,
            members.c.pending,
            members.c.debt,
            members.c.entries_count,
            lot_active.label("lot_active"),
            lot_pending.label("lot_pending"),
            journal_points.label("journal_points"),
            journal_pending.label("journal_pending"),
            journal_debt.label("journal_debt"),
            journal_entries.label("journal_entries"),
        )
        .select_from(
            members.outerjoin(lot_sums, lot_sums.c.member_id == members.c.id).outerjoin(
                journal_sums, journal_sums.c.member_id == members.c.id
            )
        )
        .where(
            or_(  # what _member_violations reports, so that only those rows come back
                members.c.balance != lot_active,
                members.c.balance != journal_points,
                members.c.pending != lot_pending,
                members.c.pending != journal_pending,
                members.c.debt != journal_debt,
                members.c.entries_count != journal_entries,
                members.c.balance < 0,
                members.c.pending < 0,
                members.c.debt < 0,
                and_(members.c.debt > 0, members.c.balance > 0),
            )
        )
        .order_by(members.c.id)
    )


def _lots_off() -> Select[Any]:
    spent = (
        select(
            spends.c.lot_id.label("lot_id"),
            func.sum(spends.c.points - spends.c.returned).label("net"),
        )
        .group_by(spends.c.lot_id)
        .subquery()
    )
    net_spent = func.coalesce(spent.c.net, literal(0))
    return (
        select(
            lots.c.id,
            lots.c.member_id,
            lots.c.points,
            lots.c.remaining,
            net_spent.label("net_spent"),
        )
        .select_from(lots.outerjoin(spent, spent.c.lot_id == lots.c.id))
        .where(
            or_(
                lots.c.remaining < 0,
                lots.c.remaining > lots.c.points,
                lots.c.remaining != lots.c.points - net_spent,
            )
        )
        .order_by(lots.c.id)
    )


def _duplicate_keys() -> Select[Any]:
    return (
        select(operations.c.key, func.count().label("times"))
        .group_by(operations.c.key)
        .having(func.count() > 1)
    )


def _lot_violations(lot: Any) -> list[Violation]:
    found: list[Violation] = []
    if not 0 <= lot.remaining <= lot.points:
        found.append(
            Violation(
                "lot out of range",
                lot.member_id,
                f"lot {lot.id} has {lot.remaining} of {lot.points} points left",
            )
        )
    if lot.remaining != lot.points - lot.net_spent:
        found.append(
            Violation(
                "lot does not match its spends",
                lot.member_id,
                f"lot {lot.id}: {lot.remaining} left, but {lot.points} created "
                f"and {lot.net_spent} taken",
            )
        )
    return found


def _duplicate_violations(dup: Any) -> list[Violation]:
    return [Violation("duplicate operation", None, f"{dup.key} recorded {dup.times} times")]


def _member_violations(row: Any) -> list[Violation]:
    found: list[Violation] = []

    def expect(rule: str, stored: int, actual: int, what: str) -> None:
        if stored != actual:
            found.append(Violation(rule, row.id, f"stored {stored}, {what} {actual}"))

    expect("balance != active lots", row.balance, int(row.lot_active), "lots hold")
    expect("balance != journal", row.balance, int(row.journal_points), "journal sums to")
    expect("pending != pending lots", row.pending, int(row.lot_pending), "lots hold")
    expect("pending != journal", row.pending, int(row.journal_pending), "journal sums to")
    expect("debt != journal", row.debt, int(row.journal_debt), "journal sums to")
    expect("entries count != journal", row.entries_count, int(row.journal_entries), "journal has")
    for name in ("balance", "pending", "debt"):
        value = getattr(row, name)
        if value < 0:
            found.append(Violation(f"negative {name}", row.id, f"{name} is {value}"))
    if row.debt > 0 and row.balance > 0:
        found.append(
            Violation("debt with usable points", row.id, f"debt {row.debt}, balance {row.balance}")
        )
    return found
