"""Lots and the journal inside one transaction: the mechanics every ledger operation uses.

Points come in lots (what was credited, what is left, when usable, when it burns); every change
is an entry in the append-only journal; `spends` records which lots paid for an outgoing entry,
so that a refund or a reversal gives points back to the lots they came from. A member's running
totals (balance, pending, debt) travel through an operation as `Totals` and are written once at
the end; CHECK constraints in the database refuse a negative value.

Nothing here opens or commits a transaction: LedgerService does, and passes its connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import policy
from ledger.errors import InsufficientPoints, LedgerError, MemberNotFound
from ledger.rules import Rules
from storage.schema import entries, lots, members, spends


@dataclass(slots=True)
class Totals:
    """A member's running totals inside one transaction."""

    balance: int
    pending: int
    debt: int


class Journal:
    def __init__(self, rules: Rules, is_postgres: bool) -> None:
        self.rules = rules
        self._is_postgres = is_postgres

    async def lock_member(self, conn: AsyncConnection, member_id: int) -> Row[Any]:
        statement = select(members).where(members.c.id == member_id)
        if self._is_postgres:
            statement = statement.with_for_update()
        row = (await conn.execute(statement)).first()
        if row is None:
            raise MemberNotFound("no such member")
        return row

    async def lock_totals(self, conn: AsyncConnection, member_id: int) -> Totals:
        row = await self.lock_member(conn, member_id)
        return Totals(balance=row.balance, pending=row.pending, debt=row.debt)

    async def store_totals(
        self, conn: AsyncConnection, member_id: int, totals: Totals, **extra: Any
    ) -> None:
        """Write the running totals; refuses (by the WHERE) any negative value."""
        if min(totals.balance, totals.pending, totals.debt) < 0:
            # Unreachable unless a rule above is wrong; the CHECK constraints back this up.
            raise LedgerError("the operation would make a total negative; nothing was changed")
        values = {k: v for k, v in extra.items() if v is not None}
        await conn.execute(
            update(members)
            .where(members.c.id == member_id)
            .values(balance=totals.balance, pending=totals.pending, debt=totals.debt, **values)
        )

    async def member_row(self, conn: AsyncConnection, member_id: int) -> Row[Any]:
        row = (await conn.execute(select(members).where(members.c.id == member_id))).first()
        if row is None:
            raise MemberNotFound("no such member")
        return row

    # ------------------------------------------------------ lots and the journal

    async def insert_entry(
        self,
        conn: AsyncConnection,
        member_id: int,
        kind: str,
        points: int,
        pending: int,
        debt: int,
        now: datetime,
        *,
        operation_id: int | None = None,
        reference: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> int:
        entry_id: int = (
            await conn.execute(
                entries.insert()
                .values(
                    member_id=member_id,
                    operation_id=operation_id,
                    kind=kind,
                    points=points,
                    pending=pending,
                    debt=debt,
                    reference=reference,
                    reason=reason,
                    actor=actor,
                    created_at=now,
                )
                .returning(entries.c.id)
            )
        ).scalar_one()
        return entry_id

    async def credit(
        self,
        conn: AsyncConnection,
        member_id: int,
        totals: Totals,
        points: int,
        kind: str,
        now: datetime,
        *,
        operation_id: int | None = None,
        reference: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        hold: bool = False,
        expires_at: datetime | None = None,
    ) -> int:
        """Add a lot of points; held ones are pending until the hold is over."""
        held = hold and self.rules.hold_days > 0
        available_at = now + timedelta(days=self.rules.hold_days) if held else now
        expires = expires_at or available_at + timedelta(days=self.rules.points_lifetime_days)
        entry_id = await self.insert_entry(
            conn,
            member_id,
            kind,
            0 if held else points,
            points if held else 0,
            0,
            now,
            operation_id=operation_id,
            reference=reference,
            reason=reason,
            actor=actor,
        )
        await conn.execute(
            lots.insert().values(
                member_id=member_id,
                entry_id=entry_id,
                points=points,
                remaining=points,
                status="pending" if held else "active",
                available_at=available_at,
                expires_at=expires,
                created_at=now,
            )
        )
        if held:
            totals.pending += points
        else:
            totals.balance += points
            await self.pay_debt(conn, member_id, totals, now, operation_id)
        return entry_id

    async def pay_debt(
        self,
        conn: AsyncConnection,
        member_id: int,
        totals: Totals,
        now: datetime,
        operation_id: int | None,
    ) -> None:
        """New usable points pay off a debt first."""
        payoff = min(totals.debt, totals.balance)
        if payoff <= 0:
            return
        open_lots = await self.open_lots(conn, member_id)
        allocation = policy.allocate_fifo(open_lots, payoff)
        entry_id = await self.insert_entry(
            conn, member_id, "debt_payoff", -payoff, 0, -payoff, now, operation_id=operation_id
        )
        await self.take_from_lots(conn, entry_id, allocation.takes)
        totals.balance -= payoff
        totals.debt -= payoff

    async def debit(
        self,
        conn: AsyncConnection,
        member_id: int,
        totals: Totals,
        points: int,
        kind: str,
        now: datetime,
        *,
        strict: bool,
        operation_id: int | None = None,
        reference: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        first_lot_entry: int | None = None,
    ) -> int:
        """Take points oldest-expiry first (from one entry's own lot first, if given).

        strict: refuse a shortfall; otherwise the shortfall becomes debt.
        """
        from_active: list[tuple[int, int]] = []
        from_pending: list[tuple[int, int]] = []
        left = points
        if first_lot_entry is not None:
            own = (
                await conn.execute(
                    select(lots.c.id, lots.c.remaining, lots.c.status).where(
                        lots.c.entry_id == first_lot_entry, lots.c.remaining > 0
                    )
                )
            ).first()
            if own is not None:
                take = min(own.remaining, left)
                (from_pending if own.status == "pending" else from_active).append((own.id, take))
                left -= take
        if left:
            taken = {lot_id for lot_id, _ in from_active}
            open_lots = [
                lot for lot in await self.open_lots(conn, member_id) if lot.lot_id not in taken
            ]
            allocation = policy.allocate_fifo(open_lots, left)
            from_active.extend(allocation.takes)
            left = allocation.shortfall
        if left and strict:
            raise InsufficientPoints("not enough points", balance=totals.balance)
        active_points = sum(take for _, take in from_active)
        pending_points = sum(take for _, take in from_pending)
        entry_id = await self.insert_entry(
            conn,
            member_id,
            kind,
            -active_points,
            -pending_points,
            left,
            now,
            operation_id=operation_id,
            reference=reference,
            reason=reason,
            actor=actor,
        )
        await self.take_from_lots(conn, entry_id, from_active + from_pending)
        totals.balance -= active_points
        totals.pending -= pending_points
        totals.debt += left
        return entry_id

    async def give_back(
        self,
        conn: AsyncConnection,
        member_id: int,
        totals: Totals,
        spent_entry_id: int | None,
        points: int,
        kind: str,
        now: datetime,
        *,
        operation_id: int | None = None,
        reference: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> int:
        """Return points that an entry took, into the lots they came from (with their original
        expiry: points past it burn at the next expiry run)."""
        rows = (
            await conn.execute(
                select(spends.c.id, spends.c.lot_id, spends.c.points, spends.c.returned)
                .join(lots, lots.c.id == spends.c.lot_id)
                .where(spends.c.entry_id == spent_entry_id)
                .order_by(lots.c.expires_at.desc(), lots.c.id.desc())
            )
        ).all()
        left = points
        returns: list[tuple[int, int, int]] = []  # spend id, lot id, points
        for row in rows:
            give = min(row.points - row.returned, left)
            if give > 0:
                returns.append((row.id, row.lot_id, give))
                left -= give
        if left:
            raise LedgerError("more points to give back than were taken")
        entry_id = await self.insert_entry(
            conn,
            member_id,
            kind,
            points,
            0,
            0,
            now,
            operation_id=operation_id,
            reference=reference,
            reason=reason,
            actor=actor,
        )
        for spend_id, lot_id, give in returns:
            await conn.execute(
                update(spends)
                .where(spends.c.id == spend_id)
                .values(returned=spends.c.returned + give)
            )
            await conn.execute(
                update(lots).where(lots.c.id == lot_id).values(remaining=lots.c.remaining + give)
            )
        totals.balance += points
        await self.pay_debt(conn, member_id, totals, now, operation_id)
        return entry_id

    async def open_lots(self, conn: AsyncConnection, member_id: int) -> list[policy.OpenLot]:
        rows = (
            await conn.execute(
                select(lots.c.id, lots.c.remaining, lots.c.expires_at).where(
                    lots.c.member_id == member_id, lots.c.status == "active", lots.c.remaining > 0
                )
            )
        ).all()
        return [policy.OpenLot(row.id, row.remaining, row.expires_at) for row in rows]

    async def take_from_lots(
        self, conn: AsyncConnection, entry_id: int, takes: Sequence[tuple[int, int]]
    ) -> None:
        for lot_id, take in takes:
            await conn.execute(
                update(lots).where(lots.c.id == lot_id).values(remaining=lots.c.remaining - take)
            )
        if takes:
            await conn.execute(
                spends.insert(),
                [{"entry_id": entry_id, "lot_id": lot, "points": take} for lot, take in takes],
            )
