"""A segment's filter as SQL over `members`: who is in it, and the count of them, reachable or
not and why, in one statement (SQLAlchemy Core; SQLite and PostgreSQL).

Erased members are never in a segment (only `status = 'active'` rows are). A member is
reachable by an offer when the bot has their chat, they have not blocked the bot and they have
not opted out of offers; each unreachable member is counted under the first of those that
fails, in that order (as messaging.sender skips: blocked before opted out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, extract, func, or_, select
from sqlalchemy.engine import Connection

from marketing.segments import SPEND_DAYS, SegmentFilter
from storage.schema import lots, members, purchases


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """Members in a segment, and how many of them an offer can reach."""

    count: int
    reachable: int
    opted_out: int  # opted out of offers (and reachable otherwise)
    blocked: int  # blocked the bot (a 403 marked them unreachable)
    no_chat: int  # never linked a Telegram account (imported members)

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "reachable": self.reachable}


def in_segment(segment: SegmentFilter, now: datetime) -> ColumnElement[bool]:
    """The condition on `members` rows of this segment at `now` (the ledger's clock)."""
    m = members.c
    where: list[ColumnElement[bool]] = [m.status == "active"]
    if segment.tiers is not None:
        where.append(m.tier.in_(segment.tiers))
    if segment.balance_min is not None or segment.balance_max is not None:
        where.extend(_usable_between(segment.balance_min, segment.balance_max, now))
    if segment.burning_within_days is not None:
        until = now + timedelta(days=segment.burning_within_days)
        where.append(
            exists().where(
                lots.c.member_id == m.id,
                lots.c.status == "active",
                lots.c.expires_at > now,
                lots.c.expires_at <= until,
                lots.c.remaining > 0,
            )
        )
    if segment.inactive_days is not None:
        since = now - timedelta(days=segment.inactive_days)
        where.append(
            or_(
                m.last_purchase_at <= since,
                and_(m.last_purchase_at.is_(None), m.created_at <= since),
            )
        )
    if segment.joined_within_days is not None:
        where.append(m.created_at > now - timedelta(days=segment.joined_within_days))
    if segment.language is not None:
        where.append(m.language == segment.language)
    if segment.birthday_month is not None:
        where.append(extract("month", m.birthday) == segment.birthday_month)
    bought = _purchases_at_least(segment.purchases_min, segment.spent_365_min, now)
    if bought is not None:
        where.append(m.id.in_(bought))
    return and_(*where)


def _purchases_at_least(count: int | None, spent: int | None, now: datetime) -> Any:
    """The members with at least `count` purchases ever and `spent` kopecks of qualifying
    spend in the last 365 days, as one grouped pass over purchases (None: no condition; 0
    holds for everyone). A subquery per member, or a pass per condition, measured slower on
    PostgreSQL at 200,000 members (docs/BENCHMARKS.md, issue 15)."""
    since = now - timedelta(days=SPEND_DAYS)
    p = purchases.c
    having = []
    if count:
        having.append(func.count() >= count)
    if spent:
        recent = p.qualifying if not count else case((p.created_at > since, p.qualifying), else_=0)
        having.append(func.sum(recent) >= spent)
    if not having:
        return None
    grouped = select(p.member_id).group_by(p.member_id).having(and_(*having))
    return grouped if count else grouped.where(p.created_at > since)


def _usable_between(low: int | None, high: int | None, now: datetime) -> list[Any]:
    """Usable points are the stored balance less what burnt but the burn job has not written
    off yet (ledger.queries). The balance alone decides wherever it can; the member's overdue
    lots are read (an index range of their past lots) only where it cannot. (A pass over all
    overdue-looking lots instead reads every spent lot of the past: lots stay 'active' at 0.)"""
    m = members.c
    overdue = (
        select(func.coalesce(func.sum(lots.c.remaining), 0))
        .where(
            lots.c.member_id == m.id,
            lots.c.status == "active",
            lots.c.expires_at <= now,
            lots.c.remaining > 0,
        )
        .scalar_subquery()
    )
    where = []
    if low is not None:
        where.append(m.balance >= low)  # usable is never more than the balance
        where.append(m.balance - overdue >= low)
    if high is not None:
        where.append(or_(m.balance <= high, m.balance - overdue <= high))
    return where


def _counted(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


_NO_CHAT = members.c.telegram_id.is_(None)
_BLOCKED = and_(members.c.telegram_id.is_not(None), members.c.unreachable.is_(True))
_OPTED_OUT = and_(
    members.c.telegram_id.is_not(None),
    members.c.unreachable.is_(False),
    members.c.notify_offers.is_(False),
)


def count_statement(segment: SegmentFilter, now: datetime) -> Any:
    """One SELECT: the members of the segment, and the unreachable ones by reason."""
    return select(
        func.count().label("members"),
        _counted(_NO_CHAT).label("no_chat"),
        _counted(_BLOCKED).label("blocked"),
        _counted(_OPTED_OUT).label("opted_out"),
    ).where(in_segment(segment, now))


def count_segment(conn: Connection, segment: SegmentFilter, now: datetime) -> SegmentCounts:
    row = conn.execute(count_statement(segment, now)).one()
    count, no_chat, blocked, opted_out = (
        int(row.members),
        int(row.no_chat),
        int(row.blocked),
        int(row.opted_out),
    )
    return SegmentCounts(
        count=count,
        reachable=count - no_chat - blocked - opted_out,
        opted_out=opted_out,
        blocked=blocked,
        no_chat=no_chat,
    )
