"""Time passing: the scheduled runs. Points burn when their expiry comes, held points become
usable, tiers follow the spend of the window as old purchases leave it, birthdays pay a bonus.
Also the tier arithmetic on the database that purchases, refunds and the balance share.

Database: the scans for who is due read many rows, so they run on the read-only async engine
(`self.reader`, off the event loop's thread); every change goes through SyncDatabase, a batch
of members per transaction (`long=True`: on the writer thread) or, for a birthday, one
operation in LedgerBase's runner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, and_, bindparam, case, func, literal, select, update
from sqlalchemy.engine import Row

from ledger import policy
from ledger.errors import IdempotencyConflict
from ledger.journal import SPEND_SINCE, Totals
from ledger.members import Members
from ledger.rules import Rules
from ledger.views import Burnt, MemberView, TierChange
from storage.fast import Fast
from storage.schema import lots, members, operations, purchases

# Members whose tier changes, checked again under their locks: per transaction.
BATCH_TIER_CHANGES = 100
BATCH_DUE_MEMBERS = 1000  # members per transaction when burning or activating

_SPEND_SINCE = Fast(SPEND_SINCE)


class Calendar(Members):
    """The scheduler's jobs; built on Members for the member a birthday is checked against."""

    async def expire_due(
        self, on_burnt: Callable[[Connection, list[Burnt]], None] | None = None
    ) -> int:
        """Burn every active lot whose expiry has come; returns the points burnt. `on_burnt`
        writes what follows from a batch (the members' notices) in the batch's transaction."""
        now = self.clock.now()
        condition = and_(lots.c.status == "active", lots.c.remaining > 0, lots.c.expires_at <= now)

        def work(conn: Connection, ids: Sequence[int]) -> int:
            burnt = self.journal.burn_due(conn, ids, now)
            if on_burnt is not None and burnt:
                on_burnt(conn, burnt)
            return sum(item.points for item in burnt)

        return await self._for_due_members(condition, work)

    async def activate_due(self) -> int:
        """Make held points usable once their hold is over; returns the points activated."""
        now = self.clock.now()
        condition = and_(lots.c.status == "pending", lots.c.available_at <= now)
        return await self._for_due_members(
            condition, lambda conn, ids: self.journal.activate_due(conn, ids, now)
        )

    async def _for_due_members(
        self, condition: Any, work: Callable[[Connection, Sequence[int]], int]
    ) -> int:
        """Run `work` over the members with due lots, a batch of members per transaction."""
        done = 0
        after = 0
        while True:
            async with self.reader.connect() as conn:
                ids = (
                    (
                        await conn.execute(
                            select(lots.c.member_id)
                            .where(condition, lots.c.member_id > after)
                            .group_by(lots.c.member_id)
                            .order_by(lots.c.member_id)
                            .limit(BATCH_DUE_MEMBERS)
                        )
                    )
                    .scalars()
                    .all()
                )
            if not ids:
                return done
            # A batch of a job: long, so never on the event loop's thread.
            done += await self.db.write(functools.partial(_flip, work, ids), long=True)
            after = ids[-1]

    async def credit_birthday(self, member_id: int) -> int:
        """Credit this year's birthday bonus if today is the member's birthday in their time
        zone and the birthday was set early enough; returns the points credited (0 if not due
        or already credited)."""
        now = self.clock.now()
        member = await self.get_member(member_id)
        if not member.is_active or member.birthday is None or member.birthday_set_at is None:
            return 0
        local_today = now.astimezone(ZoneInfo(member.timezone)).date()
        if not _is_birthday(member.birthday, local_today):
            return 0
        min_set = timedelta(days=self.rules.birthday.min_days_set_before)
        if now - member.birthday_set_at < min_set or self.rules.birthday.points <= 0:
            return 0
        points = self.rules.birthday.points
        valid = timedelta(days=self.rules.birthday.valid_days)

        def body(conn: Connection, op_id: int, totals: Totals, row: Row[Any]) -> dict[str, Any]:
            if row.status != "active":  # erased since it was read above: nothing is due
                return {"points": 0}
            self.journal.credit(
                conn,
                member_id,
                totals,
                points,
                "birthday",
                now,
                operation_id=op_id,
                expires_at=now + valid,
            )
            self.journal.store_totals(conn, member_id, totals)
            return {"points": points}

        try:
            result, replayed = await self._run_operation(
                f"birthday:{member_id}:{local_today.year}", "birthday", member_id, {}, None, body
            )
        except IdempotencyConflict:
            return 0
        return 0 if replayed else int(result["points"])

    def birthday_year(self, member: MemberView) -> int | None:
        """The year whose birthday it is today in the member's time zone, if it is today."""
        if member.birthday is None:
            return None
        local_today = self.clock.now().astimezone(ZoneInfo(member.timezone)).date()
        return local_today.year if _is_birthday(member.birthday, local_today) else None

    async def has_birthday_bonus(self, member_id: int, year: int) -> bool:
        async with self.reader.connect() as conn:
            found = (
                await conn.execute(
                    select(operations.c.id).where(
                        operations.c.key == f"birthday:{member_id}:{year}"
                    )
                )
            ).first()
        return found is not None

    async def birthday_candidates(self) -> list[int]:
        """Active members whose birthday is today or tomorrow in UTC (time zones differ)."""
        today = self.clock.now().date()
        days = {(d.month, d.day) for d in (today - timedelta(days=1), today, today + timedelta(1))}
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(members.c.id, members.c.birthday).where(
                        members.c.status == "active", members.c.birthday.is_not(None)
                    )
                )
            ).all()
        return [
            row.id
            for row in rows
            if (row.birthday.month, row.birthday.day) in days
            or (row.birthday.month, row.birthday.day) == (2, 29)
        ]

    async def recompute_tiers(self) -> list[TierChange]:
        """Give every active member the tier their qualifying spend over the window reaches
        now (old purchases leave the window; the rules' thresholds may have changed).

        One set-based statement (`tiers_due`) finds the members whose tier must change; only
        those are then locked and the same statement run again over them (a small batch per
        transaction), so that a purchase or a refund committed meanwhile (which sets the tier
        in its own transaction) is never overwritten by the first statement's older answer."""
        due = await self.tiers_due(self.clock.now())
        changes: list[TierChange] = []
        for start in range(0, len(due), BATCH_TIER_CHANGES):
            batch = [change.member_id for change in due[start : start + BATCH_TIER_CHANGES]]
            changes.extend(
                await self.db.write(
                    functools.partial(self._change_tiers, member_ids=batch), long=True
                )
            )
        return changes

    async def tiers_due(self, now: datetime) -> list[TierChange]:
        """The active members whose stored tier differs from the one their qualifying spend in
        the window ending `now` reaches, in id order: one statement over all members."""
        async with self.reader.connect() as conn:
            rows = (await conn.execute(_tiers_due_query(self.rules, now))).all()
        return [_tier_change(row) for row in rows]

    def _change_tiers(self, conn: Connection, member_ids: Sequence[int]) -> list[TierChange]:
        """Lock these members (in id order, as every batch locks), then find again which of
        them change tier and change it. On PostgreSQL the second statement, after the lock,
        sees every purchase committed before; SQLite's BEGIN IMMEDIATE holds all writers off."""
        if self._is_postgres:
            conn.execute(
                select(members.c.id)
                .where(members.c.id.in_(member_ids))
                .order_by(members.c.id)
                .with_for_update()
            ).all()
        query = _tiers_due_query(self.rules, self.clock.now(), member_ids)
        changes = [_tier_change(row) for row in conn.execute(query)]
        if changes:
            conn.execute(
                update(members)
                .where(members.c.id == bindparam("member_id"))
                .values(tier=bindparam("new_tier")),
                [{"member_id": c.member_id, "new_tier": c.new_tier} for c in changes],
            )
        return changes


