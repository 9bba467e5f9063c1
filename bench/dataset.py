"""A production-shaped database for the benchmarks: N members with 18 months of history.

    python -m bench.dataset --members 200000 --database-url sqlite+aiosqlite:///data/bench.db

Every member's history is computed here in Python with the ledger's own pure rules
(ledger.policy: earning per tier over the 365-day window, the 30% redemption cap, FIFO spending
oldest expiry first, the 180-day lifetime, pro-rata refunds) and written with bulk inserts
(executemany on SQLite, COPY on PostgreSQL), a block of members per transaction, into a database
migrated with the project's own migrations; nothing goes through LedgerService. The rows have
the shapes the ledger writes (entry kinds, `purchase:<receipt>` keys, request hashes, results),
so `python -m bot ledger check` finds the ledger clean and every benchmark reads what production
would hold:

- purchases over 18 months with a long tail: most members a few, some dozens, a few members
  (one in 20,000, at least one) with thousands of lots; about 8% never bought;
- redemptions (with the spends recording which lots paid), full and partial refunds (and the
  debt a refund leaves when the points it takes back were spent), welcome bonuses, referral
  rewards, burns (an expiry entry taking what was left in lots whose lifetime ended), held lots
  and their activation when the rules hold points (hold_days > 0);
- chats (telegram_id) for most members, some unreachable, some opted out of each category of
  messages, ru and en, birthdays for some, a few members who erased their data;
- each member's tier as the qualifying spend of the last 365 days gives it.

Deterministic: the same seed, size, rules and `now` give the same rows. `now` defaults to the
start of the current UTC day, so the data always ends where the benchmark runs; the history is
the same, shifted in time. Members are planned and written in blocks of BLOCK members; a referral
stays inside its block (the inviter has a lower id), so every block stands on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import json
import math
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import policy
from ledger.rules import Rules, load_rules
from storage import phone_hashes
from storage.engine import create_engine, sqlite_file
from storage.migrate import upgrade_schema
from storage.schema import (
    UTCDateTime,
    entries,
    lots,
    members,
    operations,
    purchases,
    referral_rewards,
    spends,
)

BLOCK = 1000  # members planned and written together (one transaction)
HISTORY_DAYS = 548  # 18 months
HEAVY_EVERY = 20_000  # one member in this many has thousands of purchases
_BURN_RUN = timedelta(hours=1)  # expired lots are burnt by the next run of the job
_NEVER = datetime.max

FIRST_NAMES_RU = ("Анна", "Мария", "Елена", "Ольга", "Иван", "Сергей", "Дмитрий", "Алексей")
FIRST_NAMES_EN = ("Anna", "Maria", "John", "Kate", "Alex", "Sam", "Peter", "Lucy")
LAST_NAMES = ("Иванова", "Петров", "Smith", "Кузнецова", "Brown", "Соколов")
USERNAME_PREFIXES = ("user", "Buyer_", "shopFan", "A_Client")
TIMEZONES = ("Europe/Moscow",) * 8 + ("Asia/Yekaterinburg", "Europe/Kaliningrad")


# ------------------------------------------------------------------------------ the model


@dataclass(slots=True, eq=False)  # one lot is itself only (membership of `open`)
class _Lot:
    id: int
    entry_id: int
    points: int
    remaining: int
    status: str
    available_at: datetime
    expires_at: datetime
    created_at: datetime


@dataclass(slots=True)
class _Spend:
    id: int
    entry_id: int
    lot: _Lot
    points: int
    returned: int = 0


@dataclass(slots=True)
class _Purchase:
    id: int
    receipt_id: str
    amount: int
    redeemed: int
    accrued: int
    earn_entry_id: int | None
    earn_lot: _Lot | None
    redeem_entry_id: int | None
    redeem_spends: list[_Spend]
    qualifying: int
    created_at: datetime
    refunded_amount: int = 0
    reversed_accrued: int = 0
    returned_redeemed: int = 0
    in_window: bool = True


@dataclass(slots=True)
class _Plan:
    """What happens to a member, drawn from their own random stream."""

    id: int
    rng: random.Random
    created_at: datetime
    purchases: list[tuple[datetime, int, bool]]  # when, amount in kopecks, wants to redeem
    refunds: dict[int, tuple[datetime, int]]  # purchase index -> when, amount
    referred_by: int | None
    rewards: list[tuple[datetime, int, str, int, str]] = field(default_factory=list)
    # (when, the invited member's purchase operation, their card, their id, their phone hash)


@dataclass
class Counters:
    members: int = 0
    operations: int = 0
    entries: int = 0
    lots: int = 0
    spends: int = 0
    purchases: int = 0


@dataclass
class Rows:
    """One block's rows, in insert order (foreign keys point backwards)."""

    members: list[tuple[Any, ...]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    lots: list[tuple[Any, ...]] = field(default_factory=list)
    spends: list[tuple[Any, ...]] = field(default_factory=list)
    purchases: list[tuple[Any, ...]] = field(default_factory=list)
    referral_rewards: list[tuple[Any, ...]] = field(default_factory=list)


MEMBER_COLUMNS = (
    "id", "card_number", "phone", "telegram_id", "first_name", "last_name", "username",
    "language", "timezone", "birthday", "birthday_set_at", "referral_code", "referred_by",
    "status", "notify_reminders", "notify_tier", "notify_offers", "unreachable", "created_at",
    "consent_at", "erased_at", "last_purchase_at", "balance", "pending", "debt",
    "entries_count", "tier", "tier_announced",
)  # fmt: skip
OPERATION_COLUMNS = (
    "id", "key", "kind", "member_id", "request_hash", "result", "actor", "created_at",
)  # fmt: skip
ENTRY_COLUMNS = (
    "id", "member_id", "operation_id", "kind", "points", "pending", "debt", "reference",
    "reason", "actor", "reversed_by", "created_at",
)  # fmt: skip
LOT_COLUMNS = (
    "id", "member_id", "entry_id", "points", "remaining", "status", "available_at",
    "expires_at", "created_at",
)  # fmt: skip
SPEND_COLUMNS = ("id", "entry_id", "lot_id", "points", "returned")
PURCHASE_COLUMNS = (
    "id", "receipt_id", "member_id", "amount", "redeemed", "accrued", "earn_entry_id",
    "redeem_entry_id", "refunded_amount", "reversed_accrued", "returned_redeemed",
    "qualifying", "created_at",
)  # fmt: skip
REFERRAL_COLUMNS = ("invited_phone_hash", "inviter_id", "invited_id", "created_at")

TABLES: tuple[tuple[str, Table, tuple[str, ...]], ...] = (
    ("members", members, MEMBER_COLUMNS),
    ("operations", operations, OPERATION_COLUMNS),
    ("entries", entries, ENTRY_COLUMNS),
    ("lots", lots, LOT_COLUMNS),
    ("spends", spends, SPEND_COLUMNS),
    ("purchases", purchases, PURCHASE_COLUMNS),
    ("referral_rewards", referral_rewards, REFERRAL_COLUMNS),
)


def _hash_request(request: dict[str, Any]) -> str:
    """As ledger.operations hashes what an idempotency key stands for."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def card_number(member_id: int) -> str:
    """12 digits with a Luhn check digit, unique per id (a bijection of the id mod 10**10)."""
    body = f"{2 + member_id % 7}{member_id * 7_654_321 % 10**10:010d}"
    return body + policy.luhn_check_digit(body)


def phone(member_id: int) -> str:
    """A Russian mobile number in E.164, unique per id."""
    return f"+79{member_id * 387_420_489 % 10**9:09d}"


def _referral_code(member_id: int) -> str:
    value = member_id * 2_654_435_761 % 36**10
    digits = []
    for _ in range(10):
        value, digit = divmod(value, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[digit])
    return "".join(digits)


def _ceil_hour(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + _BURN_RUN


class _Member:
    """One member's ledger, simulated operation by operation as LedgerService would write it."""

    def __init__(
        self, plan: _Plan, rules: Rules, ids: Counters, rows: Rows, now: datetime, key: str
    ) -> None:
        self.plan = plan
        self.rules = rules
        self.ids = ids
        self.rows = rows
        self.now = now
        self.id = plan.id
        self.card = card_number(plan.id)
        self.phone_hash = phone_hashes.phone_hash(key, phone(plan.id))
        self.balance = self.pending = self.debt = 0
        self.entries = 0  # the member's count of entries
        self.lots: list[_Lot] = []
        self.open: list[_Lot] = []  # active lots, by (expires_at, id); emptied ones may linger
        self.held: deque[_Lot] = deque()  # pending lots, by available_at
        self.spends: list[_Spend] = []
        self.purchases: list[_Purchase] = []
        self.window: deque[_Purchase] = deque()
        self.window_spend = 0
        self.last_time = plan.created_at
        self.hold = timedelta(days=rules.hold_days)
        self.lifetime = timedelta(days=rules.points_lifetime_days)
        self.tier_window = timedelta(days=rules.tier_window_days)
        self.tier_name = rules.tiers[0].name

    # ------------------------------------------------------------ journal mechanics

    def _entry(
        self,
        kind: str,
        points: int,
        pending: int,
        debt: int,
        at: datetime,
        op: int | None,
        reference: str | None = None,
        actor: str | None = None,
    ) -> int:
        self.ids.entries += 1
        self.entries += 1
        entry_id = self.ids.entries
        self.rows.entries.append(
            (entry_id, self.id, op, kind, points, pending, debt, reference, None, actor, None, at)
        )
        return entry_id

    def _take(self, entry_id: int, takes: Sequence[tuple[_Lot, int]]) -> list[_Spend]:
        made = []
        for lot, points in takes:
            lot.remaining -= points
            self.ids.spends += 1
            made.append(_Spend(self.ids.spends, entry_id, lot, points))
        self.spends.extend(made)
        return made

    def _fifo(self, points: int, skip: _Lot | None = None) -> tuple[list[tuple[_Lot, int]], int]:
        """policy.allocate_fifo over the fewest open lots that can pay (the oldest expiry)."""
        while self.open and self.open[0].remaining == 0:
            self.open.pop(0)
        candidates: dict[int, _Lot] = {}
        covered = 0
        for lot in self.open:
            if covered >= points:
                break
            if lot.remaining > 0 and lot is not skip:
                candidates[lot.id] = lot
                covered += lot.remaining
        allocation = policy.allocate_fifo(
            (policy.OpenLot(lot.id, lot.remaining, lot.expires_at) for lot in candidates.values()),
            points,
        )
        return [(candidates[lot_id], take) for lot_id, take in allocation.takes], (
            allocation.shortfall
        )

    def credit(
        self,
        points: int,
        kind: str,
        at: datetime,
        op: int | None,
        *,
        reference: str | None = None,
        actor: str | None = None,
        hold: bool = False,
    ) -> tuple[int, _Lot]:
        held = hold and self.rules.hold_days > 0
        available = at + self.hold if held else at
        entry_id = self._entry(
            kind, 0 if held else points, points if held else 0, 0, at, op, reference, actor
        )
        self.ids.lots += 1
        lot = _Lot(
            self.ids.lots,
            entry_id,
            points,
            points,
            "pending" if held else "active",
            available,
            available + self.lifetime,
            at,
        )
        self.lots.append(lot)
        if held:
            self.held.append(lot)
            self.pending += points
        else:
            self._open(lot)
            self.balance += points
            self.pay_debt(at, op)
        return entry_id, lot

    def _open(self, lot: _Lot) -> None:
        if lot in self.open:
            return
        bisect.insort(self.open, lot, key=lambda item: (item.expires_at, item.id))

    def pay_debt(self, at: datetime, op: int | None) -> None:
        payoff = min(self.debt, self.balance)
        if payoff <= 0:
            return
        takes, _ = self._fifo(payoff)
        entry_id = self._entry("debt_payoff", -payoff, 0, -payoff, at, op)
        self._take(entry_id, takes)
        self.balance -= payoff
        self.debt -= payoff

    def debit(
        self,
        points: int,
        kind: str,
        at: datetime,
        op: int,
        *,
        strict: bool,
        reference: str | None = None,
        actor: str | None = None,
        own: _Lot | None = None,
    ) -> tuple[int, list[_Spend]]:
        takes: list[tuple[_Lot, int]] = []
        from_pending = 0
        left = points
        if own is not None and own.remaining > 0:
            take = min(own.remaining, left)
            takes.append((own, take))
            if own.status == "pending":
                from_pending = take
            left -= take
        if left:
            more, left = self._fifo(left, skip=own)
            takes.extend(more)
        if left and strict:
            raise AssertionError("the plan spent points the member does not have")
        from_active = sum(take for _, take in takes) - from_pending
        entry_id = self._entry(kind, -from_active, -from_pending, left, at, op, reference, actor)
        made = self._take(entry_id, takes)
        self.balance -= from_active
        self.pending -= from_pending
        self.debt += left
        return entry_id, made

    def give_back(
        self,
        taken: list[_Spend],
        points: int,
        kind: str,
        at: datetime,
        op: int,
        reference: str,
        actor: str,
    ) -> None:
        left = points
        returns = []
        for spend in sorted(taken, key=lambda s: (s.lot.expires_at, s.lot.id), reverse=True):
            give = min(spend.points - spend.returned, left)
            if give > 0:
                returns.append((spend, give))
                left -= give
        if left:
            raise AssertionError("more points to give back than were taken")
        self._entry(kind, points, 0, 0, at, op, reference, actor)
        for spend, give in returns:
            spend.returned += give
            spend.lot.remaining += give
            if spend.lot.status == "active":
                self._open(spend.lot)
        self.balance += points
        self.pay_debt(at, op)

    # ------------------------------------------------------------------ time passing

    def catch_up(self, until: datetime) -> None:
        """What the jobs did before `until`: activate held lots, burn expired ones (and, as
        an operation at `until` does first, burn what expired before it)."""
        while True:
            activate_at = self.held[0].available_at if self.held else _NEVER
            burn_at = _NEVER
            first = next((lot for lot in self.open if lot.remaining > 0), None)
            if first is not None and first.expires_at <= until:
                burn_at = max(_ceil_hour(first.expires_at), self.last_time)
                burn_at = min(burn_at, until)
            if activate_at > until and burn_at > until:
                return
            if activate_at <= burn_at:
                self._activate(activate_at)
            else:
                self._burn(burn_at)

    def _activate(self, at: datetime) -> None:
        due = []
        while self.held and self.held[0].available_at <= at:
            due.append(self.held.popleft())
        points = 0
        for lot in due:
            lot.status = "active"
            points += lot.remaining
            if lot.remaining:
                self._open(lot)
        self.last_time = max(self.last_time, at)
        if points:
            self._entry("activation", points, -points, 0, at, None)
            self.balance += points
            self.pending -= points
            self.pay_debt(at, None)

    def _burn(self, at: datetime) -> None:
        due = [lot for lot in self.open if lot.remaining > 0 and lot.expires_at <= at]
        points = sum(lot.remaining for lot in due)
        entry_id = self._entry("expiry", -points, 0, 0, at, None)
        self._take(entry_id, [(lot, lot.remaining) for lot in due])
        self.open = [lot for lot in self.open if lot.remaining > 0]
        self.balance -= points
        self.last_time = max(self.last_time, at)

    def _slide_window(self, at: datetime) -> int:
        since = at - self.tier_window
        while self.window and self.window[0].created_at <= since:
            gone = self.window.popleft()
            gone.in_window = False
            self.window_spend -= gone.qualifying
        return self.window_spend

    def _operation(
        self,
        key: str,
        kind: str,
        request: dict[str, Any],
        result: dict[str, Any],
        actor: str | None,
        at: datetime,
    ) -> int:
        self.ids.operations += 1
        op = self.ids.operations
        self.rows.operations.append(
            (
                op,
                key,
                kind,
                self.id,
                _hash_request(request),
                json.dumps(result, sort_keys=True),
                actor,
                at,
            )
        )
        return op

    # -------------------------------------------------------------------- operations

    def welcome(self) -> None:
        points = self.rules.welcome_bonus
        if points <= 0:
            return
        at = self.plan.created_at
        op = self._operation(
            f"welcome:{self.phone_hash}", "welcome", {}, {"points": points}, None, at
        )
        self.credit(points, "welcome", at, op)

    def purchase(self, index: int, at: datetime, amount: int, redeem_wish: bool) -> int:
        self.catch_up(at)
        self.last_time = at
        rules = self.rules
        rng = self.plan.rng
        actor = f"api:till-{rng.randint(1, 20)}" if rng.random() < 0.7 else "tg:700000001"
        receipt = f"R{self.id}-{index}"
        allowed = policy.redeemable_points(rules, amount, self.balance)
        redeem = 0
        if redeem_wish and allowed > 0:
            redeem = allowed if rng.random() < 0.5 else rng.randint(1, allowed)
        # The operation's row comes first (its id goes on the entries); its result after.
        self.ids.operations += 1
        op = self.ids.operations
        redeem_entry = None
        redeem_spends: list[_Spend] = []
        if redeem:
            redeem_entry, redeem_spends = self.debit(
                redeem, "redeem", at, op, strict=True, reference=receipt, actor=actor
            )
        money = policy.money_paid(rules, amount, redeem)
        spend_before = self._slide_window(at)
        accrued = policy.earned_points(money, policy.tier_for_spend(rules, spend_before))
        earn_entry = None
        earn_lot = None
        if accrued:
            earn_entry, earn_lot = self.credit(
                accrued, "earn", at, op, reference=receipt, actor=actor, hold=True
            )
        self.ids.purchases += 1
        bought = _Purchase(
            self.ids.purchases,
            receipt,
            amount,
            redeem,
            accrued,
            earn_entry,
            earn_lot,
            redeem_entry,
            redeem_spends,
            money,
            at,
        )
        self.purchases.append(bought)
        self.window.append(bought)
        self.window_spend += money
        inviter = None
        if index == 0 and self.plan.referred_by is not None and rules.referral.inviter_points:
            inviter = self.plan.referred_by
        previous = self.tier_name
        self.tier_name = policy.tier_for_spend(rules, spend_before + money).name
        result = {
            "receipt_id": receipt,
            "member_id": self.id,
            "card_number": self.card,
            "accrued": accrued,
            "redeemed": redeem,
            "balance": self.balance,
            "pending": self.pending,
            "tier": self.tier_name,
            "previous_tier": previous,
            "rewarded_inviter": inviter,
        }
        request = {"member_id": self.id, "amount": amount, "redeem": redeem}
        self.rows.operations.append(
            (
                op,
                f"purchase:{receipt}",
                "purchase",
                self.id,
                _hash_request(request),
                json.dumps(result, sort_keys=True),
                actor,
                at,
            )
        )
        return op

    def refund(self, index: int, at: datetime, amount: int) -> None:
        self.catch_up(at)
        self.last_time = at
        bought = self.purchases[index]
        amount = min(amount, bought.amount - bought.refunded_amount)
        if amount <= 0:
            return
        refund_id = f"F{self.id}-{index}"
        actor = "api:till-1"
        self.ids.operations += 1
        op = self.ids.operations
        before = bought.refunded_amount
        reverse = policy.pro_rata(bought.accrued, before, amount, bought.amount)
        give = policy.pro_rata(bought.redeemed, before, amount, bought.amount)
        money = policy.money_paid(self.rules, bought.amount, bought.redeemed)
        cut = policy.pro_rata(money, before, amount, bought.amount)
        if give:
            self.give_back(bought.redeem_spends, give, "refund_return", at, op, refund_id, actor)
        if reverse:
            self.debit(
                reverse,
                "refund_reverse",
                at,
                op,
                strict=False,
                reference=refund_id,
                actor=actor,
                own=bought.earn_lot,
            )
        bought.refunded_amount += amount
        bought.reversed_accrued += reverse
        bought.returned_redeemed += give
        bought.qualifying -= cut
        self._slide_window(at)
        if bought.in_window:
            self.window_spend -= cut
        self.tier_name = policy.tier_for_spend(self.rules, self.window_spend).name
        result = {
            "refund_id": refund_id,
            "receipt_id": bought.receipt_id,
            "member_id": self.id,
            "card_number": self.card,
            "reversed": reverse,
            "returned": give,
            "debt": self.debt,
            "balance": self.balance,
            "pending": self.pending,
            "tier": self.tier_name,
        }
        request = {"receipt_id": bought.receipt_id, "amount": amount}
        self.rows.operations.append(
            (
                op,
                f"refund:{refund_id}",
                "refund",
                self.id,
                _hash_request(request),
                json.dumps(result, sort_keys=True),
                actor,
                at,
            )
        )

    def referral(self, at: datetime, op: int, invited_card: str) -> None:
        self.catch_up(at)
        self.last_time = at
        self.credit(self.rules.referral.inviter_points, "referral", at, op, reference=invited_card)

    # ------------------------------------------------------------------------ running

    def run(self) -> None:
        plan = self.plan
        self.welcome()
        events: list[tuple[datetime, int, int, Any]] = []
        for index, (at, amount, wish) in enumerate(plan.purchases):
            events.append((at, 1, index, (amount, wish)))
        for index, (at, amount) in plan.refunds.items():
            events.append((at, 2, index, amount))
        for number, reward in enumerate(plan.rewards):
            events.append((reward[0], 0, number, reward))
        events.sort(key=lambda event: (event[0], event[1], event[2]))
        for at, kind, index, data in events:
            if kind == 1:
                self.purchase(index, at, data[0], data[1])
            elif kind == 2:
                self.refund(index, at, data)
            else:
                self.referral(at, data[1], data[2])
        self.catch_up(self.now)

    def emit(self) -> None:
        """The member's rows whose values changed during the history: lots, spends,
        purchases and the member."""
        rows = self.rows
        member_id = self.id
        rows.lots.extend(
            (
                lot.id,
                member_id,
                lot.entry_id,
                lot.points,
                lot.remaining,
                lot.status,
                lot.available_at,
                lot.expires_at,
                lot.created_at,
            )
            for lot in self.lots
        )
        rows.spends.extend(
            (spend.id, spend.entry_id, spend.lot.id, spend.points, spend.returned)
            for spend in self.spends
        )
        rows.purchases.extend(
            (
                p.id,
                p.receipt_id,
                member_id,
                p.amount,
                p.redeemed,
                p.accrued,
                p.earn_entry_id,
                p.redeem_entry_id,
                p.refunded_amount,
                p.reversed_accrued,
                p.returned_redeemed,
                p.qualifying,
                p.created_at,
            )
            for p in self.purchases
        )
        tier = policy.tier_for_spend(self.rules, self._slide_window(self.now)).name
        rows.members.append(self._profile(tier))

    def _profile(self, tier: str) -> tuple[Any, ...]:
        rng = self.plan.rng
        member_id = self.id
        created = self.plan.created_at
        english = rng.random() < 0.2
        chat = rng.random() < 0.88
        names = FIRST_NAMES_EN if english else FIRST_NAMES_RU
        first_name = rng.choice(names)
        last_name = rng.choice(LAST_NAMES) if rng.random() < 0.4 else None
        username = None
        if chat and rng.random() < 0.6:
            username = f"{rng.choice(USERNAME_PREFIXES)}{member_id}"
        birthday = None
        birthday_set_at = None
        if rng.random() < 0.35:
            year = policy.BIRTH_YEAR_UNKNOWN if rng.random() < 0.1 else rng.randint(1960, 2006)
            birthday = date(year, 1, 1) + timedelta(days=rng.randrange(365))
            birthday_set_at = created + (self.now - created) * rng.random() * 0.5
        last_purchase = self.purchases[-1].created_at if self.purchases else None
        erased = rng.random() < 0.001
        flags = (
            rng.random() >= 0.08,  # notify_reminders
            rng.random() >= 0.05,  # notify_tier
            rng.random() >= 0.15,  # notify_offers
        )
        unreachable = chat and rng.random() < 0.05
        timezone = rng.choice(TIMEZONES)
        if erased:
            return (
                member_id, card_number(member_id), None, None, None, None, None,
                "en" if english else "ru", timezone, None, None, _referral_code(member_id),
                self.plan.referred_by, "erased", False, False, False, False, created, created,
                self.now - timedelta(hours=1), last_purchase, self.balance, self.pending,
                self.debt, self.entries, tier, tier,
            )  # fmt: skip
        return (
            member_id, card_number(member_id), phone(member_id),
            5_000_000_000 + member_id * 7 if chat else None, first_name, last_name, username,
            "en" if english else "ru", timezone, birthday, birthday_set_at,
            _referral_code(member_id), self.plan.referred_by, "active", *flags, unreachable,
            created, created, None, last_purchase, self.balance, self.pending, self.debt,
            self.entries, tier, tier,
        )  # fmt: skip


# ------------------------------------------------------------------------------ planning


def _heavy_ids(count: int) -> set[int]:
    """The members with thousands of purchases: one in HEAVY_EVERY, at least one."""
    heavy = max(1, count // HEAVY_EVERY)
    return {int((k + 0.5) * count / heavy) + 1 for k in range(heavy)}


def _plan(
    member_id: int, count: int, seed: int, now: datetime, block_start: int, heavy: set[int]
) -> _Plan:
    rng = random.Random(seed * 1_000_003 + member_id)
    start = now - timedelta(days=HISTORY_DAYS)
    span = (now - start).total_seconds()
    # Sign-ups spread over the 18 months in id order, a little denser lately.
    share = ((member_id - 0.5) / count) ** 0.8
    created = start + timedelta(seconds=int(span * share * 0.995 + rng.random() * 3600))
    referred_by = None
    if member_id > block_start and rng.random() < 0.1:
        referred_by = rng.randrange(block_start, member_id)
    if member_id in heavy:
        bought = rng.randint(2000, 4000)
    elif rng.random() < 0.08:
        bought = 0
    elif rng.random() < 0.03:
        bought = rng.randint(20, 80)  # dozens
    else:
        bought = min(30, 1 + int(rng.lognormvariate(1.7, 0.8)))
    left = max(0.0, (now - created).total_seconds() - 120)
    times = sorted(int(rng.random() * left) for _ in range(bought))
    planned = []
    for offset in times:
        amount = int(rng.lognormvariate(math.log(1_200_00), 0.8)) // 10 * 10
        amount = max(50_00, min(amount, 100_000_00))
        planned.append((created + timedelta(seconds=offset + 60), amount, rng.random() < 0.25))
    refunds = {}
    for index, (at, amount, _) in enumerate(planned):
        if rng.random() < 0.03:
            when = at + timedelta(days=rng.randint(1, 20), seconds=rng.randrange(3600))
            if when < now:
                part = amount if rng.random() < 0.6 else rng.randint(1, amount - 1) // 10 * 10
                refunds[index] = (when, max(part, 10))
    return _Plan(member_id, rng, created, planned, refunds, referred_by)


def generate_blocks(
    count: int, *, seed: int, now: datetime, rules: Rules, key: str
) -> Iterator[tuple[Rows, Counters]]:
    """The dataset's rows, a block of members at a time (the counters after the block)."""
    ids = Counters()
    heavy = _heavy_ids(count)
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    for block_start in range(1, count + 1, BLOCK):
        block_end = min(count, block_start + BLOCK - 1)
        plans = {
            member_id: _plan(member_id, count, seed, naive_now, block_start, heavy)
            for member_id in range(block_start, block_end + 1)
        }
        rows = Rows()
        # Invited members first: their first purchase's operation pays their inviter.
        for member_id in range(block_end, block_start - 1, -1):
            plan = plans[member_id]
            member = _Member(plan, rules, ids, rows, naive_now, key)
            member.run()
            member.emit()
            if plan.referred_by is not None and plan.purchases and rules.referral.inviter_points:
                first_op = _first_purchase_operation(rows, member_id)
                at = plan.purchases[0][0]
                plans[plan.referred_by].rewards.append(
                    (at, first_op, member.card, member_id, member.phone_hash)
                )
                rows.referral_rewards.append((member.phone_hash, plan.referred_by, member_id, at))
        ids.members = block_end
        rows.members.sort()
        yield rows, ids


def _first_purchase_operation(rows: Rows, member_id: int) -> int:
    key = f"purchase:R{member_id}-0"
    for row in reversed(rows.operations):
        if row[1] == key:
            return int(row[0])
    raise AssertionError("the first purchase has no operation")


# ------------------------------------------------------------------------------ writing


_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite


def _sqlite_converters(table: Table, columns: Sequence[str]) -> list[int]:
    return [
        index
        for index, name in enumerate(columns)
        if isinstance(table.c[name].type, UTCDateTime) or name == "birthday"
    ]


def _for_sqlite(rows: list[tuple[Any, ...]], at: list[int]) -> list[tuple[Any, ...]]:
    if not at:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for index in at:
            value = values[index]
            if isinstance(value, datetime):
                values[index] = value.strftime(_SQLITE_TIME)
            elif isinstance(value, date):
                values[index] = value.isoformat()
        converted.append(tuple(values))
    return converted


class DatasetError(ValueError):
    """The database given cannot take the dataset."""


@dataclass
class Summary:
    members: int
    operations: int
    entries: int
    lots: int
    spends: int
    purchases: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.members:,} members, {self.entries:,} entries, {self.lots:,} lots, "
            f"{self.spends:,} spends, {self.purchases:,} purchases, {self.operations:,} "
            f"operations in {self.seconds:.1f} s"
        )


