"""What is due: pure queries over the ledger, no sending. The jobs turn these into messages.

Burn warnings: for each member and each local date on which points burn, one warning per
threshold of `rules.messages.burn_warning_days` (default 7 and 3 days before). A run that comes
late (the bot was off) still sends the warning of the threshold it is in, once; a threshold
already passed is not sent after a later one has become due.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.rules import Rules
from messaging.notifier import Recipient
from storage.engine import readonly
from storage.schema import lots, members


@dataclass(frozen=True, slots=True)
class BurnWarning:
    recipient: Recipient
    points: int
    burns_at: datetime  # the first moment on that date when points burn
    burn_date: date  # in the member's time zone
    days_before: int  # the threshold this warning is for (7, 3, ...)
    relevant_until: datetime  # after this, a later warning or the burn itself replaces it

    @property
    def dedup_key(self) -> str:
        return f"burn:{self.recipient.member_id}:{self.burn_date.isoformat()}:{self.days_before}"


@dataclass(frozen=True, slots=True)
class TierNews:
    recipient: Recipient
    tier: str
    announced: str  # the tier the member was last told about


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def warning_threshold(days_left: int, thresholds: tuple[int, ...]) -> int | None:
    """The threshold a burn `days_left` days away falls under: the smallest one that is not
    smaller than days_left. None when it is further away than every threshold."""
    fitting = [days for days in thresholds if days >= days_left]
    return min(fitting) if fitting and days_left >= 0 else None


async def burn_warnings_due(engine: AsyncEngine, rules: Rules, now: datetime) -> list[BurnWarning]:
    thresholds = rules.messages.burn_warning_days
    if not thresholds:
        return []
    horizon = now + timedelta(days=max(thresholds) + 1)
    query = (
        select(
            lots.c.member_id,
            lots.c.expires_at,
            lots.c.remaining,
            lots.c.created_at,
            members.c.telegram_id,
            members.c.language,
            members.c.timezone,
        )
        .join(members, members.c.id == lots.c.member_id)
        .where(
            lots.c.status == "active",
            lots.c.remaining > 0,
            lots.c.expires_at > now,
            lots.c.expires_at <= horizon,
            members.c.status == "active",
            members.c.telegram_id.is_not(None),
        )
    )
    burning: dict[tuple[int, date], list[tuple[datetime, int, datetime]]] = defaultdict(list)
    recipients: dict[int, Recipient] = {}
    async with readonly(engine).connect() as conn:
        for row in (await conn.execute(query)).all():
            zone = _zone(row.timezone)
            burn_date = row.expires_at.astimezone(zone).date()
            burning[(row.member_id, burn_date)].append(
                (row.expires_at, row.remaining, row.created_at)
            )
            recipients[row.member_id] = Recipient(
                row.member_id, row.telegram_id, row.language, row.timezone
            )
    warnings = []
    for (member_id, burn_date), parts in sorted(burning.items()):
        recipient = recipients[member_id]
        zone = _zone(recipient.timezone)
        days_left = (burn_date - now.astimezone(zone).date()).days
        threshold = warning_threshold(days_left, thresholds)
        if threshold is None:
            continue
        # Points given with a life no longer than the threshold (a broadcast's gift valid 7
        # days) came with their deadline: no warning of that threshold the moment they arrive.
        told = timedelta(days=threshold)
        parts = [part for part in parts if part[0] - part[2] > told]
        if not parts:
            continue
        burns_at = min(moment for moment, _, _ in parts)
        lower = [days for days in thresholds if days < threshold]
        relevant_until = burns_at
        if lower:
            next_warning_day = burn_date - timedelta(days=max(lower))
            relevant_until = min(burns_at, datetime.combine(next_warning_day, time(), tzinfo=zone))
        warnings.append(
            BurnWarning(
                recipient,
                sum(points for _, points, _ in parts),
                burns_at,
                burn_date,
                threshold,
                relevant_until,
            )
        )
    return warnings


def recipients_of(conn: Connection, member_ids: Sequence[int]) -> dict[int, Recipient]:
    """The active members among these who can be told something (they have a chat), by id;
    read in the caller's transaction."""
    query = select(members.c.id, members.c.telegram_id, members.c.language, members.c.timezone)
    rows = conn.execute(
        query.where(
            members.c.id.in_(member_ids),
            members.c.status == "active",
            members.c.telegram_id.is_not(None),
        )
    ).all()
    return {row.id: Recipient(row.id, row.telegram_id, row.language, row.timezone) for row in rows}


# Members whose tier differs from the one they were last told about: read every minute, so
# it must match the predicate of the partial index ix_members_tier_news (storage/schema.py).
TIER_NEWS_DUE = (
    select(
        members.c.id,
        members.c.telegram_id,
        members.c.language,
        members.c.timezone,
        members.c.tier,
        members.c.tier_announced,
    )
    .where(and_(members.c.status == "active", members.c.tier != members.c.tier_announced))
    # In id order, as every batch that locks members takes them: no lock-order deadlock with
    # the daily tier pass or the burn on PostgreSQL.
    .order_by(members.c.id)
)


async def tier_news_due(engine: AsyncEngine, rules: Rules) -> list[TierNews]:
    """Members whose tier differs from the one they were last told about."""
    async with readonly(engine).connect() as conn:
        rows = (await conn.execute(TIER_NEWS_DUE)).all()
    return [
        TierNews(
            Recipient(row.id, row.telegram_id, row.language, row.timezone),
            row.tier,
            row.tier_announced,
        )
        for row in rows
    ]


def tier_rank(rules: Rules, tier: str) -> int:
    names = [t.name for t in rules.tiers]
    return names.index(tier) if tier in names else 0
