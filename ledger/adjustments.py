"""Staff's actions on a member's points: an adjustment by hand (with a reason) and the reversal
of one bonus or adjustment entry.

Database: only through SyncDatabase (`self.db`): each operation runs in LedgerBase's runner,
and answers with the entry it wrote as Queries reads it.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.engine import Row

from ledger.errors import (
    EntryNotFound,
    EntryNotReversible,
    InsufficientPoints,
    InvalidPoints,
    ReasonRequired,
)
from ledger.journal import Totals
from ledger.operations import MAX_POINTS
from ledger.queries import ENTRY, REVERSIBLE_KINDS, Queries
from ledger.views import EntryView
from storage.audit import write_audit
from storage.fast import Fast
from storage.schema import entries, lots, spends

_BURNT_OF_ENTRY = Fast(  # points of an entry's own lot that an expiry took
    select(func.coalesce(func.sum(spends.c.points - spends.c.returned), 0))
    .select_from(spends.join(lots, lots.c.id == spends.c.lot_id))
    .join(entries, entries.c.id == spends.c.entry_id)
    .where(lots.c.entry_id == bindparam("entry_id"), entries.c.kind == "expiry")
)


class Adjustments(Queries):
    """Adjust and reverse (support's desk); built on Queries for the entry they answer with."""

    async def adjust(
        self,
        *,
        member_id: int,
        points: int,
        reason: str,
        actor: str,
        operation_id: str | None = None,
        audit_action: str | None = None,
    ) -> EntryView:
        """Add (positive) or remove (negative) points by hand, with a reason. With
        `audit_action`, its audit record is written in the same transaction (a retry under the
        same `operation_id` changes nothing and writes none)."""
        if points == 0 or abs(points) > MAX_POINTS:
            raise InvalidPoints(
                f"an adjustment must be a non-zero number of points, at most {MAX_POINTS} "
                "either way"
            )
        if not reason.strip():
            raise ReasonRequired("a reason is required")
        key = f"adjust:{operation_id or secrets.token_hex(12)}"
        request = {"member_id": member_id, "points": points, "reason": reason}

        def body(conn: Connection, op_id: int, totals: Totals, _: Row[Any]) -> dict[str, Any]:
            now = self.clock.now()
            if points > 0:
                entry_id = self.journal.credit(
                    conn,
                    member_id,
                    totals,
                    points,
                    "adjustment",
                    now,
                    operation_id=op_id,
                    reason=reason,
                    actor=actor,
                )
            else:
                if totals.balance < -points:
                    raise InsufficientPoints(
                        f"the member has only {totals.balance} points", balance=totals.balance
                    )
                entry_id = self.journal.debit(
                    conn,
                    member_id,
                    totals,
                    -points,
                    "adjustment",
                    now,
                    operation_id=op_id,
                    reason=reason,
                    actor=actor,
                    strict=True,
                )
            self.journal.store_totals(conn, member_id, totals)
            if audit_action is not None:
                write_audit(
                    conn,
                    actor=actor,
                    action=audit_action,
                    target=f"member:{member_id}",
                    reason=reason,
                    details={"points": points, "entry": entry_id},
                    now=now,
                )
            return {"entry_id": entry_id}

        result, _ = await self._run_operation(key, "adjust", member_id, request, actor, body)
        return await self.entry(result["entry_id"])

    async def reverse_entry(
        self, *, entry_id: int, reason: str, actor: str, audit_action: str | None = None
    ) -> EntryView:
        """Undo one bonus or adjustment entry; a purchase is undone by a refund. With
        `audit_action`, its audit record is written in the same transaction."""
        if not reason.strip():
            raise ReasonRequired("a reason is required")
        target = await self.db.read(lambda conn: ENTRY(conn, {"entry_id": entry_id}).first())
        if target is None:
            raise EntryNotFound("no such entry")
        if target.kind not in REVERSIBLE_KINDS:
            raise EntryNotReversible(f"a {target.kind} entry cannot be reversed", kind=target.kind)
        request = {"entry_id": entry_id}

        def body(conn: Connection, op_id: int, totals: Totals, _: Row[Any]) -> dict[str, Any]:
            current = (conn.execute(select(entries).where(entries.c.id == entry_id))).one()
            if current.reversed_by is not None:
                raise EntryNotReversible("this entry is already reversed", kind=current.kind)
            now = self.clock.now()
            amount = current.points + current.pending
            if amount > 0:
                # What burnt of the entry's own lot is gone already: not taken a second time.
                amount -= int(_BURNT_OF_ENTRY(conn, {"entry_id": entry_id}).scalar_one())
            if amount >= 0:  # 0: it all burnt; the reversal is on record all the same
                new_id = self.journal.debit(
                    conn,
                    current.member_id,
                    totals,
                    amount,
                    "reversal",
                    now,
                    operation_id=op_id,
                    reference=str(entry_id),
                    reason=reason,
                    actor=actor,
                    strict=False,
                    first_lot_entry=entry_id,
                )
            else:
                new_id = self.journal.give_back(
                    conn,
                    current.member_id,
                    totals,
                    entry_id,
                    -amount,
                    "reversal",
                    now,
                    operation_id=op_id,
                    reference=str(entry_id),
                    reason=reason,
                    actor=actor,
                )
            conn.execute(update(entries).where(entries.c.id == entry_id).values(reversed_by=new_id))
            self.journal.store_totals(conn, current.member_id, totals)
            if audit_action is not None:
                write_audit(
                    conn,
                    actor=actor,
                    action=audit_action,
                    target=f"entry:{entry_id}",
                    reason=reason,
                    details={"member": current.member_id, "entry": new_id},
                    now=now,
                )
            return {"entry_id": new_id}

        result, _ = await self._run_operation(
            f"reverse:{entry_id}", "reverse", target.member_id, request, actor, body
        )
        return await self.entry(result["entry_id"])
