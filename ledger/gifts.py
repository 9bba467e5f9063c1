"""Gift points a broadcast carries: credited to a recipient when their message is sent, once per
(broadcast, member), as a lot with its own short life (PRODUCT.md: "as a lot that burns after
`gift_days`, once per member").

The broadcast's message itself tells the member how many points and until when (from the
result), so the credit writes no notice of its own.

Database: only through SyncDatabase (`self.db`): the credit runs in LedgerBase's runner; the
reader of what was credited runs on the read-only engine (`self.reader`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Row

from ledger.journal import Totals
from ledger.operations import MAX_POINTS, LedgerBase
from ledger.views import GiftResult
from storage.schema import operations

GIFT = "gift"  # the operation's kind and its journal entry's kind
MAX_GIFT_DAYS = 3650  # longer is a mistake in the broadcast, not a short-lived gift
_KEYS_PER_QUERY = 500  # keys in one IN list when asking about given members


def gift_key(broadcast_id: int, member_id: int) -> str:
    """The idempotency key of one member's gift from one broadcast."""
    return f"{GIFT}:{broadcast_id}:{member_id}"


class Gifts(LedgerBase):
    """Broadcast gift points: the credit and who has had it."""

    async def credit_gift(
        self,
        member_id: int,
        broadcast_id: int,
        points: int,
        days: int,
        *,
        actor: str | None = None,
    ) -> GiftResult:
        """Credit the broadcast's gift to the member: `points` usable at once, burning `days`
        days from now. Once per (broadcast, member): a retry answers with the first result
        (`replayed`), the same key with other points or days is an IdempotencyConflict. A member
        who is not active (erased their data) gets nothing: 0 points, no entry."""
        if isinstance(points, bool) or not 0 < points <= MAX_POINTS:
            raise ValueError(f"gift points must be a whole number from 1 to {MAX_POINTS}")
        if isinstance(days, bool) or not 0 < days <= MAX_GIFT_DAYS:
            raise ValueError(f"a gift must live a whole number of days from 1 to {MAX_GIFT_DAYS}")
        request = {"broadcast_id": broadcast_id, "points": points, "days": days}

        def body(conn: Connection, op_id: int, totals: Totals, row: Row[Any]) -> dict[str, Any]:
            if row.status != "active":  # erased: nothing is due, and nothing is written
                return {"points": 0, "expires_at": None}
            now = self.clock.now()
            expires_at = now + timedelta(days=days)
            self.journal.credit(
                conn,
                member_id,
                totals,
                points,
                GIFT,
                now,
                operation_id=op_id,
                reference=str(broadcast_id),
                actor=actor,
                expires_at=expires_at,
            )
            self.journal.store_totals(conn, member_id, totals)
            return {"points": points, "expires_at": expires_at.isoformat()}

        result, replayed = await self._run_operation(
            gift_key(broadcast_id, member_id), GIFT, member_id, request, actor, body
        )
        expires = result["expires_at"]
        return GiftResult(
            member_id=member_id,
            broadcast_id=broadcast_id,
            points=int(result["points"]),
            expires_at=None if expires is None else datetime.fromisoformat(expires),
            replayed=replayed,
        )

    async def gifted_members(
        self, broadcast_id: int, among: Collection[int] | None = None
    ) -> set[int]:
        """The members whose gift from this broadcast has been settled (credited, or found
        nothing due because they had erased their data): calling `credit_gift` for them again
        changes nothing. With `among`, only those members are asked about, by their keys (the
        unique index); without it, every operation of the broadcast is found by its key's
        prefix, a scan of the operations table."""
        if among is None:
            # The prefix ends with ":", so broadcast 1 never matches broadcast 12's keys.
            prefix = f"{GIFT}:{broadcast_id}:"
            queries = [
                select(operations.c.key).where(
                    operations.c.kind == GIFT, operations.c.key.startswith(prefix, autoescape=True)
                )
            ]
        else:
            keys = sorted(gift_key(broadcast_id, member_id) for member_id in set(among))
            queries = [
                select(operations.c.key).where(
                    operations.c.key.in_(keys[start : start + _KEYS_PER_QUERY])
                )
                for start in range(0, len(keys), _KEYS_PER_QUERY)
            ]
        found: set[int] = set()
        async with self.reader.connect() as conn:
            for query in queries:
                found.update(
                    int(key.rsplit(":", 1)[1]) for key in (await conn.execute(query)).scalars()
                )
        return found
