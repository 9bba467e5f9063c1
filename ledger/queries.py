"""What a member or staff reads: the balance (with tier progress and the nearest burn), pages
of the journal, one entry, a receipt.

Database: only through SyncDatabase's reads (`self.db.read`): snapshot reads of one member's
rows, with statements compiled once (storage.fast).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.engine import Row

from ledger import policy
from ledger.calendar import qualifying_spend
from ledger.errors import EntryNotFound
from ledger.journal import USABLE
from ledger.operations import OVERDUE, LedgerBase
from ledger.purchases import PURCHASE
from ledger.views import BalanceView, Burn, EntryView, HistoryPage, PurchaseView
from storage.fast import Fast
from storage.schema import entries, lots, members

# Entries that support may reverse; purchase entries are undone by a refund instead.
REVERSIBLE_KINDS = frozenset({"welcome", "referral", "birthday", "gift", "adjustment"})
_BURNS = Fast(  # the next burn to come, and what should have burnt already
    select(
        func.min(lots.c.expires_at).filter(lots.c.expires_at > bindparam("now")),
        OVERDUE.label("overdue"),
    ).where(USABLE)
)
_BURNING_BEFORE = Fast(
    select(func.coalesce(func.sum(lots.c.remaining), 0)).where(
        USABLE, lots.c.expires_at > bindparam("now"), lots.c.expires_at < bindparam("day_end")
    )
)
# The member's count of entries, kept with their totals: a page does not count them.
_ENTRIES_COUNT = Fast(select(members.c.entries_count).where(members.c.id == bindparam("member_id")))


def _page(newest_first: bool) -> Fast:
    """One page of the member's entries, counted from the newest or from the oldest: a page
    in the older half of a long history is read from the oldest end, so no page skips more
    than half of the member's entries (and the last page, the deepest, skips none)."""
    return Fast(
        select(entries)
        .where(entries.c.member_id == bindparam("member_id"))
        .order_by(entries.c.id.desc() if newest_first else entries.c.id.asc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


_NEWEST_FIRST = _page(newest_first=True)
_OLDEST_FIRST = _page(newest_first=False)
ENTRY = Fast(select(entries).where(entries.c.id == bindparam("entry_id")))


class Queries(LedgerBase):
    """Reads that never write."""

    async def balance(self, member_id: int) -> BalanceView:
        """Usable and pending points, debt, tier progress and the nearest burn."""
        return await self.db.read(functools.partial(self._balance, member_id=member_id))

    def _balance(self, conn: Connection, member_id: int) -> BalanceView:
        now = self.clock.now()
        row = self.journal.member_row(conn, member_id)
        spend = qualifying_spend(conn, self.rules, member_id, now)
        first_burn, overdue = _BURNS(conn, {"member_id": member_id, "now": now}).one()
        burn = None
        if first_burn is not None:
            day_end = _end_of_local_day(first_burn, row.timezone)
            points = _BURNING_BEFORE(
                conn, {"member_id": member_id, "now": now, "day_end": day_end}
            ).scalar_one()
            burn = Burn(points=int(points), burns_at=first_burn)
        tier = self.rules.tier(row.tier)
        upper = policy.next_tier(self.rules, tier)
        return BalanceView(
            member_id=member_id,
            balance=row.balance - int(overdue),
            pending=row.pending,
            debt=row.debt,
            tier=row.tier,
            qualifying_spend=spend,
            next_tier=upper.name if upper else None,
            to_next_tier=max(0, upper.threshold_kopecks - spend) if upper else 0,
            nearest_burn=burn,
        )

    async def history(self, member_id: int, page: int = 0, page_size: int = 10) -> HistoryPage:
        """One page of the member's journal, newest first."""
        page_size = max(1, min(page_size, 50))

        def query(conn: Connection) -> tuple[int, int, Sequence[Row[Any]]]:
            total = _ENTRIES_COUNT(conn, {"member_id": member_id}).scalar_one_or_none() or 0
            pages = max(1, -(-total // page_size))
            at = max(0, min(page, pages - 1))
            skip = at * page_size  # newer entries before this page
            if skip <= total // 2:
                params = {"member_id": member_id, "offset": skip, "limit": page_size}
                return total, at, _NEWEST_FIRST(conn, params).all()
            older = max(0, total - skip - page_size)  # older entries after it
            params = {"member_id": member_id, "offset": older, "limit": total - skip - older}
            return total, at, _OLDEST_FIRST(conn, params).all()[::-1]

        total, page, rows = await self.db.read(query)
        pages = max(1, -(-total // page_size))
        return HistoryPage(
            entries=tuple(entry_view(row) for row in rows), page=page, pages=pages, total=total
        )

    async def entry(self, entry_id: int) -> EntryView:
        row = await self.db.read(lambda conn: ENTRY(conn, {"entry_id": entry_id}).first())
        if row is None:
            raise EntryNotFound("no such entry")
        return entry_view(row)

    async def entry_owner(self, entry_id: int) -> int:
        """The member an entry belongs to."""
        row = await self.db.read(lambda conn: ENTRY(conn, {"entry_id": entry_id}).first())
        owner = row.member_id if row is not None else None
        if owner is None:
            raise EntryNotFound("no such entry")
        return int(owner)

    async def receipt(self, receipt_id: str) -> PurchaseView | None:
        """The purchase recorded under this receipt id, if any."""
        row = await self.db.read(lambda conn: PURCHASE(conn, {"receipt_id": receipt_id}).first())
        if row is None:
            return None
        return PurchaseView(row.receipt_id, row.amount, row.refunded_amount, row.created_at)


def _end_of_local_day(moment: datetime, timezone: str) -> datetime:
    local = moment.astimezone(ZoneInfo(timezone))
    next_midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
    return next_midnight.replace(tzinfo=ZoneInfo(timezone))


def entry_view(row: Row[Any]) -> EntryView:
    return EntryView(
        entry_id=row.id,
        kind=row.kind,
        points=row.points,
        pending=row.pending,
        debt=row.debt,
        reference=row.reference,
        reason=row.reason,
        created_at=row.created_at,
        reversible=row.kind in REVERSIBLE_KINDS and row.reversed_by is None,
        reversed=row.reversed_by is not None,
        actor=row.actor,
    )
