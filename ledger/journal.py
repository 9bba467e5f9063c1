"""Lots and the journal inside one transaction: the mechanics every ledger operation uses.

Points come in lots (what was credited, what is left, when usable, when it burns); every change
is an entry in the append-only journal; `spends` records which lots paid for an outgoing entry,
so that a refund or a reversal gives points back to the lots they came from. A member's running
totals (balance, pending, debt, and the count of their entries) travel through an operation as
`Totals` and are written once at the end; CHECK constraints in the database refuse a negative
value.

Nothing here opens or commits a transaction: LedgerService does, and passes its connection.

Over 500 lines because it is one set of mechanics on one set of statements: the single-member
path (credit, debit, give back, pay a debt, burn what is overdue) and the many-members path of
the scheduled jobs (burn, activate) share the lot-burning, entry-writing and totals-storing code
and the compiled statements. Apart, the job half would reach into the other's private helpers
through a mixin and a third module of statements, to save some 60 lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, literal_column, select, update
from sqlalchemy.engine import Row

from ledger import policy
from ledger.errors import InsufficientPoints, LedgerError, MemberNotFound, PointsLimit
from ledger.rules import Rules
from ledger.views import Burnt
from storage.fast import Fast, later
from storage.schema import entries, lots, members, purchases, spends

# Statements of the hot paths, built once (building and cache-keying a statement costs more
# than SQLite takes to run it).
_MEMBER_SELECT = select(members).where(members.c.id == bindparam("member_id"))
_MEMBER = Fast(_MEMBER_SELECT)
_MEMBER_FOR_UPDATE = Fast(_MEMBER_SELECT.with_for_update())
# A member's qualifying spend since a moment: what the tier window counts.
# Rule: whatever writes `purchases` (a purchase inserts, a refund lowers `qualifying`) also
# updates that member's row in the same transaction. PostgreSQL's purchase relies on it to
# know whether the spend it read with the lock is current (`fresh` in ledger/operations.py).
SPEND_SINCE = select(func.coalesce(func.sum(purchases.c.qualifying), 0)).where(
    purchases.c.member_id == bindparam("member_id"),
    purchases.c.created_at > bindparam("since"),
)
# The member with that spend as `window_spend`, for a purchase: one statement.
_MEMBER_WITH_SPEND = Fast(
    select(members, SPEND_SINCE.scalar_subquery().label("window_spend")).where(
        members.c.id == bindparam("member_id")
    )
)
_TOTALS_UPDATE = (
    update(members)
    .where(members.c.id == bindparam("member_id"))
    .values(
        balance=bindparam("balance"),
        pending=bindparam("pending"),
        debt=bindparam("debt"),
        entries_count=bindparam("entries_count"),
    )
)
_STORE_TOTALS = Fast(_TOTALS_UPDATE)
_STORE_TOTALS_WITH: dict[tuple[str, ...], Fast] = {}  # and other columns, by their names
_INSERT_ENTRY = Fast(entries.insert().returning(entries.c.id))
_INSERT_LOT = Fast(lots.insert())
# A member's usable lots, as the partial index ix_lots_member_usable holds them: its condition
# written with the same literals (a bound parameter would not tell the planner that the index
# applies), so that the lots spent or burnt to zero, most of a long history, are never read.
USABLE_LOT = and_(
    lots.c.status == literal_column("'active'"), lots.c.remaining > literal_column("0")
)
USABLE = and_(lots.c.member_id == bindparam("member_id"), USABLE_LOT)
_OPEN_LOTS = Fast(select(lots.c.id, lots.c.remaining, lots.c.expires_at).where(USABLE))
# The member's lots whose expiry has come: a range of that index, empty unless the burn job is
# behind.
_DUE_LOTS = Fast(
    select(lots.c.id, lots.c.remaining).where(USABLE, lots.c.expires_at <= bindparam("now"))
)
_TAKE_FROM_LOT = Fast(
    update(lots)
    .where(lots.c.id == bindparam("lot_id"))
    .values(remaining=lots.c.remaining - bindparam("take"))
)
_INSERT_SPENDS = Fast(spends.insert())


@dataclass(slots=True)
class Totals:
    """A member's running totals inside one transaction; `entries` counts their journal
    entries (Journal.insert_entry adds one for each)."""

    balance: int
    pending: int
    debt: int
    entries: int


def totals_of(row: Any) -> Totals:
    """The running totals of a member's row."""
    return Totals(
        balance=row.balance, pending=row.pending, debt=row.debt, entries=row.entries_count
    )


