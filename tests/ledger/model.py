"""A small reference model of the points ledger, written from the program rules (PRODUCT.md).

It knows nothing about the database and does not call `ledger.policy`: it is a second,
independent statement of the arithmetic that `tests/ledger/test_model.py` compares the real
`LedgerService` with, step by step. Only the numbers come from the rules file.

What it models, per member:
- lots of points (created, left, expiry), spent oldest expiry first, ties in creation order;
  expiry happens when the expiry run is told the time (`expire`), as in the service;
- the debt: a shortfall when points are taken back; the next usable credits pay it off first;
- tiers by qualifying spend (money paid net of refunds over the tier window); earning follows
  the tier the spend gives at the moment of the purchase; the tier shown is the one last
  computed (by a purchase, a refund or the daily tier job);
- purchases: redemption up to the cap and the balance, earning on the money part;
- refunds: pro rata on the cumulative refunded amount; earned points are taken back from the
  purchase's own lot first, then oldest expiry first; redeemed points go back into the lots they
  were taken from (latest expiry first) with their original expiry;
- adjustments by hand (a removal may not exceed the balance) and the welcome bonus;
- a broadcast's gift points: a lot with its own short life (`days`), once per broadcast and
  member (the runner in test_model.py keeps which gifts were given).

Details the rules leave open follow the service's documented choices: a purchase exactly one
window ago no longer counts; points given back into a lot past its expiry stay usable until the
next expiry run.

Not modelled: held (pending) points, referral and birthday bonuses, support's reversal of
entries, erased members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.rules import Rules

KOPECKS_PER_RUB = 100


class Refused(Exception):
    """The model expects the service to refuse the operation and change nothing."""

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(reason, details)
        self.reason = reason
        self.details = details


@dataclass(frozen=True, slots=True)
class TierRule:
    name: str
    threshold_kopecks: int
    kopecks_per_point: int


@dataclass(frozen=True, slots=True)
class ModelRules:
    """The numbers of the program, read from the rules file as plain data."""

    welcome_bonus: int
    point_value_kopecks: int
    max_redeem_percent: int
    lifetime: timedelta
    tier_window: timedelta
    tiers: tuple[TierRule, ...]
    timezone: str

    @classmethod
    def from_rules(cls, rules: Rules) -> ModelRules:
        if rules.hold_days != 0:
            raise ValueError("the model covers points that are usable at once (hold_days = 0)")
        return cls(
            welcome_bonus=rules.welcome_bonus,
            point_value_kopecks=rules.point_value_kopecks,
            max_redeem_percent=rules.max_redeem_percent,
            lifetime=timedelta(days=rules.points_lifetime_days),
            tier_window=timedelta(days=rules.tier_window_days),
            tiers=tuple(
                TierRule(t.name, t.threshold_rub * KOPECKS_PER_RUB,
                         t.rub_per_point * KOPECKS_PER_RUB)
                for t in rules.tiers
            ),
            timezone=rules.messages.default_timezone,
        )


@dataclass(slots=True, eq=False)
class Lot:
    serial: int  # creation order over the whole ledger
    points: int
    remaining: int
    expires_at: datetime


@dataclass(slots=True, eq=False)
class Take:
    """Points one debit took from one lot, and how many of them were given back since."""

    lot: Lot
    points: int
    returned: int = 0


@dataclass(slots=True, eq=False)
class Purchase:
    receipt_id: str
    member: int
    amount: int
    redeemed: int
    accrued: int
    money: int
    created_at: datetime
    earn_lot: Lot | None
    redeem_takes: list[Take]
    refunded: int = 0

    def qualifying(self) -> int:
        """Money paid net of refunds: the refunded share of the money part comes off."""
        return self.money - self.money * self.refunded // self.amount


@dataclass(slots=True, eq=False)
class Member:
    index: int
    lots: list[Lot] = field(default_factory=list)
    debt: int = 0
    tier: str = ""
    purchased: bool = False

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots)


@dataclass(frozen=True, slots=True)
class PurchaseOutcome:
    accrued: int
    redeemed: int
    balance: int
    tier: str


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    reversed: int
    returned: int
    debt: int
    balance: int
    tier: str


@dataclass(frozen=True, slots=True)
class NearestBurn:
    points: int
    burns_at: datetime


class LedgerModel:
    """The expected state of every member; each method mirrors one ledger operation."""

    def __init__(self, rules: ModelRules) -> None:
        self.rules = rules
        self.members: list[Member] = []
        self.purchases: dict[str, Purchase] = {}
        self._serial = 0

    # ---------------------------------------------------------------- queries

    def qualifying_spend(self, member: int, now: datetime) -> int:
        since = now - self.rules.tier_window
        return sum(
            p.qualifying() for p in self.purchases.values()
            if p.member == member and p.created_at > since
        )

    def tier_by_spend(self, spend: int) -> TierRule:
        reached = self.rules.tiers[0]
        for tier in self.rules.tiers:
            if spend >= tier.threshold_kopecks:
                reached = tier
        return reached

    def current_tier(self, member: int, now: datetime) -> TierRule:
        """The tier the rules give right now (the shown tier may lag until the tier job)."""
        return self.tier_by_spend(self.qualifying_spend(member, now))

    def redeem_limit(self, member: int, amount: int, now: datetime) -> int:
        """At most max_redeem_percent of the amount, in whole points, and never the debt, nor
        points whose expiry has come."""
        cap_kopecks = amount * self.rules.max_redeem_percent // 100
        cap = cap_kopecks // self.rules.point_value_kopecks
        return max(0, min(cap, self.members[member].balance - self.overdue(member, now)))

    def refundable(self, receipt_id: str) -> int:
        purchase = self.purchases[receipt_id]
        return purchase.amount - purchase.refunded

    def nearest_burn(self, member: int, now: datetime) -> NearestBurn | None:
        """The earliest expiry to come among lots with points left, and all points burning
        that day (the day in the program's time zone)."""
        open_lots = [
            lot for lot in self.members[member].lots if lot.remaining > 0 and lot.expires_at > now
        ]
        if not open_lots:
            return None
        first = min(lot.expires_at for lot in open_lots)
        day = self._local_day(first)
        points = sum(lot.remaining for lot in open_lots if self._local_day(lot.expires_at) == day)
        return NearestBurn(points=points, burns_at=first)

    def lots(self, member: int) -> list[tuple[datetime, int, int]]:
        """(expiry, points, left) of every lot the member ever got, in creation order."""
        return [(lot.expires_at, lot.points, lot.remaining) for lot in self.members[member].lots]

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(ZoneInfo(self.rules.timezone)).date()

    # ------------------------------------------------------------- operations

    def register(self, now: datetime) -> int:
        member = Member(index=len(self.members), tier=self.rules.tiers[0].name)
        self.members.append(member)
        if self.rules.welcome_bonus:
            self._credit(member, self.rules.welcome_bonus, now)
        return member.index

    def purchase(
        self, member: int, receipt_id: str, amount: int, redeem: int, now: datetime
    ) -> PurchaseOutcome:
        allowed = self.redeem_limit(member, amount, now)
        if redeem > allowed:
            raise Refused("redeem above limit", allowed=allowed)
        who = self.members[member]
        self._burn(who, now)  # every operation writes off what is due first (burn job or not)
        earning_tier = self.current_tier(member, now)
        takes, short = self._take(who, redeem, first=None)
        assert short == 0, "a redemption within the limit is always covered"
        money = amount - redeem * self.rules.point_value_kopecks
        accrued = money // earning_tier.kopecks_per_point
        earn_lot = self._credit(who, accrued, now) if accrued else None
        self.purchases[receipt_id] = Purchase(
            receipt_id=receipt_id, member=member, amount=amount, redeemed=redeem,
            accrued=accrued, money=money, created_at=now, earn_lot=earn_lot, redeem_takes=takes,
        )
        who.purchased = True
        who.tier = self.current_tier(member, now).name
        return PurchaseOutcome(accrued=accrued, redeemed=redeem, balance=who.balance, tier=who.tier)

    def refund(self, receipt_id: str, amount: int, now: datetime) -> RefundOutcome:
        purchase = self.purchases[receipt_id]
        refundable = purchase.amount - purchase.refunded
        if amount > refundable:
            raise Refused("refund exceeds purchase", refundable=refundable)
        who = self.members[purchase.member]
        self._burn(who, now)
        before, after = purchase.refunded, purchase.refunded + amount
        reverse = self._share(purchase.accrued, before, after, purchase.amount)
        give_back = self._share(purchase.redeemed, before, after, purchase.amount)
        if give_back:
            self._give_back(purchase.redeem_takes, give_back)
            self._pay_debt(who)
        if reverse:
            _, short = self._take(who, reverse, first=purchase.earn_lot)
            who.debt += short
        purchase.refunded = after
        who.tier = self.current_tier(purchase.member, now).name
        return RefundOutcome(
            reversed=reverse, returned=give_back, debt=who.debt, balance=who.balance, tier=who.tier
        )

    def adjust(self, member: int, points: int, now: datetime) -> None:
        who = self.members[member]
        usable = who.balance - self.overdue(member, now)
        if points < 0 and -points > usable:
            raise Refused("insufficient points", balance=usable)
        self._burn(who, now)
        if points > 0:
            self._credit(who, points, now)
            return
        _, short = self._take(who, -points, first=None)
        assert short == 0

    def gift(self, member: int, points: int, days: int, now: datetime) -> datetime:
        """Credit a broadcast's gift: usable at once, burning `days` days from now; its expiry."""
        who = self.members[member]
        self._burn(who, now)
        return self._credit(who, points, now, expires_at=now + timedelta(days=days)).expires_at

    def expire(self, now: datetime) -> int:
        """Burn what is left of every lot whose expiry has come; the points burnt."""
        return sum(self._burn(member, now) for member in self.members)

    def overdue(self, member: int, now: datetime) -> int:
        """Points whose expiry has come that no burn has written off yet (nobody sees them)."""
        return sum(lot.remaining for lot in self.members[member].lots if lot.expires_at <= now)

    def _burn(self, who: Member, now: datetime) -> int:
        burnt = 0
        for lot in who.lots:
            if lot.remaining and lot.expires_at <= now:
                burnt += lot.remaining
                lot.remaining = 0
        return burnt

    def recompute_tiers(self, now: datetime) -> set[tuple[int, str, str]]:
        """The daily tier job: (member, old, new) for every member whose tier changed."""
        changes: set[tuple[int, str, str]] = set()
        for member in self.members:
            if not member.purchased:
                continue
            new = self.current_tier(member.index, now).name
            if new != member.tier:
                changes.add((member.index, member.tier, new))
                member.tier = new
        return changes

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _share(total: int, before: int, after: int, whole: int) -> int:
        """What a refund moving the refunded amount from `before` to `after` is owed of
        `total`: the shares of cumulative amounts, so that the parts add up to `total`."""
        return total * after // whole - total * before // whole

    def _credit(
        self, member: Member, points: int, now: datetime, expires_at: datetime | None = None
    ) -> Lot:
        self._serial += 1
        lot = Lot(self._serial, points, points, expires_at or now + self.rules.lifetime)
        member.lots.append(lot)
        self._pay_debt(member)
        return lot

    def _pay_debt(self, member: Member) -> None:
        payoff = min(member.debt, member.balance)
        if payoff:
            _, short = self._take(member, payoff, first=None)
            assert short == 0
            member.debt -= payoff

    def _take(self, member: Member, points: int, first: Lot | None) -> tuple[list[Take], int]:
        """Take points, from `first` if given, then the lot that burns first; the shortfall."""
        takes: list[Take] = []
        left = points
        order = sorted(
            (lot for lot in member.lots if lot is not first),
            key=lambda lot: (lot.expires_at, lot.serial),
        )
        if first is not None:
            order.insert(0, first)
        for lot in order:
            if not left:
                break
            take = min(lot.remaining, left)
            if take:
                lot.remaining -= take
                left -= take
                takes.append(Take(lot, take))
        return takes, left

    @staticmethod
    def _give_back(takes: list[Take], points: int) -> None:
        """Return points into the lots a redemption took them from, latest expiry first."""
        left = points
        for take in sorted(takes, key=lambda t: (t.lot.expires_at, t.lot.serial), reverse=True):
            give = min(take.points - take.returned, left)
            if give > 0:
                take.returned += give
                take.lot.remaining += give
                left -= give
        assert left == 0, "never more back than was taken"