Progress = Callable[[int, int], None]


async def build_dataset(
    engine: AsyncEngine,
    members_count: int = 200_000,
    *,
    seed: int = 14,
    now: datetime | None = None,
    rules: Rules | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Migrate the database of `engine` and fill it with `members_count` members (it must
    have none yet). The function other benchmarks call."""
    started = time.perf_counter()
    rules = rules or Rules()
    if now is None:
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await upgrade_schema(engine)
    async with engine.connect() as conn:
        if (await conn.execute(select(members.c.id).limit(1))).first() is not None:
            raise DatasetError("the database has members already: give an empty one")
        key = (await conn.run_sync(phone_hashes.stored_key)) or ""
    if not key:
        async with engine.begin() as conn:
            key = await conn.run_sync(phone_hashes.make_key)
    blocks = generate_blocks(members_count, seed=seed, now=now, rules=rules, key=key)
    if engine.dialect.name == "sqlite":
        counters = _write_sqlite(engine, blocks, members_count, progress)
    else:
        counters = await _write_postgres(engine, blocks, members_count, progress)
    return Summary(
        counters.members,
        counters.operations,
        counters.entries,
        counters.lots,
        counters.spends,
        counters.purchases,
        time.perf_counter() - started,
    )


def _write_sqlite(
    engine: AsyncEngine,
    blocks: Iterator[tuple[Rows, Counters]],
    count: int,
    progress: Progress | None,
) -> Counters:
    path = sqlite_file(engine.url.render_as_string(hide_password=False))
    if path is None:
        raise DatasetError("the dataset needs a SQLite file, not an in-memory database")
    conn = sqlite3.connect(path, isolation_level=None)
    counters = Counters()
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark's data: rebuilt if a load fails
        statements = [
            (name, table, columns, _sqlite_converters(table, columns),
             f"INSERT INTO {name} ({', '.join(columns)}) "
             f"VALUES ({', '.join('?' for _ in columns)})")
            for name, table, columns in TABLES
        ]  # fmt: skip
        for rows, counters in blocks:
            conn.execute("BEGIN")
            for name, _table, _columns, at, statement in statements:
                conn.executemany(statement, _for_sqlite(getattr(rows, name), at))
            conn.execute("COMMIT")
            if progress is not None:
                progress(counters.members, count)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return counters


async def _write_postgres(
    engine: AsyncEngine,
    blocks: Iterator[tuple[Rows, Counters]],
    count: int,
    progress: Progress | None,
) -> Counters:
    counters = Counters()
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        if await driver.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            # The rows are consistent by construction: skip the foreign keys' per-row checks
            # (their triggers), which took most of the load's time.
            await driver.execute("SET session_replication_role = replica")
        for rows, counters in blocks:
            async with driver.transaction():
                for name, _table, columns in TABLES:
                    records = getattr(rows, name)
                    if records:
                        await driver.copy_records_to_table(name, records=records, columns=columns)
            if progress is not None:
                progress(counters.members, count)
        for name in ("members", "operations", "entries", "lots", "spends", "purchases"):
            await driver.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {name}), false)"
            )
        await driver.execute("RESET session_replication_role")
        await driver.execute("ANALYZE")
    return counters


# ------------------------------------------------------------------ username lookups


async def time_username_lookups(engine: AsyncEngine, rules: Rules, lookups: int = 200) -> str:
    """LedgerService.member_by_username over a generated database, with the index of
    migration 0010 dropped and then made again: the median and the slowest lookup of each."""
    from sqlalchemy import text

    from ledger.service import LedgerService

    async with engine.connect() as conn:
        every = max(
            1, (await conn.execute(select(func.count(members.c.id)))).scalar_one() // lookups
        )
        names = (
            (
                await conn.execute(
                    select(members.c.username)
                    .where(members.c.username.is_not(None), members.c.id % every == 0)
                    .limit(lookups)
                )
            )
            .scalars()
            .all()
        )
    ledger = LedgerService(engine, rules)
    await upgrade_schema(engine)  # the index is migration 0010's

    async def timed() -> str:
        took = []
        for name in names:
            started = time.perf_counter()
            found = await ledger.member_by_username("@" + name.upper())
            took.append((time.perf_counter() - started) * 1000)
            assert found is not None
        took.sort()
        return f"median {took[len(took) // 2]:.2f} ms, slowest {took[-1]:.2f} ms"

    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_members_username_lower"))
        without = await timed()
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE INDEX ix_members_username_lower ON members (lower(username))")
            )
            if engine.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE members"))
        with_index = await timed()
    finally:
        ledger.close()
    return (
        f"member_by_username, {len(names)} lookups: without the index {without}; "
        f"with it {with_index}"
    )


# ---------------------------------------------------------------------------------- CLI


def progress_bar(started: float) -> Progress:
    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        elapsed = time.perf_counter() - started
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} members {elapsed:.0f} s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dataset", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--database-url", required=True, help="an empty database (migrated here)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--rules", help="a rules file (default: the shipped defaults)")
    parser.add_argument(
        "--now", help="ISO date-time the history ends at, UTC (default: today 00:00 UTC)"
    )
    parser.add_argument(
        "--time-username-lookups",
        action="store_true",
        help="on a database built before: time member_by_username without and with its index",
    )
    args = parser.parse_args(argv)
    rules = load_rules(args.rules) if args.rules else Rules()
    if args.time_username_lookups:

        async def lookups() -> str:
            engine = create_engine(args.database_url)
            try:
                return await time_username_lookups(engine, rules)
            finally:
                await engine.dispose()

        print(asyncio.run(lookups()))
        return 0
    now = datetime.fromisoformat(args.now).replace(tzinfo=UTC) if args.now else None

    async def run() -> Summary:
        engine = create_engine(args.database_url)
        try:
            return await build_dataset(
                engine,
                args.members,
                seed=args.seed,
                now=now,
                rules=rules,
                progress=progress_bar(time.perf_counter()),
            )
        finally:
            await engine.dispose()

    try:
        print(asyncio.run(run()))
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