class Journal:
    def __init__(self, rules: Rules, is_postgres: bool) -> None:
        self.rules = rules
        self._is_postgres = is_postgres

    def lock_member(self, conn: Connection, member_id: int) -> Row[Any]:
        """Lock the member's row (SQLite: BEGIN IMMEDIATE has locked everything already)."""
        statement = _MEMBER_FOR_UPDATE if self._is_postgres else _MEMBER
        row = statement(conn, {"member_id": member_id}).first()
        if row is None:
            raise MemberNotFound("no such member")
        return row

    def read_locked(
        self, conn: Connection, member_id: int, *, spend_since: datetime | None = None
    ) -> Row[Any]:
        """The member's row once the caller holds its lock (with `window_spend` if asked).

        On PostgreSQL this must be a statement after the one that waited for the lock: under
        READ COMMITTED a statement that waited sees the locked row as the other transaction
        committed it, but evaluates everything else (the spend) in the snapshot it started
        with, without the purchase that other transaction just added."""
        if spend_since is None:
            row = _MEMBER(conn, {"member_id": member_id}).first()
        else:
            params = {"member_id": member_id, "since": spend_since}
            row = _MEMBER_WITH_SPEND(conn, params).first()
        if row is None:
            raise MemberNotFound("no such member")
        return row

    def lock_totals(self, conn: Connection, member_id: int) -> Totals:
        return totals_of(self.lock_member(conn, member_id))

    def store_totals(self, conn: Connection, member_id: int, totals: Totals, **extra: Any) -> None:
        """Write the running totals (never negative: refused here, and by CHECK constraints).
        The write may go with the transaction's next statement (storage.fast.later)."""
        if min(totals.balance, totals.pending, totals.debt) < 0:
            # Unreachable unless a rule above is wrong; the CHECK constraints back this up.
            raise LedgerError("the operation would make a total negative; nothing was changed")
        params: dict[str, Any] = {
            "member_id": member_id,
            "balance": totals.balance,
            "pending": totals.pending,
            "debt": totals.debt,
            "entries_count": totals.entries,
        }
        values = {k: v for k, v in extra.items() if v is not None}
        statement = _STORE_TOTALS
        if values:
            columns = tuple(sorted(values))
            statement = _STORE_TOTALS_WITH.get(columns)  # type: ignore[assignment]
            if statement is None:
                statement = Fast(_TOTALS_UPDATE.values({k: bindparam(k) for k in columns}))
                _STORE_TOTALS_WITH[columns] = statement
            params.update(values)
        later(conn, statement, params)

    def member_row(self, conn: Connection, member_id: int) -> Row[Any]:
        row = _MEMBER(conn, {"member_id": member_id}).first()
        if row is None:
            raise MemberNotFound("no such member")
        return row

    # ------------------------------------------------------ lots and the journal

    def insert_entry(
        self,
        conn: Connection,
        member_id: int,
        totals: Totals,
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
        entry_id: int = _INSERT_ENTRY(
            conn,
            {
                "member_id": member_id,
                "operation_id": operation_id,
                "kind": kind,
                "points": points,
                "pending": pending,
                "debt": debt,
                "reference": reference,
                "reason": reason,
                "actor": actor,
                "created_at": now,
            },
        ).scalar_one()
        totals.entries += 1
        return entry_id

    def credit(
        self,
        conn: Connection,
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
        """Add a lot of points; held ones are pending until the hold is over. The lot may go
        with the transaction's next statement (storage.fast.later).

        Refused past policy.MAX_MEMBER_POINTS (usable plus held): only what adds points is,
        so spending, burning and activating always go through."""
        if totals.balance + totals.pending + points > policy.MAX_MEMBER_POINTS:
            raise PointsLimit(
                f"a member can hold at most {policy.MAX_MEMBER_POINTS} points; nothing was changed"
            )
        held = hold and self.rules.hold_days > 0
        available_at = now + timedelta(days=self.rules.hold_days) if held else now
        expires = expires_at or available_at + timedelta(days=self.rules.points_lifetime_days)
        entry_id = self.insert_entry(
            conn,
            member_id,
            totals,
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
        lot = {
            "member_id": member_id,
            "entry_id": entry_id,
            "points": points,
            "remaining": points,
            "status": "pending" if held else "active",
            "available_at": available_at,
            "expires_at": expires,
            "created_at": now,
        }
        later(conn, _INSERT_LOT, lot)
        if held:
            totals.pending += points
        else:
            totals.balance += points
            self.pay_debt(conn, member_id, totals, now, operation_id)
        return entry_id

    def pay_debt(
        self,
        conn: Connection,
        member_id: int,
        totals: Totals,
        now: datetime,
        operation_id: int | None,
    ) -> None:
        """New usable points pay off a debt first."""
        payoff = min(totals.debt, totals.balance)
        if payoff <= 0:
            return
        open_lots = self.open_lots(conn, member_id)
        allocation = policy.allocate_fifo(open_lots, payoff)
        entry_id = self.insert_entry(
            conn,
            member_id,
            totals,
            "debt_payoff",
            -payoff,
            0,
            -payoff,
            now,
            operation_id=operation_id,
        )
        self.take_from_lots(conn, entry_id, allocation.takes)
        totals.balance -= payoff
        totals.debt -= payoff

    def debit(
        self,
        conn: Connection,
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

        Lots whose expiry has come are written off before (LedgerService._run_operation calls
        burn_own_due), so what is taken here is what the member can see.

        strict: refuse a shortfall; otherwise the shortfall becomes debt.
        """
        from_active: list[tuple[int, int]] = []
        from_pending: list[tuple[int, int]] = []
        left = points
        if first_lot_entry is not None:
            own = (
                conn.execute(
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
            open_lots = [lot for lot in self.open_lots(conn, member_id) if lot.lot_id not in taken]
            allocation = policy.allocate_fifo(open_lots, left)
            from_active.extend(allocation.takes)
            left = allocation.shortfall
        if left and strict:
            raise InsufficientPoints("not enough points", balance=totals.balance)
        active_points = sum(take for _, take in from_active)
        pending_points = sum(take for _, take in from_pending)
        entry_id = self.insert_entry(
            conn,
            member_id,
            totals,
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
        self.take_from_lots(conn, entry_id, from_active + from_pending)
        totals.balance -= active_points
        totals.pending -= pending_points
        totals.debt += left
        return entry_id

    def give_back(
        self,
        conn: Connection,
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
            conn.execute(
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
        entry_id = self.insert_entry(
            conn,
            member_id,
            totals,
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
            conn.execute(
                update(spends)
                .where(spends.c.id == spend_id)
                .values(returned=spends.c.returned + give)
            )
            conn.execute(
                update(lots).where(lots.c.id == lot_id).values(remaining=lots.c.remaining + give)
            )
        totals.balance += points
        self.pay_debt(conn, member_id, totals, now, operation_id)
        return entry_id

    def open_lots(self, conn: Connection, member_id: int) -> list[policy.OpenLot]:
        rows = _OPEN_LOTS(conn, {"member_id": member_id}).all()
        return [policy.OpenLot(row.id, row.remaining, row.expires_at) for row in rows]

    def take_from_lots(
        self, conn: Connection, entry_id: int, takes: Sequence[tuple[int, int]]
    ) -> None:
        if not takes:
            return
        _TAKE_FROM_LOT.many(conn, [{"lot_id": lot, "take": take} for lot, take in takes])
        _INSERT_SPENDS.many(
            conn, [{"entry_id": entry_id, "lot_id": lot, "points": take} for lot, take in takes]
        )

    # ------------------------------------------------- many members at once (jobs)

    def lock_many(self, conn: Connection, member_ids: Sequence[int]) -> dict[int, Totals]:
        """Lock these members (in id order, so two batches cannot deadlock) and read totals."""
        statement = (
            select(
                members.c.id,
                members.c.balance,
                members.c.pending,
                members.c.debt,
                members.c.entries_count,
            )
            .where(members.c.id.in_(member_ids))
            .order_by(members.c.id)
        )
        if self._is_postgres:
            statement = statement.with_for_update()
        return {row.id: totals_of(row) for row in conn.execute(statement)}

    def burn_due(self, conn: Connection, member_ids: Sequence[int], now: datetime) -> list[Burnt]:
        """Burn every lot of these members whose expiry has come: one expiry entry per member,
        taking the whole remainder of each due lot. A handful of statements per batch."""
        totals = self.lock_many(conn, member_ids)
        due = conn.execute(
            select(lots.c.id, lots.c.member_id, lots.c.remaining)
            .where(lots.c.member_id.in_(member_ids), USABLE_LOT, lots.c.expires_at <= now)
            .order_by(lots.c.member_id, lots.c.expires_at, lots.c.id)
        ).all()
        burnt = self._burn(
            conn, [(lot.member_id, lot.id, lot.remaining) for lot in due], now, totals
        )
        for member_id, points in burnt.items():
            totals[member_id].balance -= points
        self._store_many(conn, {member_id: totals[member_id] for member_id in burnt})
        return [
            Burnt(member_id, points, totals[member_id].balance)
            for member_id, points in burnt.items()
        ]

    def burn_own_due(self, conn: Connection, member_id: int, totals: Totals, now: datetime) -> None:
        """Burn the lots of this member (locked) whose expiry has come, as the burn job would
        (which may not have run yet). `totals` is changed here and stored by the caller."""
        due = _DUE_LOTS(conn, {"member_id": member_id, "now": now}).all()
        if due:
            due_lots = [(member_id, lot.id, lot.remaining) for lot in due]
            burnt = self._burn(conn, due_lots, now, {member_id: totals})
            totals.balance -= burnt[member_id]

    def _burn(
        self,
        conn: Connection,
        due: Sequence[tuple[int, int, int]],
        now: datetime,
        totals: Mapping[int, Totals],
    ) -> dict[int, int]:
        """Write off these (member id, lot id, remaining) lots: one expiry entry per member;
        returns the points burnt per member (their entries are counted in `totals`)."""
        burnt: dict[int, int] = {}
        for member_id, _lot, remaining in due:
            burnt[member_id] = burnt.get(member_id, 0) + remaining
        if not burnt:
            return {}
        entry_ids = self._insert_entries(
            conn,
            [
                {"member_id": member_id, "kind": "expiry", "points": -points, "pending": 0}
                for member_id, points in burnt.items()
            ],
            now,
            totals,
        )
        for chunk in _chunks([lot for _, lot, _ in due]):
            conn.execute(update(lots).where(lots.c.id.in_(chunk)).values(remaining=0))
        _INSERT_SPENDS.many(
            conn,
            [
                {"entry_id": entry_ids[member_id], "lot_id": lot, "points": remaining}
                for member_id, lot, remaining in due
            ],
        )
        return burnt

    def activate_due(self, conn: Connection, member_ids: Sequence[int], now: datetime) -> int:
        """Make these members' held lots usable once their hold is over; new points pay off a
        debt first."""
        totals = self.lock_many(conn, member_ids)
        due = conn.execute(
            select(lots.c.id, lots.c.member_id, lots.c.remaining).where(
                lots.c.member_id.in_(member_ids),
                lots.c.status == "pending",
                lots.c.available_at <= now,
            )
        ).all()
        if not due:
            return 0
        for chunk in _chunks([lot.id for lot in due]):
            conn.execute(update(lots).where(lots.c.id.in_(chunk)).values(status="active"))
        activated: dict[int, int] = {}
        for lot in due:
            activated[lot.member_id] = activated.get(lot.member_id, 0) + lot.remaining
        activated = {member_id: points for member_id, points in activated.items() if points}
        self._insert_entries(
            conn,
            [
                {"member_id": member_id, "kind": "activation", "points": points, "pending": -points}
                for member_id, points in activated.items()
            ],
            now,
            totals,
        )
        for member_id, points in activated.items():
            member = totals[member_id]
            member.balance += points
            member.pending -= points
            if member.debt:
                self.pay_debt(conn, member_id, member, now, None)
        self._store_many(conn, {member_id: totals[member_id] for member_id in activated})
        return sum(activated.values())

    def _insert_entries(
        self,
        conn: Connection,
        rows: list[dict[str, Any]],
        now: datetime,
        totals: Mapping[int, Totals],
    ) -> dict[int, int]:
        """Insert one entry per member in one statement (counted in the member's `totals`);
        returns entry ids by member id."""
        if not rows:
            return {}
        for row in rows:
            totals[row["member_id"]].entries += 1
        defaults = {"operation_id": None, "debt": 0, "reference": None, "reason": None}
        result = conn.execute(
            entries.insert().returning(entries.c.id, entries.c.member_id),
            [{**defaults, "actor": None, "created_at": now, **row} for row in rows],
        )
        return {row.member_id: row.id for row in result}

    def _store_many(self, conn: Connection, totals: dict[int, Totals]) -> None:
        for member in totals.values():
            if min(member.balance, member.pending, member.debt) < 0:
                raise LedgerError("the operation would make a total negative; nothing was changed")
        if totals:
            _STORE_TOTALS.many(
                conn,
                [
                    {
                        "member_id": member_id,
                        "balance": t.balance,
                        "pending": t.pending,
                        "debt": t.debt,
                        "entries_count": t.entries,
                    }
                    for member_id, t in totals.items()
                ],
            )


def _chunks(ids: list[int], size: int = 5000) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]