def _tier_change(row: Row[Any]) -> TierChange:
    return TierChange(member_id=row.id, old_tier=row.tier, new_tier=row.reached)


def _tiers_due_query(
    rules: Rules, now: datetime, member_ids: Sequence[int] | None = None
) -> Select[Any]:
    """Members whose tier is not the one the window's spend reaches (all, or these): the spend
    of every member in one GROUP BY over the window's purchases, the tier from the rules'
    thresholds as a CASE (the highest threshold reached; below every other one, the first)."""
    since = now - timedelta(days=rules.tier_window_days)
    spends = select(purchases.c.member_id, func.sum(purchases.c.qualifying).label("spend")).where(
        purchases.c.created_at > since
    )
    chosen = members.c.status == "active"
    if member_ids is not None:
        spends = spends.where(purchases.c.member_id.in_(member_ids))
        chosen = and_(chosen, members.c.id.in_(member_ids))
    window = spends.group_by(purchases.c.member_id).subquery("window_spend")
    spend = func.coalesce(window.c.spend, 0)
    higher = sorted(rules.tiers[1:], key=lambda tier: tier.threshold_kopecks, reverse=True)
    reached = case(
        *((spend >= tier.threshold_kopecks, literal(tier.name)) for tier in higher),
        else_=literal(rules.tiers[0].name),
    )
    return (
        select(members.c.id, members.c.tier, reached.label("reached"))
        .select_from(members.outerjoin(window, window.c.member_id == members.c.id))
        .where(chosen, members.c.tier != reached)
        .order_by(members.c.id)
    )


def qualifying_spend(conn: Connection, rules: Rules, member_id: int, now: datetime) -> int:
    """The member's qualifying spend in the tier window that ends now."""
    since = now - timedelta(days=rules.tier_window_days)
    spend = _SPEND_SINCE(conn, {"member_id": member_id, "since": since}).scalar_one()
    return int(spend)


def tier_change(
    conn: Connection, rules: Rules, member_id: int, current: str, now: datetime
) -> TierChange | None:
    """The member's new tier if the spend of the window now reaches another one than `current`."""
    spend = qualifying_spend(conn, rules, member_id, now)
    reached = policy.tier_for_spend(rules, spend).name
    if reached == current:
        return None
    return TierChange(member_id=member_id, old_tier=current, new_tier=reached)


def _flip(
    work: Callable[[Connection, Sequence[int]], int], ids: Sequence[int], conn: Connection
) -> int:
    return work(conn, ids)


def _is_birthday(birthday: date, today: date) -> bool:
    if (birthday.month, birthday.day) == (2, 29) and not _is_leap(today.year):
        return (today.month, today.day) == (2, 28)
    return (birthday.month, birthday.day) == (today.month, today.day)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
